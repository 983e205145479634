"""The foundation path: train → run directory → evaluate → predict, through the real CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from safetensors.torch import load_file

from conftest import cli


def sets(overrides: list[str]) -> list[str]:
    return [x for o in overrides for x in ("--set", o)]


@pytest.fixture
def trained(tiny_dataset: Path, tiny_overrides: list[str], tmp_path: Path, capsys) -> Path:
    out = tmp_path / "run"
    code, _, err = cli(["train", tiny_dataset, "--out", out, *sets(tiny_overrides)], capsys)
    assert code == 0, err
    return out


def test_train_writes_every_run_directory_file(trained: Path):
    for name in [
        "config.yaml",
        "metrics.csv",
        "summary.json",
        "split.csv",
        "classes.json",
        "environment.json",
        "preprocessing.json",
        "val_predictions.csv",
        "checkpoints/best.safetensors",
        "checkpoints/last.pt",
    ]:
        assert (trained / name).is_file(), name
    cfg = yaml.safe_load((trained / "config.yaml").read_text())
    assert cfg["model"]["backbone"] == "test_efficientnet" and cfg["train"]["epochs"] == 2
    rows = list(csv.DictReader(open(trained / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {
        "epoch",
        "lr",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "epoch_seconds",
        "images_per_second",
    } <= set(rows[0])
    assert all(float(r["epoch_seconds"]) > 0 for r in rows)
    summary = json.loads((trained / "summary.json").read_text())
    for key in ["val_accuracy", "val_loss", "best_epoch", "epochs_run", "train_seconds", "backbone", "weights"]:
        assert key in summary, key
    assert summary["epochs_run"] == 2 and summary["backbone"] == "test_efficientnet" and summary["pretrained"] is False
    assert json.loads((trained / "classes.json").read_text()) == ["alpha", "beta", "gamma"]
    env = json.loads((trained / "environment.json").read_text())
    assert env["packages"]["torch"].startswith("2.") and env["device"] == "cpu"
    split = pd.read_csv(trained / "split.csv")
    assert set(split["split"]) == {"train", "val"} and len(split) == 24
    assert split.groupby("label")["split"].apply(lambda s: (s == "val").sum()).min() >= 1  # stratified
    weights = load_file(trained / "checkpoints" / "best.safetensors")
    assert any(k.startswith("backbone.") for k in weights) and any(k.startswith("head.") for k in weights)


def test_split_is_reproducible_and_independent_of_training_seed(tiny_dataset, tiny_overrides, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    base = [*sets(tiny_overrides), "--set", "train.epochs=1"]
    assert cli(["train", tiny_dataset, "--out", a, *base], capsys)[0] == 0
    assert cli(["train", tiny_dataset, "--out", b, *base, "--set", "train.seed=5"], capsys)[0] == 0
    assert (a / "split.csv").read_text() == (b / "split.csv").read_text()


def test_predict_follows_sample_submission(trained: Path, tiny_dataset: Path, tmp_path: Path, capsys):
    out, probs = tmp_path / "sub.csv", tmp_path / "probs.csv"
    code, stdout, err = cli(["predict", trained, tiny_dataset / "test", "--out", out, "--probs", probs], capsys)
    assert code == 0, err
    sub = pd.read_csv(out)
    sample = pd.read_csv(tiny_dataset / "sample_submission.csv")
    assert list(sub.columns) == ["Id", "Category"]
    assert list(sub["Id"]) == list(sample["Id"])
    assert set(sub["Category"]) <= {0, 1, 2}  # integers in the sample → class indices
    p = pd.read_csv(probs)
    assert list(p.columns) == ["Id", "alpha", "beta", "gamma"]
    assert p[["alpha", "beta", "gamma"]].sum(axis=1).round(4).eq(1.0).all()


def test_predict_writes_names_without_sample(trained: Path, tiny_dataset: Path, tmp_path: Path, capsys):
    (tiny_dataset / "sample_submission.csv").unlink()
    out = tmp_path / "sub.csv"
    assert cli(["predict", trained, tiny_dataset / "test", "--out", out, "--category", "name"], capsys)[0] == 0
    sub = pd.read_csv(out)
    assert list(sub.columns) == ["Id", "Category"] and set(sub["Category"]) <= {"alpha", "beta", "gamma"}


def test_evaluate_writes_scores(trained: Path, capsys):
    code, stdout, err = cli(["evaluate", trained], capsys)
    assert code == 0, err
    metrics = json.loads((trained / "eval" / "metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["images"] == 6
    confusion = pd.read_csv(trained / "eval" / "confusion_matrix.csv", index_col=0)
    assert confusion.values.sum() == 6 and list(confusion.columns) == ["alpha", "beta", "gamma"]
    assert (trained / "eval" / "confusion_matrix.png").stat().st_size > 1000
    assert len(pd.read_csv(trained / "eval" / "per_class.csv")) == 3


def test_corrupt_image_is_skipped_and_listed(tiny_dataset, tiny_overrides, tmp_path, capsys):
    (tiny_dataset / "train" / "alpha" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "run"
    # One batch holds every image, so the broken file is certainly drawn (no drop_last remainder).
    code, _, err = cli(
        [
            "train",
            tiny_dataset,
            "--out",
            out,
            *sets(tiny_overrides),
            "--set",
            "train.epochs=1",
            "--set",
            "data.batch_size=64",
        ],
        capsys,
    )
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert "train/alpha/broken.png" in summary["skipped_images"]


def _missing(d: Path) -> Path:
    return d / "nope"


def _one_class(d: Path) -> Path:
    for name in ("beta", "gamma"):
        (d / "train" / name).rename(d / name)
    return d


def _empty_class(d: Path) -> Path:
    for p in (d / "train" / "beta").iterdir():
        p.unlink()
    return d


@pytest.mark.parametrize(
    "make_bad, expected",
    [(_missing, "dataset not found"), (_one_class, "at least two classes"), (_empty_class, "no images")],
    ids=["missing-folder", "one-class", "empty-class"],
)
def test_bad_dataset_is_one_line_exit_2(tiny_dataset, tiny_overrides, tmp_path, capsys, make_bad, expected):
    bad = make_bad(tiny_dataset)
    out = tmp_path / "run"
    code, _, err = cli(["train", bad, "--out", out, *sets(tiny_overrides)], capsys)
    assert code == 2
    assert expected in err and "Traceback" not in err
    assert not out.exists()  # nothing half-written


def test_unknown_config_key_suggests(tiny_dataset, tmp_path, capsys):
    code, _, err = cli(["train", tiny_dataset, "--out", tmp_path / "r", "--set", "train.epoch=3"], capsys)
    assert code == 2 and "did you mean 'train.epochs'" in err
    code, _, err = cli(["train", tiny_dataset, "--out", tmp_path / "r", "--set", "train.lr=fast"], capsys)
    assert code == 2 and "train.lr" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_mismatched_weights_file_is_one_line(tiny_dataset, tiny_overrides, trained, tmp_path, capsys):
    weights = trained / "checkpoints" / "best.safetensors"
    args = [
        "train",
        tiny_dataset,
        "--out",
        tmp_path / "r2",
        *sets(tiny_overrides),
        "--set",
        f"model.weights={weights}",
        "--set",
        "model.backbone=resnet18",
    ]
    code, _, err = cli(args, capsys)
    assert code == 2 and "does not fit backbone resnet18" in err and "Traceback" not in err


def test_predict_on_missing_run_is_exit_2(tmp_path, capsys):
    code, _, err = cli(["predict", tmp_path / "none", tmp_path], capsys)
    assert code == 2 and "run directory not found" in err


def test_print_config_shows_resolved_config_that_round_trips(tmp_path, capsys):
    code, out, err = cli(["train", "--print-config", "--set", "model.head=mlp_bn"], capsys)
    assert code == 0, err
    tree = yaml.safe_load(out)
    assert tree["model"]["head"] == "mlp_bn" and tree["model"]["backbone"] == "tf_efficientnet_lite0"
    (tmp_path / "c.yaml").write_text(out)
    code, again, _ = cli(["train", "--print-config", "--config", tmp_path / "c.yaml"], capsys)
    assert code == 0 and yaml.safe_load(again) == tree


def test_a_loaded_run_predicts_in_channels_last_on_the_cpu_unless_turned_off(trained: Path):
    """NHWC pays in oneDNN's CPU convolutions too (BENCHMARKS.md "Memory format"): the loaded model's conv weights
    are channels_last, and its logits match the default layout's; train.channels_last=false keeps NCHW."""
    import torch

    from imgclf.runtime import use_channels_last
    from imgclf.run.load import load_run

    assert use_channels_last(torch.device("cpu"), True) and not use_channels_last(torch.device("cpu"), False)
    assert not use_channels_last(torch.device("meta"), True)
    loaded = load_run(trained)
    convs = [m.weight for m in loaded.model.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.shape[-1] > 1]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert any(not w.is_contiguous() for w in convs)  # (a depthwise kernel, one input channel, is both)
    config = trained / "config.yaml"
    data = yaml.safe_load(config.read_text())
    data["train"]["channels_last"] = False
    config.write_text(yaml.safe_dump(data))
    plain = load_run(trained)
    assert all(m.weight.is_contiguous() for m in plain.model.modules() if isinstance(m, torch.nn.Conv2d))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), plain.model(x), atol=1e-5)
