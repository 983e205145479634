"""train.time_limit: the epochs are re-planned by the clock after each epoch and the LR anneals by the limit.

The loop's clock is replaced by a fake one that a callback advances by exactly 10 s per epoch, so nothing here
depends on how fast the machine is."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch

from imgclf.config import Config, with_overrides
from imgclf.run.checkpoint import load_training_state
from imgclf.run.rundir import RunDir, read_metrics
from imgclf.training.checkpointer import TrainingInterrupted
from imgclf.training.time_plan import MIN_PARTIAL, epoch_pace, replanned, replanned_epochs
from conftest import TINY

from imgclf.training import loop as loop


def test_pace_leaves_out_the_first_epoch_once_there_are_others():
    assert epoch_pace([30.0]) == 30.0
    assert epoch_pace([30.0, 10.0, 12.0]) == 11.0


@pytest.mark.parametrize(
    "limit, elapsed, walls, done, most, expected",
    [
        (100, 30, [30.0], 1, 20, 3),  # 70 s left at 30 s an epoch: two more
        (100, 30, [30.0], 1, 2, 2),  # never past train.epochs
        (100, 95, [40.0, 30.0, 25.0], 3, 20, 3),  # not one more fits: stop now
        (100, 120, [120.0], 1, 20, 1),  # already over
        (1000, 20, [10.0, 10.0], 2, 20, 20),  # faster than planned: up to train.epochs
    ],
)
def test_replanned_epochs(limit, elapsed, walls, done, most, expected):
    assert replanned_epochs(limit, elapsed, walls, done, most) == expected


@pytest.mark.parametrize(
    "limit, elapsed, walls, trains, done, most, expected",
    [
        (100, 30, [30.0], None, 1, 20, (4, 0.333)),  # two whole epochs leave 10 s: a third of one more
        (100, 30, [30.0], [20.0], 1, 20, (3, 1.0)),  # its 10 s of validation leave nothing to train: whole epochs only
        (100, 30, [30.0], [20.0], 1, 3, (3, 1.0)),  # never past train.epochs
        (100, 20, [40.0, 30.0], None, 2, 20, (5, 0.667)),  # at 30 s (not the first epoch's 40): 2 whole and 20 s
        (100, 30, [30.0], None, 1, 3, (3, 1.0)),
        (100, 36, [30.0], None, 1, 20, (3, 1.0)),  # 4 s left: under MIN_PARTIAL of an epoch
    ],
)
def test_replanned_adds_a_partial_last_epoch_when_a_share_of_one_fits(
    limit, elapsed, walls, trains, done, most, expected
):
    assert replanned(limit, elapsed, walls, done, most, trains=trains) == expected
    assert expected[1] == 1.0 or expected[1] >= MIN_PARTIAL


class _TenSecondEpochs:
    """A fake clock for the loop, advanced 10 s at each epoch start."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self.now += 10.0


