"""One rule for every folder or file a command writes: new, empty, or that command's own earlier output,
refused in one line before any work, with the user's files left byte for byte as they were."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import TINY, cli
from imgclf.config import load_config
from imgclf.errors import RunDirError
from imgclf.run.claim import check_distinct, check_file_out, check_folder, claim_folder, folder_kind
from imgclf.run.lock import RunLock
from imgclf.run.rundir import RunDir
from imgclf.training.loop import TrainingInterrupted, fit


def _sets(*extra: str) -> list[str]:
    return [a for s in [*TINY, *extra] for a in ("--set", s)]


def _one_error_line(err: str) -> str:
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and len(errors[0]) < 400 and "Traceback" not in err
    return errors[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _users_folder(path: Path) -> Path:
    """A folder of the user's own files, named like files imgclf writes."""
    path.mkdir(parents=True)
    for name in ("summary.json", "report.html", "config.json", "oof.csv", "notes.txt"):
        (path / name).write_text(f"the user's own {name}\n")
    return path


def _fake_run(path: Path) -> Path:
    """A finished single-train run, as far as the folder rule looks."""
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"dataset": "somewhere"}))
    (path / "config.yaml").write_text("train:\n  epochs: 1\n")
    (path / "summary.json").write_text(json.dumps({"val_accuracy": 0.5}))
    (path / "classes.json").write_text('["a", "b"]')
    return path


def _refused(args: list, folder: Path, capsys) -> str:
    before = _snapshot(folder)
    code, _, err = cli(args, capsys)
    assert code == 2
    line = _one_error_line(err)
    assert _snapshot(folder) == before
    return line


def test_cv_out_a_folder_of_the_users_files_exits_2_and_changes_nothing(tmp_path, tiny_dataset, capsys):
    mine = _users_folder(tmp_path / "mine")
    line = _refused(["cv", tiny_dataset, "--folds", "2", "--out", mine, *_sets()], mine, capsys)
    assert "holds no imgclf output" in line
    assert not (mine / ".imgclf.lock").exists()


def test_cv_out_an_existing_training_run_exits_2_and_changes_nothing(tmp_path, tiny_dataset, capsys):
    run = _fake_run(tmp_path / "run")
    line = _refused(["cv", tiny_dataset, "--folds", "2", "--out", run, *_sets()], run, capsys)
    assert "holds a training run" in line


def test_ensemble_out_equal_to_a_member_exits_2_and_changes_nothing(tmp_path, capsys):
    a, b = _fake_run(tmp_path / "a"), _fake_run(tmp_path / "b")
    line = _refused(["ensemble", a, b, "--out", a], a, capsys)
    assert "the member" in line


def test_ensemble_out_inside_a_member_exits_2_and_changes_nothing(tmp_path, capsys):
    a, b = _fake_run(tmp_path / "a"), _fake_run(tmp_path / "b")
    line = _refused(["ensemble", a, b, "--out", a / "blend"], a, capsys)
    assert "inside the member" in line and not (a / "blend").exists()


def test_ensemble_out_a_folder_of_the_users_files_exits_2_and_changes_nothing(tmp_path, capsys):
    a, b = _fake_run(tmp_path / "a"), _fake_run(tmp_path / "b")
    mine = _users_folder(tmp_path / "mine")
    line = _refused(["ensemble", a, b, "--out", mine], mine, capsys)
    assert "holds no imgclf output" in line


def test_ensemble_out_a_budget_run_exits_2(tmp_path, capsys):
    a, b = _fake_run(tmp_path / "a"), _fake_run(tmp_path / "b")
    budget = _fake_run(tmp_path / "budget")
    (budget / "ensemble.json").write_text(json.dumps({"members": [{"path": ".", "weight": 1.0}]}))
    assert "holds a training run" in _refused(["ensemble", a, b, "--out", budget], budget, capsys)


def test_export_timm_out_a_folder_of_the_users_files_exits_2_and_changes_nothing(tmp_path, capsys):
    run, mine = _fake_run(tmp_path / "run"), _users_folder(tmp_path / "mine")
    _refused(["export", run, "--format", "timm", "--out", mine], mine, capsys)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_file_out_over_another_kind_of_file_exits_2_and_changes_nothing(tmp_path, capsys, fmt):
    run, mine = _fake_run(tmp_path / "run"), _users_folder(tmp_path / "mine")
    assert "is not a" in _refused(["export", run, "--format", fmt, "--out", mine / "summary.json"], mine, capsys)
    assert "is a folder" in _refused(["export", run, "--format", fmt, "--out", mine], mine, capsys)


