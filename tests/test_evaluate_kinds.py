"""``imgclf evaluate RUN [DATASET]`` on every kind of run: a train run with or without a validation split, a
``train --budget`` run with members (ensemble.json), a CV folder and an ensemble folder. Each either scores
or says, in one line with exit code 2, what to pass."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import TINY, cli, make_dataset

TINY_SET = [x for o in [*TINY, "train.epochs=1"] for x in ("--set", o)]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kinds")
    make_dataset(root / "data", per_class=6, test=0)
    make_dataset(root / "holdout", per_class=2, test=0, seed=5)
    return root


def _train(work: Path, name: str, *extra: str) -> Path:
    from imgclf.cli.main import run

    out = work / name
    if not out.exists():
        try:
            run([str(a) for a in ["train", work / "data", "--out", out, *TINY_SET, *extra]])
        except SystemExit as exc:
            assert not exc.code
    return out


def _one_line_exit_2(args: list, capsys, *words: str) -> str:
    capsys.readouterr()  # what training the fixtures printed
    code, _, err = cli(args, capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, err
    return err


def test_a_run_with_a_validation_split_is_scored_on_it(work: Path, capsys):
    run = _train(work, "split_run")
    code, out, err = cli(["evaluate", run], capsys)
    assert code == 0, err
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["evaluated_on"] == "validation split"
    rows = pd.read_csv(run / "eval" / "predictions.csv")  # one row per scored image, in the data's own paths
    split = pd.read_csv(run / "split.csv")
    assert sorted(rows["path"]) == sorted(split.loc[split["split"] == "val", "path"])
    assert rows["correct"].mean() == pytest.approx(metrics["accuracy"])
    assert (rows["correct"] == (rows["label"] == rows["pred"])).all()


def test_a_run_trained_on_every_image_needs_a_dataset_and_says_so(work: Path, capsys):
    run = _train(work, "all_run", "--set", "data.val_fraction=0")
    _one_line_exit_2(["evaluate", run], capsys, "has no validation images", "imgclf prepare --holdout")
    code, _, err = cli(["evaluate", run, work / "holdout"], capsys)
    assert code == 0, err
    assert json.loads((run / "eval" / "metrics.json").read_text())["images"] == 6


def _with_member(run: Path, dest: Path, member_split_from: Path | None = None) -> Path:
    """A copy of ``run`` laid out as train --budget writes two models: members/2 and an ensemble.json listing both."""
    shutil.copytree(run, dest)
    shutil.copytree(run, dest / "members" / "2", ignore=shutil.ignore_patterns("members"))
    if member_split_from is not None:
        shutil.copy(member_split_from / "split.csv", dest / "members" / "2" / "split.csv")
    (dest / "ensemble.json").write_text(
        json.dumps({"members": [{"path": ".", "weight": 0.5}, {"path": "members/2", "weight": 0.5}]})
    )
    return dest


def test_a_budget_run_with_members_is_scored_as_the_blend_on_their_shared_validation_split(work: Path, capsys):
    run = _with_member(_train(work, "split_run"), work / "budget_members")
    code, out, err = cli(["evaluate", run], capsys)
    assert code == 0, err
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["models"] == 2 and metrics["evaluated_on"] == "validation split"
    assert "the blend of its 2 models" in out


def test_a_budget_run_whose_member_trained_on_the_validation_images_is_not_scored_on_them(work: Path, capsys):
    run = _with_member(
        _train(work, "split_run"),
        work / "budget_leaky",
        member_split_from=_train(work, "all_run", "--set", "data.val_fraction=0"),
    )
    _one_line_exit_2(["evaluate", run], capsys, "members/2", "trained on some of the run's validation images")
    assert cli(["evaluate", run, work / "holdout"], capsys)[0] == 0


def test_a_budget_run_without_validation_images_needs_a_dataset_and_says_so(work: Path, capsys):
    run = _with_member(_train(work, "all_run", "--set", "data.val_fraction=0"), work / "budget_all")
    _one_line_exit_2(["evaluate", run], capsys, "has no validation images", "imgclf prepare --holdout")
    code, _, err = cli(["evaluate", run, work / "holdout"], capsys)
    assert code == 0, err
    assert json.loads((run / "eval" / "metrics.json").read_text())["models"] == 2


@pytest.fixture(scope="module")
def cv_dir(work: Path) -> Path:
    from imgclf.cli.main import run

    out = work / "cv"
    try:
        run([str(a) for a in ["cv", work / "data", "--folds", "2", "--out", out, *TINY_SET]])
    except SystemExit as exc:
        assert not exc.code
    return out


def test_a_cv_folder_is_scored_on_its_out_of_fold_predictions_or_on_a_dataset(work: Path, cv_dir: Path, capsys):
    code, out, err = cli(["evaluate", cv_dir], capsys)
    assert code == 0, err
    metrics = json.loads((cv_dir / "eval" / "metrics.json").read_text())
    assert metrics["images"] == 18 and metrics["forward_passes"] == 0 and "out-of-fold" in metrics["evaluated_on"]
    assert "no forward pass" in out
    code, _, err = cli(["evaluate", cv_dir, work / "holdout", "--out", work / "cv_eval"], capsys)
    assert code == 0, err
    assert json.loads((work / "cv_eval" / "metrics.json").read_text())["models"] == 2
    bare = work / "cv_without_oof"
    shutil.copytree(cv_dir, bare)
    (bare / "oof.csv").unlink()
    _one_line_exit_2(["evaluate", bare], capsys, "no out-of-fold predictions", "imgclf prepare --holdout")


def test_an_ensemble_folder_is_scored_on_its_blended_oof_or_on_a_dataset(work: Path, cv_dir: Path, capsys):
    twin = work / "cv_twin"
    if not twin.exists():
        shutil.copytree(cv_dir, twin)
    ens = work / "ens"
    assert cli(["ensemble", cv_dir, twin, "--out", ens, "--weights", "equal"], capsys)[0] == 0
    code, _, err = cli(["evaluate", ens], capsys)
    assert code == 0, err
    assert "out-of-fold" in json.loads((ens / "eval" / "metrics.json").read_text())["evaluated_on"]
    code, _, err = cli(["evaluate", ens, work / "holdout"], capsys)
    assert code == 0, err
    assert json.loads((ens / "eval" / "metrics.json").read_text())["models"] == 4
