"""The training loop, readable top to bottom.

``fit`` = set-up (:mod:`imgclf.training.setup`: seeds, device, data, model, fine-tuning strategy,
optimiser, schedule, early stopping, checkpoints, resume) → one loop over epochs (strategy hook,
train, validate, log a metrics row, checkpoint, stop early) → restore the best weights → summary.

Callbacks (:mod:`imgclf.training.callbacks`) see every step and epoch; they are how progress bars,
tracking, sweep pruning and tests plug in.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from imgclf.config import Config
from imgclf.data.progressive import size_at
from imgclf.errors import DataError, ImgclfError
from imgclf.eval.metrics import metric_of
from imgclf.eval.logits import validation_score
from imgclf.run.checkpoint import model_state
from imgclf.run.rundir import RunDir, write_metrics
from imgclf.runtime import resolve_device, use_channels_last
from imgclf.training.callbacks import CallbackList
from imgclf.training.checkpointer import TrainingInterrupted, training_state
from imgclf.training.distributed import broadcast_object, init_distributed, reduce_epoch, shutdown
from imgclf.training.finish import finish
from imgclf.training.preflight import validate_for_training
from imgclf.training.setup import (
    Training,
    epoch_seed,
    resize_training,
    seed_everything,
    set_up,
    training_model,
    score_validation,
)
from imgclf.training.time_plan import MIN_PARTIAL, Growth, pixels, replanned

__all__ = ["TrainingInterrupted", "fit"]

log = logging.getLogger("imgclf")


def fit(
    cfg: Config,
    dataset: Path,
    out: Path,
    *,
    resume: bool = False,
    callbacks: Iterable[Any] = (),
    preflight: bool = True,
) -> dict[str, Any]:
    """Train ``cfg`` on ``dataset`` into run directory ``out``; return the summary dict.

    ``preflight=False`` when the caller already ran :func:`validate_for_training`. Under
    ``torchrun`` every process calls this (see :mod:`imgclf.training.distributed`): the data is
    sharded, gradients and metrics are reduced, and rank 0 alone writes ``out`` and runs callbacks.
    """
    ctx = init_distributed(resolve_device(cfg.train.device, "train.device"))
    try:
        if preflight and ctx.is_main:
            validate_for_training(cfg, Path(dataset))  # every problem at once, before anything is written
        hooks = CallbackList(callbacks if ctx.is_main else ())
        training = set_up(cfg, Path(dataset), RunDir(Path(out)), ctx, resume)
        try:
            return _fit(training, hooks)
        finally:
            training.close()
    finally:
        shutdown(ctx)


def _fit(t: Training, hooks: CallbackList) -> dict[str, Any]:
    hooks.on_fit_start(t.cfg, t.run.root, t.info)
    epoch, started, walls, sizes, trains = t.start_epoch, time.perf_counter(), [], [], []
    try:
        while epoch < t.plan.epochs and not t.stopper.should_stop:
            epoch += 1
            t0, partial = time.perf_counter(), t.plan.updates_in(epoch) < t.plan.updates_per_epoch
            t.rows.append(_epoch(t, epoch, hooks))
            walls.append(time.perf_counter() - t0)
            sizes.append(t.train_size)
            trains.append(t.rows[-1]["epoch_seconds"])
            if t.cfg.train.time_limit:  # before the checkpoint: last.pt holds the re-planned end
                if not partial:  # a partial epoch was the plan's last
                    _replan(t, epoch - t.start_epoch, time.perf_counter() - started, walls, sizes, trains)
                t.rows[-1]["planned_epochs"] = t.plan.planned_epochs  # for callbacks (not a metrics.csv column)
            _record(t, epoch)
            hooks.on_epoch_end(t.rows[-1])
            # A callback's stop_training (e.g. a time budget) ends the run like early stopping; rank 0
            # alone runs callbacks, so every rank learns its decision.
            if broadcast_object(t.ctx, hooks.stop_requested()):
                t.stopper.should_stop = True
    except KeyboardInterrupt:
        raise t.checkpointer.interrupted(epoch) from None
    summary = broadcast_object(t.ctx, finish(t) if t.ctx.is_main else None)
    hooks.on_fit_end(summary, t.run.root)
    return summary


def _replan(t: Training, done: int, elapsed: float, walls: list[float], sizes: list[int], trains: list[float]) -> None:
    """train.time_limit: end at the epoch that fits the time left, the last one partial where the time holds part of
    one (rank 0's clock decides for every rank); the plan's LR schedule then anneals there. Under
    progressive resizing each epoch to come is timed at its own size, scaled from the nearest size trained so far by
    ``train.time_cost``."""
    start, final, first, cost = (
        t.cfg.data.start_size or None,
        t.data.pre.image_size,
        t.start_epoch,
        t.cfg.train.time_cost,
    )
    grown = (
        Growth(
            sizes,
            trains,
            lambda e, n: size_at(first + e, first + n, start, final),
            pixels if cost is None else lambda s: cost[0] + cost[1] * s * s,
        )
        if start
        else None
    )
    epochs, fraction = replanned(
        t.cfg.train.time_limit, elapsed, walls, done, t.cfg.train.epochs - first, grown, trains
    )
    before = t.plan.total_updates
    t.plan.end_at(*broadcast_object(t.ctx, (first + epochs, fraction)))
    news = replan_news(t.plan.total_updates, before, t.plan.updates_per_epoch)
    if news and t.ctx.is_main:
        log.info("train.time_limit: %.0fs of %.0fs used; the run now %s", elapsed, t.cfg.train.time_limit, news)


def replan_news(total: int, before: int, updates: int) -> str | None:
    """The re-plan's log line (``ends after epoch 7 (was: after epoch 8 (on 40% of the images))``), or None when the
    end moved by less than :data:`MIN_PARTIAL` of an epoch: a clock that re-plans after every epoch would otherwise
    log each few per cent of drift.

    >>> replan_news(152, 155, 20), replan_news(140, 155, 20)
    (None, 'ends after epoch 7 (was: after epoch 8 (on 75% of the images))')
    """
    if abs(total - before) < MIN_PARTIAL * updates:
        return None
    return f"ends after {_run_end(total, updates)} (was: after {_run_end(before, updates)})"


def _run_end(total_updates: int, updates_per_epoch: int) -> str:
    """Where a schedule of ``total_updates`` ends, in words: ``epoch 6`` or ``epoch 6 (on 52% of the images)``."""
    epoch = math.ceil(total_updates / updates_per_epoch)
    share = (total_updates - (epoch - 1) * updates_per_epoch) / updates_per_epoch
    return f"epoch {epoch}" + (f" (on {share:.0%} of the images)" if share < 1 else "")


def _epoch(t: Training, epoch: int, hooks: CallbackList) -> dict[str, Any]:
    """One epoch (counted from 1): strategy, train, validate; returns its metrics row."""
    if t.finetuner.on_epoch_start(epoch - 1):
        if t.ctx.is_main:
            log.info(t.finetuner.describe(epoch - 1), extra={"once": True})  # the same for every fit of a --budget run
        t.train_model = None  # release the old DDP wrapper's gradient hooks before wrapping again
    if t.train_model is None:
        t.train_model = training_model(t.model, t.cfg, t.ctx)
    size = resize_training(t, epoch)
    if size is not None and t.ctx.is_main:
        log.info("data.start_size: epoch %d trains at %d px (evaluation at %d px)", epoch, size, t.data.pre.image_size)
    # Augmentation draws from (seed, epoch), offset per rank so ranks augment differently;
    # the order comes from the sampler, seeded from (seed, epoch) too.
    seed_everything(epoch_seed(t.cfg.train.seed, epoch - 1) + t.ctx.rank)
    t.sampler.set_epoch(epoch - 1)
    hooks.on_epoch_start(epoch, t.plan.epochs, t.steps_in(epoch))
    t0, cpu0 = time.perf_counter(), time.process_time()
    loss, acc, seen, bad = _train_one_epoch(t, epoch, hooks)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    loss, acc, seen, bad = reduce_epoch(t.ctx, loss, acc, seen, bad)
    t.skipped.update(t.data.samples.rel(t.data.train_data.paths[i]) for i in bad)
    if not seen:
        raise DataError(
            f"no training image of {t.data.samples.root} could be read in epoch {epoch} "
            f"({len(bad)} unreadable); check the files, the manifest and data.cache_dir"
        )
    val = score_validation(t)
    t.skipped.update(t.data.samples.rel(t.data.val_data.paths[i]) for i in val.bad)
    metric = metric_of(t.cfg.train, t.task.kind)
    extra = {} if metric.name == "accuracy" and t.task.multiclass else {metric.column: validation_score(metric, val)}
    return {
        "epoch": epoch,
        "lr": t.optimizer.param_groups[-1]["lr"],
        "train_loss": loss,
        "train_accuracy": acc,
        "val_loss": val.loss,
        "val_accuracy": val.accuracy,
        **extra,
        "epoch_seconds": seconds,
        "images_per_second": seen / seconds if seconds > 0 else float("nan"),
        "epoch_cpu_seconds": cpu,
        **({"train_size": t.train_size} if t.cfg.data.start_size else {}),
        "trainable_params": t.finetuner.trainable_parameters(),
    }


def _train_one_epoch(t: Training, epoch: int, hooks: CallbackList) -> tuple[float, float, int, list[int]]:
    """One pass over the training loader. With ``train.accumulate`` = N the optimiser steps once per
    N batches (each batch's loss divided by N, so the step equals one batch N times as large);
    under DDP the gradients are synchronised on the stepping batch only."""
    model, device, cfg, steps = t.train_model, t.ctx.device, t.cfg, t.steps_in(epoch)
    model.train()
    total_loss, correct, seen, step = 0.0, 0, 0, 0
    bad: list[int] = []
    for images, labels, _, bad_idx in t.loader:
        bad.extend(bad_idx)
        if images is None:
            continue
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if use_channels_last(device, cfg.train.channels_last):
            images = images.contiguous(memory_format=torch.channels_last)
        step += 1
        stepping = step % cfg.train.accumulate == 0 or step >= steps
        mixed, soft = t.criterion.mix(images, labels)
        with nullcontext() if stepping or not hasattr(model, "no_sync") else model.no_sync():
            with t.amp.autocast():
                logits = model(mixed)
                loss = t.criterion(logits, labels, soft)
            value = loss.item()
            if not math.isfinite(value):
                raise ImgclfError(f"training diverged (loss is {value}); lower train.lr (now {cfg.train.lr})")
            t.amp.backward(loss / cfg.train.accumulate, t.optimizer, step=stepping)
        if stepping:
            t.scheduler.step()
            if t.ema is not None:  # the optimiser step count: timm's warm-up then shortens the average early on
                t.ema.update(t.model, step=t.scheduler.last_epoch)
        n = labels.shape[0]
        total_loss += value * n
        if t.task.multiclass:  # no accuracy for label sets or values: the metric on validation says how it goes
            correct += (logits.argmax(1) == labels).sum().item()
        seen += n
        hooks.on_train_batch_end(epoch, step, value)
        if step >= steps:
            break
    accuracy = correct / max(seen, 1) if t.task.multiclass else float("nan")
    return total_loss / max(seen, 1), accuracy, seen, bad


def _record(t: Training, epoch: int) -> None:
    """Write the metrics row, keep the best weights, checkpoint for resume."""
    row = t.rows[-1]
    if t.ctx.is_main:
        write_metrics(t.run.metrics, t.rows)
    if t.has_validation and not math.isfinite(row["val_loss"]):
        raise DataError(
            f"validation gave no finite loss in epoch {epoch}: every validation image failed to load or "
            "the model diverged; check the dataset"
        )
    if t.has_validation and t.cfg.train.keep == "best":
        improved = t.stopper.update(epoch - 1, row[t.cfg.train.monitored])
    else:  # no validation split (refit on all data) or train.keep=last: the newest weights are kept, in either direction
        improved = t.stopper.update(epoch - 1, float(epoch) if t.stopper.mode == "max" else -float(epoch))
    if improved:
        t.checkpointer.save_best(t.eval_model, epoch)  # the EMA weights when train.ema is on
    if t.checkpointer.due(epoch, t.plan.epochs, t.stopper.should_stop):
        state = training_state(t.model, t.optimizer, t.scheduler, t.amp, t.stopper, t.config_record)
        if t.ema is not None:
            state["ema"] = model_state(t.ema.module)
        t.checkpointer.save_last(epoch, state)