def test_export_file_out_over_a_run_file_exits_2(tmp_path, capsys):
    run = _fake_run(tmp_path / "run")
    (run / "model.onnx").write_bytes(b"someone else's model")
    assert "is a file of a training run" in _refused(["export", run, "--out", run / "model.onnx"], run, capsys)


def test_predict_out_and_probs_the_same_file_exits_2_and_changes_nothing(tmp_path, tiny_dataset, capsys):
    run, mine = _fake_run(tmp_path / "run"), _users_folder(tmp_path / "mine")
    (mine / "sub.csv").write_text("id,label\nkeep,me\n")
    line = _refused(
        ["predict", run, tiny_dataset / "test", "--out", mine / "sub.csv", "--probs", mine / ".." / "mine" / "sub.csv"],
        mine,
        capsys,
    )
    assert "the same file as --out" in line


def test_predict_out_the_sample_submission_exits_2_and_changes_nothing(tmp_path, tiny_dataset, capsys):
    run = _fake_run(tmp_path / "run")
    line = _refused(
        ["predict", run, tiny_dataset / "test", "--out", tiny_dataset / "sample_submission.csv"], tiny_dataset, capsys
    )
    assert "the same file as --sample" in line


def test_predict_out_over_a_run_file_exits_2(tmp_path, tiny_dataset, capsys):
    run = _fake_run(tmp_path / "run")
    (run / "split.csv").write_text("path,label,split\n")
    assert "is a file of a training run" in _refused(
        ["predict", run, tiny_dataset / "test", "--out", run / "split.csv"], run, capsys
    )


def test_a_command_may_rerun_into_its_own_earlier_output(tmp_path):
    ens = tmp_path / "ens"
    with claim_folder(ens, "ensemble"):
        (ens / "ensemble.json").write_text("{}")
    assert folder_kind(ens) == "ensemble" and RunDir(ens).writer() == "ensemble"
    check_folder(ens, "ensemble")  # its own output: fine
    with pytest.raises(RunDirError, match="holds an ensemble"):
        check_folder(ens, "cv")
    legacy = tmp_path / "legacy-cv"  # a CV from before the lock named its command
    legacy.mkdir()
    (legacy / "cv.json").write_text("{}")
    check_folder(legacy, "cv")


def test_a_second_writer_of_a_claimed_folder_is_refused(tmp_path):
    with claim_folder(tmp_path / "cv", "cv"):
        with pytest.raises(Exception, match="in use by another imgclf cv"):
            with claim_folder(tmp_path / "cv", "cv"):
                pass


def test_a_single_file_output_may_replace_its_own_kind_only(tmp_path):
    sub = tmp_path / "submission.csv"
    sub.write_text("id,label\n")
    check_file_out(sub, "--out", (".csv",))
    check_distinct({"--out": sub, "--probs": tmp_path / "probs.csv"})
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="is not a .csv file"):
        check_file_out(tmp_path / "notes.txt", "--out", (".csv",))


class _InterruptInEpoch:
    """Ctrl-C in the middle of epoch ``epoch``."""

    def __init__(self, epoch: int):
        self.epoch, self.seen = epoch, 0

    def on_epoch_end(self, row):
        self.seen = row["epoch"]

    def on_train_batch_end(self, *args, **kwargs):
        if self.seen + 1 == self.epoch:
            raise KeyboardInterrupt


def test_a_run_killed_before_its_first_checkpoint_starts_again_with_the_same_out(tmp_path, tiny_dataset, capsys):
    out = tmp_path / "run"
    # checkpoint_every=3: epoch 1 writes metrics.csv and best weights, and the kill in epoch 2 comes before last.pt.
    cfg = load_config(None, [*TINY, "train.epochs=3", "train.checkpoint_every=3"])
    with pytest.raises(TrainingInterrupted, match="nothing to resume, start the run again"):
        fit(cfg, tiny_dataset, out, callbacks=[_InterruptInEpoch(2)])
    assert (out / "checkpoints" / "best.safetensors").is_file() and not (out / "checkpoints" / "last.pt").exists()
    assert RunDir(out).is_unfinished()

    code, _, err = cli(["train", tiny_dataset, "--out", out, *_sets("train.epochs=1")], capsys)
    assert code == 0, err
    assert json.loads((out / "summary.json").read_text())["epochs_run"] == 1
    assert len((out / "metrics.csv").read_text().splitlines()) == 2  # the killed run's rows are gone


