"""Issue 33 end to end: each competition format (tags in one column, one 0/1 column per label, a numeric target)
through train, evaluate, predict with TTA, export and the Python API, on tiny generated datasets; and the README's
worked example of each format, run as written."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import TINY, cli

README = Path(__file__).resolve().parents[1] / "README.md"
LABELS = ("bag", "shirt", "shoe")


def _image(rng: np.random.Generator, on: np.ndarray) -> Image.Image:
    """A 40 px image whose labels are visible: label j brightens channel j."""
    arr = rng.integers(0, 60, size=(40, 40, 3), dtype=np.uint8)
    for j, flag in enumerate(on):
        if flag:
            arr[..., j] += 150
    return Image.fromarray(arr)


def make_task_dataset(root: Path, kind: str, n: int = 24, test: int = 6, seed: int = 0) -> Path:
    """A Kaggle-style folder: ``train/<id>.png`` with ``train.csv`` (ids without extension), ``test/`` and a sample.

    ``kind``: ``tags`` (``image_name,tags``), ``columns`` (``image_id,bag,shirt,shoe``) or ``numeric`` (``Id,price``,
    the number of labels present times 10 plus noise)."""
    rng = np.random.default_rng(seed)
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    rows = []
    for i in range(n):
        on = rng.random(3) < 0.5
        on[i % 3] = True  # every label occurs, every image has one
        _image(rng, on).save(root / "train" / f"train_{i}.png")
        rows.append(on)
    for i in range(test):
        _image(rng, rng.random(3) < 0.5).save(root / "test" / f"test_{i}.png")
    ids = [f"train_{i}" for i in range(n)]
    if kind == "tags":
        frame = pd.DataFrame({"image_name": ids, "tags": [" ".join(np.array(LABELS)[r]) for r in rows]})
        sample = pd.DataFrame({"image_name": [f"test_{i}" for i in range(test)], "tags": "bag"})
    elif kind == "columns":
        frame = pd.DataFrame({"image_id": ids, **{name: [int(r[j]) for r in rows] for j, name in enumerate(LABELS)}})
        sample = pd.DataFrame({"image_id": [f"test_{i}" for i in range(test)], **{name: 0 for name in LABELS}})
    else:
        price = [10.0 * r.sum() + float(rng.normal(0, 1)) for r in rows]
        frame = pd.DataFrame({"Id": ids, "price": np.round(price, 2)})
        sample = pd.DataFrame({"Id": [f"test_{i}" for i in range(test)], "price": 0})
    frame.to_csv(root / "train.csv", index=False)
    sample.to_csv(root / "sample_submission.csv", index=False)
    return root


# data.augment left at auto: label sets and values train on the whole image (imgclf.training.task_setup)
QUICK = [*(s for s in TINY if not s.startswith("data.augment=")), "train.epochs=2", "data.val_fraction=0.34"]


@pytest.mark.parametrize(
    ("kind", "task", "metric"),
    [("tags", "multilabel", "map"), ("columns", "multilabel", "map"), ("numeric", "regression", "rmse")],
)
def test_train_evaluate_predict_each_format(tmp_path, capsys, kind, task, metric):
    data = make_task_dataset(tmp_path / "data", kind)
    run = tmp_path / "run"
    code, out, err = cli(["train", data / "train.csv", "--out", run, *sum((["--set", s] for s in QUICK), [])], capsys)
    assert code == 0, err
    assert json.loads((run / "task.json").read_text())["kind"] == task
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == task and summary["metric"] == metric and summary[f"val_{metric}"] is not None
    assert "val_accuracy" not in summary  # no class accuracy for label sets or values
    data_cfg = yaml.safe_load((run / "config.yaml").read_text())["data"]  # data.augment=auto: the whole image
    assert (data_cfg["augment"], data_cfg["flips"], data_cfg["eval_crop_pct"]) == ("none", "h", 1.0)
    assert json.loads((run / "preprocessing.json").read_text())["crop_pct"] == 1.0
    split = pd.read_csv(run / "split.csv", keep_default_na=False)
    assert set(split["split"]) == {"train", "val"}

    code, out, err = cli(["evaluate", run], capsys)
    assert code == 0, err
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["task"] == task and metrics[metric] is not None and metrics["evaluated_on"] == "validation split"
    assert (run / "eval" / "per_class.csv").is_file() == (task == "multilabel")

    sub = tmp_path / "submission.csv"
    code, out, err = cli(["predict", run, data / "test", "--out", sub, "--tta", "2"], capsys)
    assert code == 0, err
    frame = pd.read_csv(sub, keep_default_na=False)
    sample = pd.read_csv(data / "sample_submission.csv")
    assert frame.columns.tolist() == sample.columns.tolist()
    assert frame.iloc[:, 0].tolist() == sample.iloc[:, 0].tolist()
    if kind == "tags":
        assert all(set(cell.split()) <= set(LABELS) for cell in frame["tags"])
    elif kind == "columns":
        assert ((frame[list(LABELS)] >= 0) & (frame[list(LABELS)] <= 1)).all().all()
    else:
        assert frame["price"].dtype.kind == "f" and frame["price"].between(-50, 100).all()


def test_task_override_and_a_bad_target_are_one_line_errors(tmp_path, capsys):
    data = make_task_dataset(tmp_path / "data", "tags", n=12)
    args = ["train", data / "train.csv", "--out", tmp_path / "run", *sum((["--set", s] for s in QUICK), [])]
    code, out, err = cli([*args, "--set", "data.augment=medium", "--set", "train.epochs=1"], capsys)
    assert code == 0, err  # a preset named by the user is kept for label sets too, with the model's eval crop
    data_cfg = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]
    assert (data_cfg["augment"], data_cfg["flips"], data_cfg["eval_crop_pct"]) == ("medium", None, None)
    shutil.rmtree(tmp_path / "run")
    for setting, says in (("data.task=regression", "number"), ("train.metric=rmse", "rmse")):
        code, out, err = cli([*args, "--set", setting], capsys)
        errors = [line for line in err.splitlines() if line.startswith("error")]
        assert code == 2 and len(errors) == 1 and says in errors[0].lower() and "Traceback" not in err
        assert not (tmp_path / "run" / "summary.json").exists()


@pytest.mark.parametrize(
    ("kind", "metric", "score"),
    [("tags", "map", "f2_samples"), ("columns", "map", "mean_auc"), ("numeric", "rmse", "mae")],
)
def test_cv_gives_out_of_fold_scores_that_evaluate_and_predict_use(tmp_path, capsys, kind, metric, score):
    data = make_task_dataset(tmp_path / "data", kind, n=24)
    sets = sum((["--set", s] for s in QUICK), [])
    cv = tmp_path / "cv"
    code, out, err = cli(["cv", data / "train.csv", "--out", cv, "--folds", "2", *sets], capsys)
    assert code == 0, err
    summary = json.loads((cv / "summary.json").read_text())
    assert summary["metric"] == metric and list(summary["cv"])[0] == metric and score in summary["cv"]
    oof = pd.read_csv(cv / "oof.csv", keep_default_na=False)
    assert len(oof) == 24 and set(oof["fold"]) == {1, 2}
    assert set(pd.read_csv(cv / "folds.csv")["fold"]) == {1, 2}
    assert summary["label_issues"] is not None and (cv / "label_issues.csv").is_file()  # label sets and values alike
    code, out, err = cli(["evaluate", cv], capsys)
    assert code == 0, err
    assert json.loads((cv / "eval" / "metrics.json").read_text())["source"] == "oof"
    code, out, err = cli(["predict", cv, data / "test", "--out", tmp_path / "sub.csv"], capsys)
    assert code == 0, err
    assert len(pd.read_csv(tmp_path / "sub.csv")) == 6
    assert (cv / "report.html").is_file()


@pytest.mark.parametrize(("kind", "task", "metric"), [("tags", "multilabel", "map"), ("numeric", "regression", "rmse")])
def test_ensemble_of_two_cvs_blends_their_outputs(tmp_path, capsys, kind, task, metric):
    data = make_task_dataset(tmp_path / "data", kind, n=24)
    sets = sum((["--set", s] for s in QUICK), [])
    for seed in (0, 1):
        cv = tmp_path / f"cv{seed}"
        code, out, err = cli(
            ["cv", data / "train.csv", "--out", cv, "--folds", "2", *sets, "--set", f"train.seed={seed}"], capsys
        )
        assert code == 0, err
    code, out, err = cli(["ensemble", tmp_path / "cv0", tmp_path / "cv1", "--out", tmp_path / "ens"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "ens" / "summary.json").read_text())
    assert summary["task"] == task and summary["metric"] == metric
    assert abs(sum(m["weight"] for m in summary["members"]) - 1) < 1e-6
    assert ("f2_samples" if task == "multilabel" else "mae") in summary["ensemble"]
    code, out, err = cli(
        ["predict", tmp_path / "ens", data / "test", "--out", tmp_path / "sub.csv", "--tta", "2"], capsys
    )
    assert code == 0, err
    sub = pd.read_csv(tmp_path / "sub.csv", keep_default_na=False)
    if task == "multilabel":
        assert all(set(t.split()) <= set(LABELS) for t in sub["tags"])
    else:
        assert len(sub) == 6 and sub["price"].dtype.kind == "f"


@pytest.mark.parametrize(
    ("kind", "task"), [("tags", "multilabel"), ("columns", "multilabel"), ("numeric", "regression")]
)
def test_python_api_and_onnx_export_for_each_format(tmp_path, capsys, kind, task):
    import imgclf

    data = make_task_dataset(tmp_path / "data", kind)
    run = tmp_path / "run"
    summary = imgclf.train(data / "train.csv", out=run, overrides=QUICK, progress=False, report=False)
    assert summary["task"] == task
    torch_sub, onnx_sub = tmp_path / "torch.csv", tmp_path / "onnx.csv"
    imgclf.predict(run, data / "test", out=torch_sub, progress=False)
    imgclf.predict(run, data / "test", out=onnx_sub, engine="onnx", progress=False)  # exported on first use
    a, b = pd.read_csv(torch_sub, keep_default_na=False), pd.read_csv(onnx_sub, keep_default_na=False)
    assert a.iloc[:, 0].tolist() == b.iloc[:, 0].tolist()
    if kind == "numeric":
        assert np.allclose(a["price"], b["price"], atol=1e-3 * max(1.0, float(a["price"].abs().max())))
    elif kind == "columns":
        assert np.allclose(a[list(LABELS)], b[list(LABELS)], atol=1e-3)
    else:  # the same tags, but for a probability within float noise of its threshold
        assert (a["tags"] == b["tags"]).mean() >= 5 / 6
    code, out, err = cli(["export", run, "--format", "timm", "--out", tmp_path / "timm"], capsys)
    assert code == 0, err


def readme_task_commands() -> list[list[str]]:
    text = README.read_text()
    section = text[text.index("## Multi-label and regression competitions") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line)[1:] for line in block.splitlines() if line.startswith("imgclf ")]


def test_readme_worked_examples_run_as_written(tmp_path, capsys, monkeypatch):
    """Each README command, with the tiny model set on train, on a dataset of the format its comment names."""
    commands = readme_task_commands()
    assert [c[0] for c in commands] == ["train", "predict", "train", "predict", "train", "evaluate", "predict"]
    monkeypatch.chdir(tmp_path)
    planet = make_task_dataset(tmp_path / "data" / "planet", "tags")
    (planet / "train").rename(planet / "train-jpg")
    (planet / "test").rename(planet / "test-jpg")
    plants = make_task_dataset(tmp_path / "data" / "plants", "columns")
    (plants / "images").mkdir()
    for f in [*(plants / "train").iterdir(), *(plants / "test").iterdir()]:
        f.rename(plants / "images" / f.name)
    make_task_dataset(tmp_path / "data" / "pets", "numeric")
    pets = tmp_path / "data" / "pets"
    frame = pd.read_csv(pets / "train.csv").rename(columns={"price": "Pawpularity"})
    frame.insert(1, "Eyes", np.arange(len(frame)) % 2)  # a second numeric column: the target is named
    frame.to_csv(pets / "train.csv", index=False)
    pd.read_csv(pets / "sample_submission.csv").rename(columns={"price": "Pawpularity"}).to_csv(
        pets / "sample_submission.csv", index=False
    )
    for args in commands:
        extra = sum((["--set", s] for s in QUICK), []) if args[0] == "train" else []
        code, out, err = cli([*args, *extra], capsys)
        assert code == 0, (args, err)
    for name in ("planet", "plants", "pets"):
        sub = pd.read_csv(tmp_path / "runs" / name / "submission.csv")
        assert len(sub) == 6


@pytest.mark.parametrize(
    ("kind", "task"), [("tags", "multilabel"), ("columns", "multilabel"), ("numeric", "regression")]
)
def test_prepare_puts_label_sets_and_values_flat_with_their_targets_and_train_reads_them(tmp_path, capsys, kind, task):
    data = make_task_dataset(tmp_path / "data", kind, n=12)
    source = pd.read_csv(data / "train.csv")
    # a byte-identical copy of train_0 under another name: prepare keeps one of the two, as for classes
    (data / "train" / "train_99.png").write_bytes((data / "train" / "train_0.png").read_bytes())
    pd.concat([source, source.iloc[[0]].replace({"train_0": "train_99"})]).to_csv(data / "train.csv", index=False)
    prepared = tmp_path / "prepared"
    code, out, err = cli(["prepare", data, "--out", prepared, "--max-drop", "0.1"], capsys)  # Kaggle layout
    assert code == 0, err
    assert f"in {1 if task == 'regression' else 3} " in out and task in out
    assert sorted(p.name for p in (prepared / "train").iterdir()) == sorted(f"train_{i}.png" for i in [*range(12), 99])
    assert len(list((prepared / "test").iterdir())) == 6 and (prepared / "sample_submission.csv").is_file()
    written = pd.read_csv(prepared / "train.csv")
    assert json.loads((prepared / "targets.json").read_text())["task"] == task
    assert len(written) == 13 and written["path"].str.startswith("train/").all()
    by_id = source.set_index(source.columns[0])
    first = written.set_index("path").loc["train/train_5.png"]
    if task == "regression":
        assert written.columns.tolist() == ["path", "price"] and first["price"] == pytest.approx(
            by_id.loc["train_5", "price"]
        )
    else:
        assert written.columns.tolist() == ["path", *LABELS]
        truth = by_id.loc["train_5"]
        on = set(truth["tags"].split()) if kind == "tags" else {n for n in LABELS if truth[n] == 1}
        assert {n for n in LABELS if first[n] == 1} == on
    manifest = pd.read_csv(prepared / "manifest.csv", keep_default_na=False)
    dropped = manifest[manifest["keep"].astype(str) == "False"]
    assert len(dropped) == 1 and dropped["path"].iloc[0] in ("train/train_0.png", "train/train_99.png")

    run = tmp_path / "run"
    code, out, err = cli(["train", prepared, "--out", run, *sum((["--set", s] for s in QUICK), [])], capsys)
    assert code == 0, err
    assert json.loads((run / "task.json").read_text())["kind"] == task
    split = pd.read_csv(run / "split.csv", keep_default_na=False)
    assert len(split) == 12 and dropped["path"].iloc[0] not in set(split["path"])  # the copy is left out


def test_prepare_reads_integer_grades_as_values_when_told_and_refuses_a_holdout_of_values(tmp_path, capsys):
    data = make_task_dataset(tmp_path / "data", "numeric", n=12)
    frame = pd.read_csv(data / "train.csv")
    frame["price"] = (frame["price"] // 10).astype(int)  # grades 1..3: classes unless told otherwise
    frame.to_csv(data / "train.csv", index=False)
    code, out, err = cli(["prepare", data, "--out", tmp_path / "classes"], capsys)
    assert code == 0, err
    assert (tmp_path / "classes" / "train" / "1").is_dir() and not (tmp_path / "classes" / "targets.json").exists()
    code, out, err = cli(["prepare", data, "--out", tmp_path / "classes", "--task", "regression"], capsys)
    assert code == 0, err  # the same folder again, now as values: the class folders go, train.csv comes
    assert not (tmp_path / "classes" / "train" / "1").exists()
    assert json.loads((tmp_path / "classes" / "targets.json").read_text())["task"] == "regression"
    code, out, err = cli(["prepare", data, "--out", tmp_path / "classes"], capsys)
    assert code == 0, err  # and back to classes: prepare's train.csv goes with it
    assert not (tmp_path / "classes" / "train.csv").exists() and (tmp_path / "classes" / "train" / "1").is_dir()
    code, out, err = cli(
        ["prepare", data, "--out", tmp_path / "held", "--task", "regression", "--holdout", "0.2"], capsys
    )
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert code == 2 and len(errors) == 1 and "--holdout" in errors[0] and "Traceback" not in err
    assert not (tmp_path / "held").exists()


@pytest.mark.parametrize(("kind", "metric"), [("tags", "map"), ("numeric", "rmse")])
def test_train_budget_estimates_the_metric_with_its_standard_error(tmp_path, capsys, kind, metric):
    data = make_task_dataset(tmp_path / "data", kind, n=30)
    sets = sum((["--set", s] for s in TINY), [])
    code, out, err = cli(["train", data / "train.csv", "--out", tmp_path / "run", "--budget", "15s", *sets], capsys)
    assert code == 0, err
    estimate = json.loads((tmp_path / "run" / "recipe.json").read_text())["estimate"]
    assert estimate["metric"] == metric and estimate["value"] >= 0 and estimate["se"] > 0
    assert metric != "map" or estimate["value"] <= 1
    assert "estimate" in out and metric in out


def test_two_processes_and_a_resume_train_label_sets_and_values(tmp_path, capsys):
    """DDP reduces an epoch without a class accuracy; a resumed regression run keeps its task (mean and std)."""
    sets = sum((["--set", s] for s in [*TINY, "tracking.enabled=false", "train.epochs=1"]), [])
    tags = make_task_dataset(tmp_path / "tags", "tags", n=24)
    code, out, err = cli(["train", tags / "train.csv", "--out", tmp_path / "ddp", "--devices", "2", *sets], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "ddp" / "summary.json").read_text())["val_map"] is not None
    numeric = make_task_dataset(tmp_path / "numeric", "numeric", n=24)
    run = tmp_path / "res"
    code, out, err = cli(["train", numeric / "train.csv", "--out", run, *sets], capsys)
    task = (run / "task.json").read_text()
    code, out, err = cli(["train", "--resume", run, "--set", "train.epochs=2"], capsys)
    assert code == 0, err
    assert (run / "task.json").read_text() == task
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 2


def test_prepare_of_a_labels_csv_itself_takes_its_rows_and_refuses_a_credential(tmp_path, capsys):
    data = make_task_dataset(tmp_path / "data", "columns", n=12)
    code, out, err = cli(["prepare", data / "train.csv", "--out", tmp_path / "prepared"], capsys)
    assert code == 0, err
    assert len(pd.read_csv(tmp_path / "prepared" / "train.csv")) == 12
    assert not [p for p in (tmp_path / "prepared" / "train").iterdir() if p.is_dir()]  # flat: no class folders
    (data / "kaggle.json").write_text('{"username": "u", "key": "0123456789abcdef"}')
    frame = pd.read_csv(data / "train.csv")
    frame.loc[0, "image_id"] = "kaggle.json"
    frame.to_csv(data / "train.csv", index=False)
    code, out, err = cli(["prepare", data / "train.csv", "--out", tmp_path / "again"], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert code == 2 and len(errors) == 1 and "credential" in errors[0] and "0123456789abcdef" not in err
    assert not (tmp_path / "again").exists()


def test_show_augs_previews_the_whole_image_that_label_sets_train_on(tmp_path, capsys):
    data = make_task_dataset(tmp_path / "data", "tags", n=12)
    sets = ["model.weights=none", "model.backbone=test_efficientnet", "data.image_size=32"]
    code, out, err = cli(
        ["show-augs", data / "train.csv", "--out", tmp_path / "augs.png", *sum((["--set", s] for s in sets), [])],
        capsys,
    )
    assert code == 0, err
    assert "augment none: no random crop, flips h, no colour jitter; eval crop 1 of 32 px" in out
    assert (tmp_path / "augs.png").is_file()
