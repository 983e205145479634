"""A run folder has one writer, a new run never lands on a user's files, and a run that could read
no image, or changed data under a resume, says so instead of "succeeding"."""

from __future__ import annotations

import json


from conftest import TINY, cli, make_dataset
from imgclf.config import load_config
from imgclf.run.lock import RunLock
from imgclf.run.rundir import RunDir
from imgclf.training.loop import fit


def _sets(*extra: str) -> list[str]:
    return [a for s in [*TINY, *extra] for a in ("--set", s)]


def _one_error_line(err: str) -> str:
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and len(errors[0]) < 300 and "Traceback" not in err
    return errors[0]


def test_a_second_training_on_a_locked_run_folder_exits_2(tmp_path, tiny_dataset, capsys):
    out = tmp_path / "run"
    lock = RunLock.acquire(RunDir(out))  # another training holds the folder
    try:
        code, _, err = cli(["train", str(tiny_dataset), "--out", out, *_sets()], capsys)
    finally:
        lock.release()
    assert code == 2
    assert "in use by another imgclf training" in _one_error_line(err)
    assert not (out / "metrics.csv").exists()


def test_train_refuses_a_non_empty_out_that_is_not_a_run_and_changes_nothing(tmp_path, tiny_dataset, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.yaml").write_text("train:\n  epochs: 1\n")
    (out / "notes.txt").write_text("keep me\n")
    code, _, err = cli(["train", str(tiny_dataset), "--out", out, "--config", out / "config.yaml", *_sets()], capsys)
    assert code == 2
    assert "is not empty and holds no imgclf run" in _one_error_line(err)
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "notes.txt"]
    assert (out / "config.yaml").read_text() == "train:\n  epochs: 1\n"


def test_an_unwritable_cache_falls_back_to_decoding_and_the_run_succeeds(tmp_path, tiny_dataset):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    cfg = load_config(None, [*TINY, "train.epochs=1", "data.cache=true", f"data.cache_dir={blocker}"])
    summary = fit(cfg, tiny_dataset, tmp_path / "run")
    assert summary["skipped_images"] == []
    assert summary["train_images"] > 0 and summary["val_accuracy"] is not None


def test_a_run_with_no_readable_training_image_exits_2_and_keeps_no_best_weights(tmp_path, capsys):
    dataset = make_dataset(tmp_path / "data", test=0)
    for image in (dataset / "train").rglob("*.png"):
        image.write_bytes(image.read_bytes()[:60])  # header only: every decode fails
    out = tmp_path / "run"
    code, _, err = cli(["train", str(dataset), "--out", out, *_sets()], capsys)
    assert code == 2
    line = _one_error_line(err)
    assert "could be read" in line or "unreadable" in line or "corrupt" in line
    assert not (out / "checkpoints" / "best.safetensors").exists()
    assert not (out / "summary.json").exists()


def test_resume_keeps_the_runs_split_when_images_were_added_since(tmp_path, caplog):
    dataset = make_dataset(tmp_path / "data", per_class=8, test=0)
    out = tmp_path / "run"
    cfg = load_config(None, [*TINY, "train.epochs=2"])
    fit(cfg, dataset, out)
    split_before = (out / "split.csv").read_text()
    make_dataset(tmp_path / "data", per_class=12, test=0, seed=5)  # 4 new images per class appear
    state = out / "checkpoints" / "last.pt"
    import torch

    saved = torch.load(state, weights_only=True)
    saved["epoch"] = 0  # pretend the run stopped after epoch 1
    torch.save(saved, state)
    (out / "summary.json").unlink()
    summary = fit(cfg, dataset, out, resume=True)
    assert (out / "split.csv").read_text() == split_before
    listed = {line.split(",")[0] for line in split_before.splitlines()[1:]}
    assert summary["train_images"] + summary["val_images"] == len(listed)
    assert "were added to the dataset since this run started" in caplog.text


def test_train_refit_trains_on_every_image_for_the_chosen_epochs(tmp_path, tiny_dataset, capsys):
    out = tmp_path / "run"
    code, stdout, err = cli(["train", str(tiny_dataset), "--out", out, "--refit", *_sets("train.epochs=2")], capsys)
    assert code == 0, err
    parent, child = (
        json.loads((out / "summary.json").read_text()),
        json.loads((out / "refit" / "summary.json").read_text()),
    )
    assert child["refit"] is True and child["val_accuracy"] is None and "no validation score" in child["validation"]
    assert child["epochs_run"] == parent["best_epoch"]
    assert child["train_images"] == parent["train_images"] + parent["val_images"]
    assert (out / "refit" / "checkpoints" / "best.safetensors").is_file()
    assert json.loads((out / "refit" / "calibration.json").read_text()) == json.loads(
        (out / "calibration.json").read_text()
    )
    assert parent["refit"]["run"] == str(out / "refit")
    code, _, err = cli(["predict", out / "refit", tiny_dataset / "test", "--out", tmp_path / "sub.csv"], capsys)
    assert code == 0, err and (tmp_path / "sub.csv").is_file()


def test_a_damaged_onnx_export_and_a_zero_class_preview_are_one_line_errors(tmp_path, tiny_dataset, capsys):
    out = tmp_path / "run"
    fit(load_config(None, [*TINY, "train.epochs=1"]), tiny_dataset, out)
    (out / "export").mkdir()
    (out / "export" / "model.onnx").write_bytes(b"not a protobuf" * 8)
    code, _, err = cli(["predict", out, tiny_dataset / "test", "--out", tmp_path / "s.csv", "--engine", "onnx"], capsys)
    assert code == 2 and "is not a model ONNX Runtime can load" in _one_error_line(err)
    code, _, err = cli(["show-augs", tiny_dataset, "--out", tmp_path / "a.png", "--max-classes", "0"], capsys)
    assert code == 2 and "--max-classes" in err and "Traceback" not in err
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "a.png").exists()
