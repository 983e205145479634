"""train.time_limit: the epochs are re-planned by the clock after each epoch and the LR anneals by the limit.

The loop's clock is replaced by a fake one that a callback advances by exactly 10 s per epoch, so nothing here
depends on how fast the machine is."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

import importlib
from imgclf.config import Config, with_overrides
from imgclf.run.rundir import RunDir, read_metrics
from imgclf.train.schedule import WarmupCosine, warmup_cosine
from imgclf.train.time_plan import epoch_pace, replanned_epochs
from tests.conftest import TINY

loop = importlib.import_module("imgclf.train.loop")  # imgclf.train is also the API function


def test_pace_leaves_out_the_first_epoch_once_there_are_others():
    assert epoch_pace([30.0]) == 30.0
    assert epoch_pace([30.0, 10.0, 12.0]) == 11.0


@pytest.mark.parametrize("limit, elapsed, walls, done, most, expected", [
    (100, 30, [30.0], 1, 20, 3),  # 70 s left at 30 s an epoch: two more
    (100, 30, [30.0], 1, 2, 2),  # never past train.epochs
    (100, 95, [40.0, 30.0, 25.0], 3, 20, 3),  # not one more fits: stop now
    (100, 120, [120.0], 1, 20, 1),  # already over
    (1000, 20, [10.0, 10.0], 2, 20, 20),  # faster than planned: up to train.epochs
])
def test_replanned_epochs(limit, elapsed, walls, done, most, expected):
    assert replanned_epochs(limit, elapsed, walls, done, most) == expected


def test_schedule_length_can_change_and_ends_at_the_floor():
    schedule = WarmupCosine(100, 10)
    assert schedule(50) == warmup_cosine(50, 100, 10)
    schedule.total_steps = 60
    assert schedule(60) == pytest.approx(0.01) and schedule(30) == warmup_cosine(30, 60, 10)


class _TenSecondEpochs:
    """A fake clock for the loop, advanced 10 s at each epoch start."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self.now += 10.0


def _fit(tmp_path: Path, tiny_dataset: Path, monkeypatch, **values) -> tuple[list[dict], dict, list[int]]:
    clock, seen = _TenSecondEpochs(), []

    class Planned:
        def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
            seen.append(epochs)

    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=clock.perf_counter, process_time=lambda: 0.0))
    cfg = with_overrides(Config(), {**dict(o.split("=", 1) for o in TINY), "data.val_fraction": 0.0,
                                    "train.patience": None, **values})
    out = tmp_path / "run"
    summary = loop.fit(cfg, tiny_dataset, out, callbacks=[clock, Planned()], preflight=False)
    return read_metrics(RunDir(out).metrics), summary, seen


def test_a_time_limit_ends_the_run_when_no_more_epochs_fit_with_the_lr_annealed(tiny_dataset, tmp_path, monkeypatch):
    rows, summary, planned = _fit(tmp_path, tiny_dataset, monkeypatch, **{"train.epochs": 10, "train.time_limit": 35.0})
    assert [r["epoch"] for r in rows] == [1, 2, 3] and summary["epochs_run"] == 3
    assert planned == [10, 3, 3]  # re-planned after epoch 1: 25 s left at 10 s an epoch
    assert rows[-1]["lr"] == pytest.approx(0.01 * Config().train.lr)  # the cosine ended with the run
    assert not summary["stopped_early"]


def test_without_a_time_limit_the_epochs_and_schedule_are_the_configs(tiny_dataset, tmp_path, monkeypatch):
    rows, summary, planned = _fit(tmp_path, tiny_dataset, monkeypatch, **{"train.epochs": 4})
    assert len(rows) == 4 and planned == [4, 4, 4, 4]
    assert rows[2]["lr"] > 0.1 * Config().train.lr  # epoch 3 of 4: not annealed yet
