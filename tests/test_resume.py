"""Crash-safe training: a killed run resumes exactly, Ctrl-C says how to resume, seeded runs repeat."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY, make_dataset
from imgclf.cli.main import run
from imgclf.config import load_config, read_yaml, save_config
from imgclf.train.checkpoint import load_training_state, load_weights
from imgclf.train.loop import fit
from imgclf.train.rundir import read_metrics

# 48 training images in batches of 4: 12 steps an epoch, so a kill can land inside one.
RESUME = [*TINY, "train.epochs=3", "data.batch_size=4", "model.dropout=0.3", "data.augment=medium"]
TIME_COLUMNS = {"epoch_seconds", "images_per_second"}
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _dataset(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data", per_class=20, test=0)


def _cli_env() -> dict[str, str]:
    # One thread, like the test process (conftest), so float sums add up in the same order;
    # TTY_COMPATIBLE makes rich draw the progress bar into the pipe, which tells us the step.
    return {**os.environ, "OMP_NUM_THREADS": "1", "TTY_COMPATIBLE": "1", "COLUMNS": "120"}


def _start_training(dataset: Path, out: Path, *extra: str) -> subprocess.Popen:
    sets = [a for s in RESUME for a in ("--set", s)]
    return subprocess.Popen(
        [sys.executable, "-m", "imgclf", "train", str(dataset), "--out", str(out), *sets, *extra],
        env=_cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def _wait_for(proc: subprocess.Popen, done, timeout: float = 120.0) -> str:
    """Read the child's stderr until ``done(text)`` holds; return what was read."""
    fd = proc.stderr.fileno()
    os.set_blocking(fd, False)
    text, deadline = "", time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            chunk = None
        if chunk:
            text += ANSI.sub("", chunk.decode("utf-8", "replace"))
        if done(text):
            return text
        if proc.poll() is not None and not chunk:
            raise AssertionError(f"training ended (rc={proc.returncode}) before the awaited moment:\n{text[-2000:]}")
        time.sleep(0.005)
    proc.kill()
    raise AssertionError(f"timed out waiting for the training process:\n{text[-2000:]}")


def _steps_into_epoch(epoch: int, text: str) -> int:
    steps = [int(m) for m in re.findall(rf"epoch {epoch}/\d+\D*?(\d+)/12", text)]
    return max(steps, default=0)


def _values(path: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIME_COLUMNS} for row in read_metrics(path)]


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_weights(a), load_weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path):
    dataset = _dataset(tmp_path)
    reference = tmp_path / "reference"
    fit(load_config(None, [*RESUME, "train.deterministic=true"]), dataset, reference)

    killed = tmp_path / "killed"
    proc = _start_training(dataset, killed, "--deterministic")
    # After epoch 1 is checkpointed, and a few optimiser steps into epoch 2.
    _wait_for(proc, lambda text: (killed / "checkpoints" / "last.pt").exists() and 1 <= _steps_into_epoch(2, text) <= 10)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()

    assert proc.returncode == -signal.SIGKILL
    assert [r["epoch"] for r in read_metrics(killed / "metrics.csv")] == [1], "the kill must land inside epoch 2"
    assert load_training_state(killed / "checkpoints" / "last.pt")["epoch"] == 0
    assert read_yaml(killed / "config.yaml")["train"]["deterministic"] is True

    run(["train", "--resume", str(killed)])

    assert _values(killed / "metrics.csv") == _values(reference / "metrics.csv")
    assert len(_values(killed / "metrics.csv")) == 3
    assert _same_weights(killed / "checkpoints" / "best.safetensors", reference / "checkpoints" / "best.safetensors")
    summary_keys = ("val_accuracy", "val_loss", "best_epoch", "epochs_run")
    resumed, ref = (json.loads((p / "summary.json").read_text()) for p in (killed, reference))
    assert {k: resumed[k] for k in summary_keys} == {k: ref[k] for k in summary_keys}


class _CtrlCInEpoch2:
    """A progress display whose user presses Ctrl-C two steps into epoch 2 (a real SIGINT)."""

    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self.epoch, self.step = epoch, 0

    def advance(self, loss: float) -> None:
        self.step += 1
        if self.epoch == 1 and self.step == 2:
            signal.raise_signal(signal.SIGINT)

    def epoch_end(self, row) -> None: ...


def test_ctrl_c_keeps_last_checkpoint_and_exits_130_with_resume_command(tmp_path, tiny_dataset, monkeypatch, capsys):
    from imgclf.cli import commands

    monkeypatch.setattr(commands, "RichTrainingProgress", _CtrlCInEpoch2)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        run(["train", str(tiny_dataset), "--out", str(out), *[a for s in [*TINY, "train.epochs=3", "data.batch_size=4"] for a in ("--set", s)]])
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
    cfg = load_config(None, [*TINY, "model.dropout=0.3", "data.augment=medium", "train.deterministic=true", f"data.num_workers={workers}"])
    fit(cfg, tiny_dataset, tmp_path / "a")
    fit(cfg, tiny_dataset, tmp_path / "b")
    assert _values(tmp_path / "a" / "metrics.csv") == _values(tmp_path / "b" / "metrics.csv")
    assert _same_weights(tmp_path / "a" / "checkpoints" / "best.safetensors", tmp_path / "b" / "checkpoints" / "best.safetensors")


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