def test_a_killed_runs_folder_with_a_users_file_in_it_is_still_refused(tmp_path, tiny_dataset, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text("{}")
    (out / ".imgclf.lock").write_text("train")
    (out / "notes.txt").write_text("mine")
    assert "holds no imgclf run" in _refused(["train", tiny_dataset, "--out", out, *_sets()], out, capsys)


def test_a_fresh_start_over_a_killed_run_still_being_written_is_refused(tmp_path, tiny_dataset, capsys):
    out = tmp_path / "run"
    lock = RunLock.acquire(RunDir(out))  # a training that has not reached its first checkpoint yet
    (out / "run.json").write_text("{}")
    try:
        line = _refused(["train", tiny_dataset, "--out", out, *_sets()], out, capsys)
    finally:
        lock.release()
    assert "in use by another imgclf training" in line


def test_report_out_over_a_runs_other_file_exits_2_and_changes_nothing(tmp_path, capsys):
    run = _fake_run(tmp_path / "run")
    assert "is not a .html/.htm file" in _refused(["report", run, "--out", run / "summary.json"], run, capsys)


def test_compare_out_over_a_runs_report_exits_2_and_changes_nothing(tmp_path, capsys):
    a, b = _fake_run(tmp_path / "a"), _fake_run(tmp_path / "b")
    (a / "report.html").write_text("<html>run a's own report</html>")
    assert "is a file of a training run" in _refused(["compare", a, b, "--out", a / "report.html"], a, capsys)


def test_show_augs_out_over_another_kind_of_file_exits_2_and_changes_nothing(tmp_path, tiny_dataset, capsys):
    mine = _users_folder(tmp_path / "mine")
    assert "is not a" in _refused(["show-augs", tiny_dataset, "--out", mine / "notes.txt", *_sets()], mine, capsys)


def test_evaluate_out_a_folder_of_the_users_files_exits_2_and_changes_nothing(tmp_path, capsys):
    run, mine = _fake_run(tmp_path / "run"), _users_folder(tmp_path / "mine")
    assert "is not empty and holds no imgclf output" in _refused(["evaluate", run, "--out", mine], mine, capsys)


def test_evaluate_out_may_be_an_earlier_evaluation_but_not_a_run(tmp_path, capsys):
    earlier = tmp_path / "scores"
    earlier.mkdir()
    for name in ("metrics.json", "per_class.csv", "confusion_matrix.csv", "confusion_matrix.png", "predictions.csv"):
        (earlier / name).write_text("x")
    assert folder_kind(earlier) == "evaluate"
    check_folder(earlier, "evaluate")  # rewritten by the next evaluation
    run = _fake_run(tmp_path / "run")
    assert "holds a training run" in _refused(["evaluate", run, "--out", run], run, capsys)


def test_sweep_out_a_folder_of_the_users_files_exits_2_and_changes_nothing(tmp_path, tiny_dataset, capsys):
    space = tmp_path / "space.yaml"
    space.write_text("space:\n  train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n")
    mine = _users_folder(tmp_path / "mine")
    line = _refused(["sweep", tiny_dataset, "--space", space, "--trials", "1", "--out", mine, *_sets()], mine, capsys)
    assert "is not empty and holds no imgclf output" in line and "sweep writes only" in line


def test_ablate_out_a_folder_of_the_users_files_exits_2_and_changes_nothing(tmp_path, tiny_dataset, capsys):
    grid = Path(__file__).parents[1] / "imgclf" / "experiments" / "grids" / "heads.yaml"
    mine = _users_folder(tmp_path / "mine")
    line = _refused(["ablate", tiny_dataset, "--grid", grid, "--out", mine, *_sets()], mine, capsys)
    assert "is not empty and holds no imgclf output" in line and "ablate writes only" in line
    assert folder_kind(mine) is None