class _InterruptedInEpoch:
    """Ctrl-C at the first batch of one epoch."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_batch_end(self, epoch: int, step: int, loss: float) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt


def _fit(
    out: Path, tiny_dataset: Path, monkeypatch, *, resume: bool = False, callbacks: tuple = (), **values
) -> tuple[list[dict], dict, list[int]]:
    """Train into ``out`` with 10 s epochs on the loop's clock; the metrics rows, the summary and the end epoch each
    epoch announced."""
    clock, seen = _TenSecondEpochs(), []

    class Planned:
        def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
            seen.append(epochs)

    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=clock.perf_counter, process_time=lambda: 0.0))
    cfg = with_overrides(
        Config(), {**dict(o.split("=", 1) for o in TINY), "data.val_fraction": 0.0, "train.patience": None, **values}
    )
    summary = loop.fit(cfg, tiny_dataset, out, resume=resume, callbacks=[clock, Planned(), *callbacks], preflight=False)
    return read_metrics(RunDir(out).metrics), summary, seen


def test_a_time_limit_ends_the_run_when_no_more_epochs_fit_with_the_lr_annealed(tiny_dataset, tmp_path, monkeypatch):
    rows, summary, planned = _fit(
        tmp_path / "run",
        tiny_dataset,
        monkeypatch,
        **{"train.epochs": 10, "train.time_limit": 35.0, "train.checkpoint_every": 5},
    )
    assert [r["epoch"] for r in rows] == [1, 2, 3] and summary["epochs_run"] == 3
    assert planned == [10, 3, 3]  # re-planned after epoch 1: 25 s left at 10 s an epoch
    assert rows[-1]["lr"] == pytest.approx(0.01 * Config().train.lr)  # the cosine ended with the run
    assert not summary["stopped_early"]
    assert load_training_state(RunDir(tmp_path / "run").last)["epoch"] == 2  # the planned end checkpoints (0-based)


@pytest.mark.parametrize("written_by", ["epoch plan", "WarmupCosine"])
def test_a_resumed_time_limited_run_goes_on_to_its_replanned_end(tiny_dataset, tmp_path, monkeypatch, written_by):
    """After epoch 1 the clock ends the run with epoch 3 (of train.epochs=10); a run interrupted in epoch 2 resumes
    with that end from last.pt, also one written before the epoch plan (its WarmupCosine saved the total steps), so
    epoch 2 trains with the LR schedule of the uninterrupted run."""
    values = {"train.epochs": 10, "train.time_limit": 35.0}
    reference, _, _ = _fit(tmp_path / "reference", tiny_dataset, monkeypatch, **values)
    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        _fit(out, tiny_dataset, monkeypatch, callbacks=(_InterruptedInEpoch(2),), **values)
    state = load_training_state(RunDir(out).last)
    saved = state["scheduler"]["lr_lambdas"]
    assert state["epoch"] == 0 and {plan["epochs"] for plan in saved} == {3}
    if written_by == "WarmupCosine":
        state["scheduler"]["lr_lambdas"] = [
            {"total_steps": p["total_updates"], "warmup_steps": p["warmup_updates"]} for p in saved
        ]
        torch.save(state, RunDir(out).last)
    rows, summary, planned = _fit(out, tiny_dataset, monkeypatch, resume=True, **values)
    assert planned[0] == 3  # the restored end, not train.epochs
    assert rows[1]["lr"] == pytest.approx(reference[1]["lr"]) and rows[1]["lr"] < 0.5 * Config().train.lr
    assert summary["epochs_run"] < 10 and rows[-1]["lr"] == pytest.approx(0.01 * Config().train.lr)
    assert set(load_training_state(RunDir(out).last)["scheduler"]["lr_lambdas"][0]) == set(saved[0])


def test_without_a_time_limit_the_epochs_and_schedule_are_the_configs(tiny_dataset, tmp_path, monkeypatch):
    rows, summary, planned = _fit(tmp_path / "run", tiny_dataset, monkeypatch, **{"train.epochs": 4})
    assert len(rows) == 4 and planned == [4, 4, 4, 4]
    assert rows[2]["lr"] > 0.1 * Config().train.lr  # epoch 3 of 4: not annealed yet


class _SecondPerBatch:
    """A fake clock for the loop, advanced 1 s by every training batch; it records the batches of each epoch and the
    batches each epoch announced."""

    def __init__(self):
        self.now, self.batches, self.announced = 0.0, {}, {}

    def perf_counter(self) -> float:
        return self.now

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self.announced[epoch] = steps

    def on_train_batch_end(self, epoch: int, step: int, loss: float) -> None:
        self.now += 1.0
        self.batches[epoch] = self.batches.get(epoch, 0) + 1

    def on_epoch_end(self, row: dict) -> None:
        self.planned = [*getattr(self, "planned", []), row.get("planned_epochs")]


def test_a_time_limit_fills_its_end_with_a_partial_epoch_and_the_lr_anneals_there(tiny_dataset, tmp_path, monkeypatch):
    clock = _SecondPerBatch()
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=clock.perf_counter, process_time=lambda: 0.0))
    cfg = with_overrides(
        Config(),
        {
            **dict(o.split("=", 1) for o in TINY),
            "data.val_fraction": 0.0,
            "train.patience": None,
            "train.epochs": 10,
            "data.batch_size": 2,
        },
    )
    loop.fit(
        with_overrides(cfg, {"train.epochs": 1}), tiny_dataset, tmp_path / "probe", callbacks=[clock], preflight=False
    )
    batches = clock.batches[1]
    assert batches >= 4
    clock.now, clock.batches, clock.announced, clock.planned = 0.0, {}, {}, []
    # 2.5 epochs of time: two whole epochs, then half of one
    summary = loop.fit(
        with_overrides(cfg, {"train.time_limit": 2.5 * batches}),
        tiny_dataset,
        tmp_path / "run",
        callbacks=[clock],
        preflight=False,
    )
    rows = read_metrics(RunDir(tmp_path / "run").metrics)
    half = -(-batches // 2)
    assert clock.batches == {1: batches, 2: batches, 3: half} and clock.announced[3] == half
    assert summary["epochs_run"] == 3 and len(rows) == 3
    assert rows[-1]["lr"] == pytest.approx(0.01 * Config().train.lr)  # the cosine ended with the partial epoch
    assert clock.now <= 2.5 * batches + 1
    assert clock.planned == [pytest.approx(2 + half / batches, abs=1e-3)] * 3  # callbacks see where the schedule ends
    assert "planned_epochs" not in rows[0]  # not a metrics.csv column


def test_the_replan_is_logged_only_when_the_end_moves_by_a_quarter_epoch_or_more():
    assert loop.replan_news(152, 155, 20) is None  # 3 of 20 batches: drift
    assert (
        loop.replan_news(150, 155, 20)
        == "ends after epoch 8 (on 50% of the images) (was: after epoch 8 (on 75% of the images))"
    )
    assert loop.replan_news(400, 160, 20) == "ends after epoch 20 (was: after epoch 8)"
