"""TTA through the product: `predict --tta`, `evaluate --tta`, `evaluate --tta-compare`, and the runner behind them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import TINY, make_dataset, cli
from imgclf.config import TTAConfig, load_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """One tiny run shared by the module's tests (training is the slow part)."""
    from imgclf.training.loop import fit

    root = tmp_path_factory.mktemp("tta_cli")
    data = make_dataset(root / "data", test=6)
    out = root / "run"
    fit(load_config(None, TINY), data, out)
    return out, data


def test_predict_tta_adaptive_writes_the_plain_submission_format(trained, tmp_path, capsys):
    run_dir, data = trained
    plain, adaptive = tmp_path / "plain.csv", tmp_path / "adaptive.csv"
    p_probs, a_probs = tmp_path / "plain_probs.csv", tmp_path / "adaptive_probs.csv"
    assert cli(["predict", run_dir, data / "test", "-o", plain, "--probs", p_probs], capsys)[0] == 0
    code, out, err = cli(
        [
            "predict",
            run_dir,
            data / "test",
            "-o",
            adaptive,
            "--probs",
            a_probs,
            "--tta",
            "adaptive",
            "--tta-max-views",
            "4",
        ],
        capsys,
    )
    assert code == 0, err
    a, p = pd.read_csv(adaptive), pd.read_csv(plain)
    assert list(a.columns) == list(p.columns) == ["Id", "Category"]
    assert list(a["Id"]) == list(p["Id"]) == list(pd.read_csv(data / "sample_submission.csv")["Id"])
    assert a["Category"].dtype == p["Category"].dtype and set(a["Category"]) <= {0, 1, 2}
    probs = pd.read_csv(a_probs)
    assert list(probs.columns) == list(pd.read_csv(p_probs).columns)
    assert np.allclose(probs.drop(columns="Id").sum(axis=1), 1.0)
    assert "TTA: adaptive" in out and "forward passes" in out and "views per image" in out


def test_tta_1_equals_plain_predictions(trained, tmp_path, capsys):
    run_dir, data = trained
    runs = {}
    for name, extra in (("plain", []), ("one", ["--tta", "1"])):
        sub, probs = tmp_path / f"{name}.csv", tmp_path / f"{name}_probs.csv"
        code, out, err = cli(["predict", run_dir, data / "test", "-o", sub, "--probs", probs, *extra], capsys)
        assert code == 0, err
        runs[name] = (sub.read_text(), pd.read_csv(probs))
    assert runs["one"][0] == runs["plain"][0]
    assert np.allclose(runs["one"][1].drop(columns="Id"), runs["plain"][1].drop(columns="Id"), atol=1e-5)


def test_evaluate_tta_reports_passes_histogram_and_keeps_calibration(trained, tmp_path, capsys):
    run_dir, _ = trained
    code, out, err = cli(["evaluate", run_dir, "--out", tmp_path / "eval", "--tta", "3"], capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    n = metrics["images"]
    assert metrics["tta"] == "fixed" and metrics["forward_passes"] == 3 * n
    assert metrics["passes_per_image"] == {"3": n}
    assert "ece_before" in metrics  # the identity view's logits were kept during TTA
    assert f"forward passes {3 * n} (3.00/image; views per image: 3×{n})" in " ".join(out.split())


def test_evaluate_tta_compare_writes_the_table(trained, tmp_path, capsys):
    run_dir, _ = trained
    code, out, err = cli(["evaluate", run_dir, "--out", tmp_path / "eval", "--tta-compare", "--tta-ns", "2,4"], capsys)
    assert code == 0, err
    table = pd.read_csv(tmp_path / "eval" / "tta_compare.csv")
    assert list(table["setting"]) == ["none", "fixed 2", "fixed 4", "adaptive", "adaptive (auto)"]
    n = table.loc[0, "forward_passes"]
    assert list(table["forward_passes"][:3]) == [n, 2 * n, 4 * n]
    assert table["accuracy"].between(0, 1).all() and (table["wall_seconds"] > 0).all()
    assert (table["passes_per_image"] * n == table["forward_passes"]).all()
    assert table.loc[2, "share_of_full_passes"] == 1.0 and table.loc[2, "delta_pp_vs_full"] == 0.0
    md = (tmp_path / "eval" / "tta_compare.md").read_text()
    assert "scored on the other" in md and "| adaptive (auto) |" in md  # the honest split is stated
    assert "TTA comparison" in out and not (tmp_path / "eval" / "metrics.json").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tta", "0"], "--tta must be none, adaptive or a number"),
        (["--tta", "lots"], "--tta must be none, adaptive or a number"),
        (["--tta", "11"], "asks for more views than the 10 listed"),
        (["--tta-threshold", "0.3"], "only to adaptive TTA"),
        (["--tta", "adaptive", "--tta-budget", "0"], "tta.budget"),
        (["--tta", "2", "--tta-views", "identity,sideways"], "unknown TTA view 'sideways'"),
        (["--tta-compare", "--tta-ns", "2,x"], "--tta-ns"),
    ],
)
def test_bad_tta_options_exit_2_with_one_line(trained, capsys, args, message):
    run_dir, _ = trained
    code, _, err = cli(["evaluate", run_dir, *args], capsys)
    assert code == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_tta_skips_unreadable_images(trained, tmp_path):
    from imgclf.data.samples import list_test_images
    from imgclf.infer.predict import predict_paths
    from imgclf.run.load import load_run

    run_dir, data = trained
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    paths = list_test_images(data / "test") + [broken]
    loaded = load_run(run_dir)
    pred = predict_paths(loaded, paths, root=data, tta=TTAConfig(mode="adaptive", max_views=3))
    assert pred.bad == [broken] and pred.paths == paths[:-1]
    assert pred.probs.shape == (len(paths) - 1, 3) and len(pred.passes) == len(paths) - 1


def test_compare_replayed_rows_match_running_them(trained):
    """Rows derived from the views' logits give the accuracy and passes that running each setting gives."""
    from imgclf.infer.tta_compare import compare_run

    run_dir, _ = trained
    cfg = TTAConfig(views=["identity", "hflip", "center_crop", "scale_1.15"], max_views=4, threshold=0.3)
    replayed = compare_run(run_dir, tta=cfg, ns=(2, 4), out=run_dir / "cmp_a")["result"]
    measured = compare_run(run_dir, tta=cfg, ns=(2, 4), out=run_dir / "cmp_b", measure=True)["result"]
    for a, b in zip(replayed.rows, measured.rows):
        assert (a.setting, a.forward_passes, a.passes_histogram) == (b.setting, b.forward_passes, b.passes_histogram)
        assert a.accuracy == pytest.approx(b.accuracy)
        assert (a.timing, b.timing) == ("estimated", "measured")
