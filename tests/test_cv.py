"""Cross-validation, OOF predictions, refit, ensembles and label-issue candidates."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax

from conftest import TINY, cli, make_dataset
from imgclf.cli.main import run
from imgclf.data.blocklist import load_blocklist
from imgclf.errors import DataError
from imgclf.experiments.cv import make_folds
from imgclf.experiments.ensemble import blend_log_loss, blend_weights
from imgclf.experiments.label_issues import rank_label_issues, rank_value_issues, write_label_issues
from imgclf.experiments.oof import Oof
from imgclf.experiments.stats import mean_std_ci
from imgclf.task import Task

CV_SET = [*TINY, "train.epochs=1"]
PAIRS = 2  # per class, images 2i and 2i+1 are near-duplicates (one group) for i < PAIRS


def _with_manifest(root: Path) -> Path:
    """A prepared-looking dataset: manifest.csv ties pairs of images into duplicate groups."""
    rows = []
    for path in sorted((root / "train").rglob("*.png")):
        cls, index = path.parent.name, int(path.stem.split("_")[-1])
        group = f"{cls}-dup{index // 2}" if index < 2 * PAIRS else ""
        rel = path.relative_to(root).as_posix()
        rows.append(
            {
                "path": rel,
                "label": cls,
                "split": "train",
                "sha256": hashlib.sha256(rel.encode()).hexdigest(),
                "bytes": path.stat().st_size,
                "width": 40,
                "height": 40,
                "mode": "RGB",
                "format": "PNG",
                "phash": "",
                "flags": "",
                "reasons": "",
                "dup_group": group,
                "keep": "true",
                "source": "",
            }
        )
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


def _cv(dataset: Path, out: Path, *extra: str) -> int:
    args = ["cv", dataset, "--folds", "3", "--out", out, *extra, *[a for s in CV_SET for a in ("--set", s)]]
    try:
        run([str(a) for a in args])
    except SystemExit as exc:
        return exc.code or 0
    return 0


@pytest.fixture(scope="module")
def cv_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cv")
    dataset = _with_manifest(make_dataset(root / "data", per_class=8, test=5))
    out = root / "cv"
    assert _cv(dataset, out, "--refit") == 0
    return out


def test_make_folds_keeps_groups_whole_and_stratifies() -> None:
    labels = [i % 3 for i in range(120)]
    groups = [f"g{i // 3 if i < 60 else i}" for i in range(120)]  # the first 60 images in triples
    folds = make_folds(labels, groups, 4, seed=1)
    by_group = pd.DataFrame({"g": groups, "f": folds}).groupby("g")["f"].nunique()
    assert by_group.max() == 1
    assert set(folds) == {1, 2, 3, 4}
    per_fold_class = pd.crosstab(folds, labels)
    assert per_fold_class.to_numpy().min() >= 7  # 40 per class over 4 folds, groups of 3 allow some slack
    with pytest.raises(DataError, match="distinct image groups"):
        make_folds([0, 1, 0], ["a", "a", "b"], 3, seed=0)


def test_cv_folds_never_split_a_duplicate_group(cv_dir: Path) -> None:
    folds = pd.read_csv(cv_dir / "folds.csv", keep_default_na=False)
    assert folds.groupby("group")["fold"].nunique().max() == 1
    assert (folds.groupby("group").size() == 2).sum() == 3 * PAIRS
    for k in (1, 2, 3):
        split = pd.read_csv(cv_dir / "splits" / f"fold_{k}.csv")
        val = set(split.loc[split["split"] == "val", "path"])
        assert val == set(folds.loc[folds["fold"] == k, "path"])
        assert set(pd.read_csv(cv_dir / f"fold_{k}" / "split.csv").query("split == 'val'")["path"]) == val


def test_oof_has_every_training_image_once_with_calibrated_probs(cv_dir: Path) -> None:
    oof = pd.read_csv(cv_dir / "oof.csv")
    folds = pd.read_csv(cv_dir / "folds.csv")
    assert len(oof) == len(folds) == 24
    assert sorted(oof["path"]) == sorted(folds["path"]) and not oof["path"].duplicated().any()
    assert dict(zip(oof["path"], oof["fold"])) == dict(zip(folds["path"], folds["fold"]))
    probs = oof[["prob_alpha", "prob_beta", "prob_gamma"]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    val = pd.read_csv(cv_dir / "fold_2" / "val_predictions.csv")
    temperature = json.loads((cv_dir / "fold_2" / "calibration.json").read_text())["temperature"]
    expected = softmax(val[["logit_0", "logit_1", "logit_2"]].to_numpy() / temperature, axis=1)
    got = oof.set_index("path").loc[val["path"], ["prob_alpha", "prob_beta", "prob_gamma"]].to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_summary_intervals_refit_report_and_issue_list(cv_dir: Path) -> None:
    summary = json.loads((cv_dir / "summary.json").read_text())
    acc = summary["cv"]["accuracy"]
    mean, std, lo, hi = mean_std_ci([r["accuracy"] for r in summary["per_fold"]])
    assert [acc["mean"], acc["std"], *acc["ci95"]] == pytest.approx([mean, std, lo, hi])
    assert set(summary["cv"]) == {"accuracy", "macro_f1", "log_loss"} and summary["oof"]["images"] == 24
    assert summary["refit"]["refit"] is True and summary["refit"]["epochs_from"] == "cv median best epoch"
    assert summary["refit"]["validation"] is None
    refit = json.loads((cv_dir / "refit" / "summary.json").read_text())
    assert refit["refit"] is True and refit["train_images"] == 24 and refit["val_images"] == 0
    assert (cv_dir / "refit" / "checkpoints" / "best.safetensors").is_file()
    assert "Out-of-fold confusion matrix" in (cv_dir / "report.html").read_text()
    issues = load_blocklist(cv_dir / "label_issues.csv")  # the blocklist reader accepts it
    review = (cv_dir / "label_issues.html").read_text()  # ... and each candidate has a thumbnail on the review page
    assert review.count("<img ") == len(issues.by_path) and all(f'alt="{p}"' in review for p in issues.by_path)
    assert '<a href="label_issues.html">' in (cv_dir / "report.html").read_text()  # the CV report links the review


def test_predict_cv_dir_averages_the_folds(cv_dir: Path, capsys) -> None:
    test_dir = cv_dir.parent / "data" / "test"
    code, _, err = cli(
        ["predict", cv_dir, test_dir, "--out", cv_dir.parent / "sub.csv", "--probs", cv_dir.parent / "p.csv"], capsys
    )
    assert code == 0, err
    folds = []
    for k in (1, 2, 3):
        assert (
            cli(
                [
                    "predict",
                    cv_dir / f"fold_{k}",
                    test_dir,
                    "--out",
                    cv_dir.parent / f"s{k}.csv",
                    "--probs",
                    cv_dir.parent / f"p{k}.csv",
                ],
                capsys,
            )[0]
            == 0
        )
        folds.append(pd.read_csv(cv_dir.parent / f"p{k}.csv").set_index("Id"))
    blended = pd.read_csv(cv_dir.parent / "p.csv").set_index("Id")
    np.testing.assert_allclose(blended.to_numpy(), sum(f.to_numpy() for f in folds) / 3, atol=1e-5)
    assert len(pd.read_csv(cv_dir.parent / "sub.csv")) == 5

    twin = cv_dir.parent / "cv_twin"
    shutil.copytree(cv_dir, twin)
    ens = cv_dir.parent / "ens"
    code, out, err = cli(["ensemble", cv_dir, twin, "--out", ens, "--weights", "equal"], capsys)
    assert code == 0, err
    assert "equal weights" in out
    assert cli(["predict", ens, test_dir, "--out", ens / "sub.csv", "--probs", ens / "p.csv"], capsys)[0] == 0
    np.testing.assert_allclose(pd.read_csv(ens / "p.csv").set_index("Id").to_numpy(), blended.to_numpy(), atol=1e-5)


def _fake_run(root: Path, classes: list[str], paths: list[str]) -> Path:
    root.mkdir(parents=True)
    (root / "config.yaml").write_text("{}\n")
    (root / "classes.json").write_text(json.dumps(classes))
    logits = np.random.default_rng(0).normal(size=(len(paths), len(classes)))
    frame = pd.DataFrame({"path": paths, "label": [classes[i % len(classes)] for i in range(len(paths))]})
    for j in range(len(classes)):
        frame[f"logit_{j}"] = logits[:, j]
    frame.to_csv(root / "val_predictions.csv", index=False)
    return root


def test_ensemble_members_must_agree_on_classes_and_images(tmp_path: Path, capsys) -> None:
    paths = [f"train/x/{i}.png" for i in range(6)]
    a = _fake_run(tmp_path / "a", ["cat", "dog"], paths)
    b = _fake_run(tmp_path / "b", ["cat", "dog", "fox"], paths)
    c = _fake_run(tmp_path / "c", ["cat", "dog"], paths[:4])
    code, _, err = cli(["ensemble", a, b, "--out", tmp_path / "ens"], capsys)
    assert code == 2 and "disagree on classes" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(["ensemble", a, c, "--out", tmp_path / "ens"], capsys)
    assert code == 2 and "different images" in err
    assert not (tmp_path / "ens" / "ensemble.json").exists()


def test_blend_weights_find_the_known_optimum() -> None:
    # Member A is sure and right on 3 of 4 images, member B on the 4th: the loss is
    # -(3 log w + log(1 - w)) / 4, minimised at w = 0.75.
    a = np.array([[1.0, 0.0]] * 3 + [[0.0, 1.0]])
    b = np.array([[0.0, 1.0]] * 3 + [[1.0, 0.0]])
    labels = np.zeros(4, dtype=int)
    weights = blend_weights([a, b], labels)
    np.testing.assert_allclose(weights, [0.75, 0.25], atol=1e-4)
    assert blend_log_loss([a, b], labels, weights) <= blend_log_loss(
        [a, b], labels, blend_weights([a, b], labels, "equal")
    )
    # A useless third member (uniform) gets no weight when A alone is perfect.
    good = np.eye(3)[[0, 1, 2, 0]] * 0.9 + 0.1 / 3
    flat = np.full((4, 3), 1 / 3)
    w = blend_weights([good, flat], np.array([0, 1, 2, 0]))
    np.testing.assert_allclose(w, [1.0, 0.0], atol=1e-6)
    assert w.min() >= 0 and w.sum() == pytest.approx(1.0)


def test_label_issues_find_planted_flips(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n, k = 300, 3
    true = rng.integers(0, k, n)
    probs = rng.dirichlet(np.ones(k) * 0.5, n) * 0.15
    probs[np.arange(n), true] += 0.85
    labels = true.copy()
    flipped = rng.choice(n, 15, replace=False)
    labels[flipped] = (true[flipped] + 1) % k
    ranked = rank_label_issues(labels, probs)
    found, truth = set(ranked.tolist()), set(flipped.tolist())
    assert len(found & truth) / len(truth) >= 0.8 and len(found & truth) / len(found) >= 0.8
    assert set(ranked[:10].tolist()) <= set(flipped.tolist())  # the most suspicious are real flips
    oof = Oof([f"train/c/{i}.png" for i in range(n)], labels, probs, ["a", "b", "c"])
    blocked = load_blocklist(write_label_issues(tmp_path / "issues.csv", oof, ranked))
    assert all(blocked.reason(f"train/c/{i}.png") for i in flipped if i in found)


def test_value_issues_list_only_planted_outliers_most_suspicious_first(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    y = rng.uniform(0, 40, 400)
    pred = y + rng.normal(0, 2.0, 400)  # an out-of-fold model about 2 off
    wrong = rng.choice(400, 6, replace=False)
    y_given = y.copy()
    y_given[wrong] += np.array([25.0, -22.0, 30.0, -28.0, 20.0, 35.0])
    ranked = rank_value_issues(y_given, pred)
    assert set(ranked.tolist()) == set(wrong.tolist())  # the planted ones, and no honest label
    assert ranked[0] == wrong[5]  # the largest error first
    assert len(rank_value_issues(y, pred)) <= 2  # clean values: at most a stray tail point, never a share of them
    oof = Oof([f"train/{i}.png" for i in range(400)], y_given.reshape(-1, 1), pred.reshape(-1, 1), ["price"],
              task=Task("regression", ("price",)))  # fmt: skip
    lines = write_label_issues(tmp_path / "issues.csv", oof, ranked).read_text().splitlines()
    assert f"train/{wrong[5]}.png" in lines[4] and "out-of-fold model says" in lines[4]


def test_resume_retrains_only_unfinished_folds(cv_dir: Path) -> None:
    work = cv_dir.parent / "cv_resume"
    shutil.copytree(cv_dir, work)
    (work / "fold_2" / "summary.json").unlink()  # half-finished: its last.pt is still there
    shutil.rmtree(work / "fold_3")  # never started
    kept = {
        p: p.stat().st_mtime_ns
        for p in (
            work / "fold_1" / "summary.json",
            work / "fold_1" / "checkpoints" / "best.safetensors",
            work / "refit" / "summary.json",
        )
    }
    assert _cv(cv_dir.parent / "data", work, "--refit") == 0
    summary = json.loads((work / "summary.json").read_text())
    assert summary["actions"] == ["skipped", "resumed", "trained"]
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    assert (work / "fold_2" / "summary.json").is_file() and (work / "fold_3" / "summary.json").is_file()
    assert len(pd.read_csv(work / "oof.csv")) == 24


def test_refit_trains_the_chosen_epochs_with_no_validation(tmp_path: Path) -> None:
    from imgclf.config import load_config
    from imgclf.experiments.cv import median_best_epoch
    from imgclf.training.refit import refit_config

    assert (
        median_best_epoch([{"best_epoch": 3}, {"best_epoch": 8}, {"best_epoch": 4}, {"best_epoch": 5}]) == 5
    )  # 4.5 rounds up
    cfg = refit_config(load_config(None, [*TINY, "train.patience=3"]), 4)
    assert (cfg.train.epochs, cfg.train.patience, cfg.data.val_fraction) == (4, None, 0.0)  # nothing may stop it early


def test_impossible_fold_count_is_one_line_and_leaves_nothing_to_resume(tmp_path: Path, capsys) -> None:
    dataset = make_dataset(tmp_path / "data", per_class=3, test=0)
    args = ["cv", dataset, "--folds", "10", "--out", tmp_path / "cv", *[a for s in CV_SET for a in ("--set", s)]]
    code, _, err = cli(args, capsys)
    assert code == 2 and "cannot make 10 folds from 9 distinct image groups" in err
    assert not (tmp_path / "cv" / "cv.json").exists() and not (tmp_path / "cv" / "folds.csv").exists()
