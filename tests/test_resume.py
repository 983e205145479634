"""Crash-safe training: a killed run resumes exactly, Ctrl-C says how to resume, seeded runs repeat."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY, make_dataset
from imgclf.cli.main import run
from imgclf.config import load_config, read_yaml, save_config
from imgclf.run.checkpoint import load_training_state, load_weights
from imgclf.training.loop import fit
from imgclf.run.rundir import read_metrics

# 48 training images in batches of 4: 12 steps an epoch, so a kill can land inside one.
RESUME = [*TINY, "train.epochs=3", "data.batch_size=4", "model.dropout=0.3", "data.augment=medium"]
TIME_COLUMNS = {"epoch_seconds", "images_per_second", "epoch_cpu_seconds"}


def _dataset(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data", per_class=20, test=0)


def _run_child_until_killed(dataset: Path, out: Path, mode: str, epoch: int, step: int = 0) -> None:
    """Train in a child process that SIGKILLs itself at (epoch, step) — or mid-checkpoint — and wait for it."""
    child = Path(__file__).with_name("crash_child.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread, like this process (conftest): same float sums
    proc = subprocess.run(
        [
            sys.executable,
            str(child),
            str(dataset),
            str(out),
            mode,
            str(epoch),
            str(step),
            *RESUME,
            "train.deterministic=true",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=600,  # a guard, never the signal
    )
    assert proc.returncode == -signal.SIGKILL, (
        f"the child was to kill itself, it ended with {proc.returncode}:\n{proc.stderr[-2000:]}"
    )


def _values(path: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIME_COLUMNS} for row in read_metrics(path)]


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_weights(a), load_weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, Path]:
    """The dataset of the crash tests and its uninterrupted deterministic run (trained once)."""
    root = tmp_path_factory.mktemp("uninterrupted")
    dataset = _dataset(root)
    fit(load_config(None, [*RESUME, "train.deterministic=true"]), dataset, root / "reference")
    return dataset, root / "reference"


def _assert_resumed_equals(killed: Path, reference: Path) -> None:
    run(["train", "--resume", str(killed)])
    assert _values(killed / "metrics.csv") == _values(reference / "metrics.csv")
    assert len(_values(killed / "metrics.csv")) == 3
    assert _same_weights(killed / "checkpoints" / "best.safetensors", reference / "checkpoints" / "best.safetensors")
    summary_keys = ("val_accuracy", "val_loss", "best_epoch", "epochs_run")
    resumed, ref = (json.loads((p / "summary.json").read_text()) for p in (killed, reference))
    assert {k: resumed[k] for k in summary_keys} == {k: ref[k] for k in summary_keys}


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path, uninterrupted):
    dataset, reference = uninterrupted
    killed = tmp_path / "killed"
    _run_child_until_killed(dataset, killed, "step", epoch=2, step=5)  # after 5 of the 12 steps of epoch 2

    assert [r["epoch"] for r in read_metrics(killed / "metrics.csv")] == [1], "the kill must land inside epoch 2"
    assert load_training_state(killed / "checkpoints" / "last.pt")["epoch"] == 0
    assert read_yaml(killed / "config.yaml")["train"]["deterministic"] is True
    _assert_resumed_equals(killed, reference)


def test_sigkill_during_the_checkpoint_write_keeps_the_previous_checkpoint_and_resumes(tmp_path, uninterrupted):
    dataset, reference = uninterrupted
    killed = tmp_path / "killed"
    _run_child_until_killed(dataset, killed, "checkpoint", epoch=2)

    leftovers = list((killed / "checkpoints").glob(".last.pt.*.tmp"))
    assert len(leftovers) == 1, "the killed write leaves its temporary file behind"
    assert load_training_state(killed / "checkpoints" / "last.pt")["epoch"] == 0, (
        "the good epoch-1 checkpoint is intact"
    )
    _assert_resumed_equals(killed, reference)
    assert not list((killed / "checkpoints").glob(".*.tmp")), "the next start removes what the killed write left"


def test_the_per_step_hook_sees_every_step_of_every_epoch_in_order(tmp_path, tiny_dataset):
    seen = []

    class Steps:
        def on_epoch_start(self, epoch, epochs, steps):
            seen.append(("start", epoch, epochs, steps))

        def on_train_batch_end(self, epoch, step, loss):
            assert isinstance(loss, float)
            seen.append((epoch, step))

    summary = fit(load_config(None, [*TINY, "data.batch_size=4"]), tiny_dataset, tmp_path / "run", callbacks=[Steps()])
    steps = summary["train_images"] // 4
    assert steps >= 3
    expected = [x for e in (1, 2) for x in [("start", e, 2, steps), *((e, s) for s in range(1, steps + 1))]]
    assert seen == expected


def test_a_pickled_payload_in_last_pt_never_runs_on_resume(tmp_path, tiny_dataset, capsys):
    out = tmp_path / "run"
    fit(load_config(None, [*TINY, "train.epochs=1"]), tiny_dataset, out)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"model": Payload()}, out / "checkpoints" / "last.pt")
    (out / "summary.json").unlink()
    with pytest.raises(SystemExit) as exc:
        run(["train", "--resume", str(out)])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert not marker.exists()
    assert "last.pt is not a resume checkpoint imgclf wrote" in err and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and len(errors[0]) < 300


class _CtrlCInEpoch2:
    """A progress display whose user presses Ctrl-C two steps into epoch 2 (a real SIGINT)."""

    signum = signal.SIGINT

    def on_train_batch_end(self, epoch: int, step: int, loss: float) -> None:
        if (epoch, step) == (2, 2):
            signal.raise_signal(self.signum)


class _SigtermInEpoch2(_CtrlCInEpoch2):
    signum = signal.SIGTERM


@pytest.mark.parametrize("display", [_CtrlCInEpoch2, _SigtermInEpoch2], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_keeps_last_checkpoint_and_exits_130_with_resume_command(
    tmp_path, tiny_dataset, monkeypatch, capsys, display
):
    from imgclf.cli import commands

    monkeypatch.setattr(commands, "RichTrainingProgress", display)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        run(
            [
                "train",
                str(tiny_dataset),
                "--out",
                str(out),
                *[a for s in [*TINY, "train.epochs=3", "data.batch_size=4"] for a in ("--set", s)],
            ]
        )
    err = capsys.readouterr().err

    assert exc.value.code == 130
    assert f"imgclf train --resume {out}" in err
    assert "last.pt holds epoch 1" in err
    assert "Traceback" not in err
    assert load_training_state(out / "checkpoints" / "last.pt")["epoch"] == 0
    assert [r["epoch"] for r in read_metrics(out / "metrics.csv")] == [1]
    assert not (out / "summary.json").exists()


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "two-workers"])
def test_two_seeded_deterministic_runs_write_identical_metrics(tmp_path, tiny_dataset, workers):
    # Augmentation runs in the workers when there are some: their seeding is what is tested then.
    cfg = load_config(
        None,
        [*TINY, "model.dropout=0.3", "data.augment=medium", "train.deterministic=true", f"data.num_workers={workers}"],
    )
    fit(cfg, tiny_dataset, tmp_path / "a")
    fit(cfg, tiny_dataset, tmp_path / "b")
    assert _values(tmp_path / "a" / "metrics.csv") == _values(tmp_path / "b" / "metrics.csv")
    assert _same_weights(
        tmp_path / "a" / "checkpoints" / "best.safetensors", tmp_path / "b" / "checkpoints" / "best.safetensors"
    )


def test_resume_refuses_deterministic_flag_the_run_did_not_have(tmp_path, tiny_dataset, capsys):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    save_config(load_config(None, TINY), out / "config.yaml")
    (out / "run.json").write_text(json.dumps({"dataset": str(tiny_dataset)}))
    (out / "checkpoints" / "last.pt").write_bytes(b"")
    with pytest.raises(SystemExit) as exc:
        run(["train", "--resume", str(out), "--deterministic"])
    assert exc.value.code == 2
    assert "drop --deterministic" in capsys.readouterr().err


def test_resume_with_more_epochs_extends_a_finished_run_and_keeps_its_first_epochs(tmp_path, tiny_dataset, capsys):
    """--resume RUN --set train.epochs=N continues a finished run: the earlier epochs' rows stay, the new ones
    follow, the config and summary say N; patience comes from the new config, and an early stop is lifted."""
    from conftest import cli

    out = tmp_path / "run"
    code, _, err = cli(
        ["train", tiny_dataset, "--out", out, *[a for o in [*TINY, "train.epochs=2"] for a in ("--set", o)]], capsys
    )
    assert code == 0, err
    before = _values(out / "metrics.csv")
    last_before = load_training_state(out / "checkpoints" / "last.pt")
    last_before["early_stopping"]["should_stop"] = True  # as if patience had ended it: extending must lift that
    torch.save(last_before, out / "checkpoints" / "last.pt")
    code, _, err = cli(["train", "--resume", out, "--set", "train.epochs=4", "--set", "train.patience=9"], capsys)
    assert code == 0, err
    rows = read_metrics(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4] and _values(out / "metrics.csv")[:2] == before
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs_run"] == 4 and not summary["stopped_early"]
    saved = read_yaml(out / "config.yaml")["train"]
    assert saved["epochs"] == 4 and saved["patience"] == 9
    assert load_training_state(out / "checkpoints" / "last.pt")["epoch"] == 3  # 0-based: the fourth epoch


@pytest.mark.parametrize(
    "sets,message",
    [
        (["train.epochs=2"], "already trained 2 epoch(s); to extend it set train.epochs above 2"),
        (["train.lr=0.1"], "may change only train.epochs and train.patience there (got train.lr)"),
    ],
)
def test_resume_refuses_what_it_cannot_extend_and_keeps_the_finished_run(tmp_path, tiny_dataset, capsys, sets, message):
    from conftest import cli

    out = tmp_path / "run"
    code, _, err = cli(
        ["train", tiny_dataset, "--out", out, *[a for o in [*TINY, "train.epochs=2"] for a in ("--set", o)]], capsys
    )
    assert code == 0, err
    files = {p: p.read_bytes() for p in (out / "summary.json", out / "config.yaml", out / "metrics.csv")}
    code, _, err = cli(["train", "--resume", out, *[a for o in sets for a in ("--set", o)]], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert all(p.read_bytes() == data for p, data in files.items())  # nothing of the finished run changed
