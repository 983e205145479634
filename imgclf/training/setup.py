"""Everything one training run holds, built once before the first epoch (and restored on resume)."""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgclf.config import Config, TrainConfig, save_config
from imgclf.data.balance import BalancedSampler, class_weights, is_weight_file
from imgclf.data.pipeline import DataBundle, build_data, make_loader
from imgclf.data.progressive import size_at
from imgclf.data.samples import load_training_set
from imgclf.data.split import read_split
from imgclf.data.transforms import AugmentSpec, Preprocessing, train_transform
from imgclf.errors import ImgclfError, RunDirError
from imgclf.eval.logits import EvalResult, evaluate_loader, evaluate_logits, predict_logits
from imgclf.task import Task
from imgclf.finetune import Finetuner, configure
from imgclf.io import atomic_write_json
from imgclf.models.backbones import create_model, data_config
from imgclf.run.lock import RunLock
from imgclf.run.rundir import RunDir, read_metrics, write_environment
from imgclf.runtime import loader_workers, use_channels_last
from imgclf.secrets import redact_tree
from imgclf.training.auto_batch import resolve_batch_size
from imgclf.training.checkpointer import Checkpointer
from imgclf.training.distributed import (
    DistContext,
    broadcast_object,
    eval_indices,
    gather_objects,
    per_rank_batch,
    train_sampler,
    wrap_ddp,
)
from imgclf.training.early_stopping import EarlyStopping, stopper_for
from imgclf.training.epoch_plan import EpochPlan, upgraded
from imgclf.training.schedule import short_run_warmup
from imgclf.training.step import AmpStep, Criterion, make_ema
from imgclf.training.sync_bn import convert_sync_batchnorm
from imgclf.training.target_loss import TargetCriterion
from imgclf.training.task_setup import resolve_augment, resolve_for_task, target_criterion, task_for

log = logging.getLogger("imgclf")


@dataclass
class Training:
    cfg: Config
    ctx: DistContext
    run: RunDir
    data: DataBundle
    model: torch.nn.Module
    finetuner: Finetuner
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    amp: AmpStep
    stopper: EarlyStopping
    checkpointer: Checkpointer
    sampler: Any
    loader: Any
    steps_per_epoch: int
    weights_info: dict[str, Any]
    plan: EpochPlan  # the run's length and the scheduler's LR multiplier (re-planned under train.time_limit)
    task: Task = field(default_factory=Task)  # what the outputs mean (imgclf.task)
    criterion: Criterion | TargetCriterion | None = None
    ema: Any = None  # timm ModelEmaV3 when train.ema is on
    lock: RunLock | None = None
    train_model: torch.nn.Module | None = None  # wrapped at the first epoch and whenever the trainable set changes
    start_epoch: int = 0  # epochs already done (a resume starts after them)
    train_size: int = 0  # the size the training loader gives now (data.start_size: it grows over the epochs)
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: set[str] = field(default_factory=set)

    @property
    def eval_model(self) -> torch.nn.Module:
        """What validation scores and best.safetensors holds: the EMA weights when train.ema is on."""
        return self.ema.module if self.ema is not None else self.model

    def steps_in(self, epoch: int) -> int:
        """Batches epoch ``epoch`` (from 1) trains: ``steps_per_epoch``, but a last epoch that
        ``train.time_limit`` planned as partial stops where the plan ends."""
        return min(self.steps_per_epoch, self.plan.updates_in(epoch) * self.cfg.train.accumulate)

    @property
    def has_validation(self) -> bool:
        return len(self.data.val_data) > 0

    @property
    def info(self) -> dict[str, Any]:
        return {
            "weights": self.weights_info,
            "classes": self.data.samples.classes,
            "train_images": len(self.data.train_data),
            "val_images": len(self.data.val_data),
        }

    @property
    def config_record(self) -> dict[str, Any]:
        return redact_tree(self.cfg.to_dict())

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """Each epoch re-seeds from (seed, epoch): data order and augmentation of epoch e are the
    same whether the run got there directly or through a resume."""
    return (seed * 1_000_003 + epoch * 7_919) % 2**31


def set_up(cfg: Config, dataset: Path, run: RunDir, ctx: DistContext, resume: bool) -> Training:
    lock = RunLock.acquire(run) if ctx.is_main else None
    try:
        _set_determinism(cfg, ctx.device)
        seed_everything(cfg.train.seed)
        samples = load_training_set(
            dataset,
            Path(cfg.data.blocklist) if cfg.data.blocklist else None,
            task=cfg.data.task,
            target_column=cfg.data.target_column,
        )
        resolved = resolve_augment(cfg, samples.task)  # before the transforms and the eval crop are built
        if resolved is not cfg and ctx.is_main:
            log.info(
                "data.augment: auto is the whole image for %s targets: no random crop, flips %s, eval crop %g "
                "(set data.augment to choose)",
                samples.task,
                resolved.data.flips,
                resolved.data.eval_crop_pct,
            )
        cfg = resolved
        if resume and ctx.is_main and samples.classes != run.read_classes():
            raise ImgclfError(f"cannot resume {run.root}: the dataset's classes changed since the run started")
        if is_weight_file(cfg.train.class_weights):
            class_weights(cfg.train.class_weights, [], samples.classes)  # a bad file stops here, before any write
        model, weights_info = create_model(cfg.model, len(samples.classes))
        # The model's pretrained config decides the preprocessing (mean/std/interpolation/crop).
        pre = Preprocessing.from_model(data_config(model), cfg.data.image_size, cfg.data.eval_crop_pct)
        split_out = None if resume or not ctx.is_main else run.split
        # A resume keeps the run's own split, read by rank 0 (other nodes may not see the run directory).
        listing = broadcast_object(ctx, read_split(run.split) if resume and ctx.is_main else None) if resume else None
        data = build_data(cfg.data, samples, pre, split_out, resume_split=listing)
        # A resume keeps the run's own task (a regression target's mean and std included)
        task = broadcast_object(ctx, run.read_task() if resume and ctx.is_main else None) if resume else None
        task = task or task_for(samples, data.train_idx)
        if ctx.is_main and not resume and samples.found:
            log.info("labels: %s", samples.found)
        cfg = resolve_for_task(cfg, task)
        # data.batch_size=auto becomes a number here, before config.yaml is written: a resume reads it back
        cfg = resolve_batch_size(cfg, model, pre.image_size, len(data.train_data), ctx)
        if not resume and ctx.is_main:
            _write_run_header(run, cfg, samples.classes, pre, ctx.device, dataset)
            if not task.multiclass:
                atomic_write_json(run.task, task.to_dict())
        t = _training(cfg, ctx, run, data, model, weights_info, task)
        t.lock = lock
        if resume:
            _restore(t)
            if ctx.is_main and run.eval.root.is_dir():
                shutil.rmtree(run.eval.root)  # scores of the weights before the resume: stale from here on
        return t
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def _set_determinism(cfg: Config, device: torch.device) -> None:
    if cfg.train.deterministic:
        # cuBLAS is only deterministic with a fixed workspace; it reads this when CUDA starts.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one input size: cuDNN times its kernels once, then reuses the fastest


def _training(
    cfg: Config, ctx: DistContext, run: RunDir, data: DataBundle, model, weights_info, task: Task
) -> Training:
    if cfg.train.sync_bn and ctx.enabled:
        model = convert_sync_batchnorm(model, ctx.device)  # before configure(): the BN policy must see the new layers
    finetuner = configure(model, cfg.finetune)
    model.to(ctx.device)
    if use_channels_last(ctx.device, cfg.train.channels_last):
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(finetuner.param_groups(cfg.train.lr, cfg.train.weight_decay), lr=cfg.train.lr)
    steps = steps_per_epoch(len(data.train_data), cfg)
    updates = math.ceil(steps / cfg.train.accumulate)  # optimiser steps per epoch: the schedule counts these
    plan = EpochPlan(updates, cfg.train.epochs, int(round(_warmup_epochs(cfg.train, ctx.is_main) * updates)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, plan)
    stopper = stopper_for(cfg.train, task.kind)
    sampler = _sampler(cfg, ctx, data)
    return Training(
        cfg,
        ctx,
        run,
        data,
        model,
        finetuner,
        optimizer,
        scheduler,
        AmpStep(ctx.device, cfg.train.amp, cfg.train.grad_clip),
        stopper,
        Checkpointer(run, ctx.is_main, cfg.train.checkpoint_every),
        sampler,
        _train_loader(cfg, ctx, data, sampler),
        steps,
        weights_info,
        plan,
        task=task,
        criterion=_criterion(cfg, data, ctx.is_main)
        if task.multiclass
        else target_criterion(cfg, task, np.stack(data.train_data.labels), ctx.is_main),
        ema=make_ema(model, cfg.train.ema_decay) if cfg.train.ema else None,
        train_size=data.pre.image_size,
    )


def _warmup_epochs(train: TrainConfig, is_main: bool) -> float:
    """``train.warmup_epochs``, shortened (with one log line) when the run is too short to hold it."""
    warmup = short_run_warmup(train.warmup_epochs, train.epochs)
    if warmup != train.warmup_epochs and is_main:
        log.info(
            "train.warmup_epochs=%g does not fit a %d-epoch run: the warm-up is %g epoch(s), so the learning "
            "rate reaches train.lr",
            train.warmup_epochs,
            train.epochs,
            warmup,
        )
    return warmup


def _train_loader(cfg: Config, ctx: DistContext, data: DataBundle, sampler: Any) -> Any:
    """The training loader: one for the whole run (workers persist across epochs unless the run must be
    deterministic; progressive resizing makes a new one when the size changes); the sampler's permutation
    changes with set_epoch."""
    rank_batch = per_rank_batch(ctx, cfg.data.batch_size)
    return make_loader(
        data.train_data,
        rank_batch,
        shuffle=False,
        sampler=sampler,
        num_workers=loader_workers(cfg.data.num_workers),
        pin_memory=ctx.device.type == "cuda",
        persistent=not cfg.train.deterministic,
        drop_last=len(sampler) > rank_batch,
    )


def resize_training(t: Training, epoch: int) -> int | None:
    """Progressive resizing (data.start_size): give the training loader ``epoch``'s size (a pure function of the
    epoch and the run's length, so ranks and a resumed run agree); the new size, or None when it is unchanged.
    The resize cache holds the full size: smaller sizes are resized from it."""
    size = size_at(epoch, t.plan.epochs, t.cfg.data.start_size or None, t.data.pre.image_size)
    if size == t.train_size:
        return None
    pre = replace(t.data.pre, image_size=size)
    t.data.train_data.transform = train_transform(pre, AugmentSpec.from_config(t.cfg.data))
    t.loader = _train_loader(t.cfg, t.ctx, t.data, t.sampler)  # persistent workers hold the old transform
    t.train_size = size
    return size


def _sampler(cfg: Config, ctx: DistContext, data: DataBundle) -> Any:
    """The training sampler: a seeded shuffle sharded by rank, or class-balanced draws (data.sampler)."""
    if cfg.data.sampler == "balanced":
        return BalancedSampler(
            data.train_data.labels,
            len(data.samples.classes),
            epoch_seed(cfg.train.seed, 0),
            rank=ctx.rank,
            world_size=ctx.world_size,
        )
    return train_sampler(ctx, data.train_data, epoch_seed(cfg.train.seed, 0))


def _criterion(cfg: Config, data: DataBundle, is_main: bool) -> Criterion:
    """The training loss with the class weights train.class_weights resolves to (logged once)."""
    classes = data.samples.classes
    weights = class_weights(cfg.train.class_weights, data.train_data.labels, classes)
    if weights is not None and is_main:
        log.info(
            "class weights (%s): %s",
            cfg.train.class_weights,
            ", ".join(f"{c}={w:.3g}" for c, w in zip(classes, weights)),
        )
    if weights is not None and cfg.data.sampler == "balanced" and is_main:
        log.warning(
            "data.sampler=balanced and train.class_weights=%s both correct the imbalance: rare classes "
            "count twice over",
            cfg.train.class_weights,
        )
    return Criterion(
        len(classes),
        cfg.train.smoothing(),
        cfg.train.mixup,
        cfg.train.cutmix,
        class_weights=torch.as_tensor(weights, dtype=torch.float32) if weights is not None else None,
        focal_gamma=cfg.train.focal_gamma if cfg.train.loss == "focal" else None,
    )


def _restore(t: Training) -> None:
    """Load ``last.pt`` (rank 0 reads it: other nodes may not see the run directory)."""
    state = broadcast_object(t.ctx, t.checkpointer.load_last() if t.ctx.is_main else None)
    try:
        t.model.load_state_dict(state["model"])
        t.optimizer.load_state_dict(state["optimizer"])
        scheduler = state["scheduler"]
        scheduler["lr_lambdas"] = [upgraded(plan, t.plan.updates_per_epoch) for plan in scheduler["lr_lambdas"]]
        t.scheduler.load_state_dict(scheduler)  # restores t.plan: it is the scheduler's multiplier
        t.amp.load_state_dict(state["scaler"])
        t.stopper.load_state_dict(state["early_stopping"])
        if t.ema is not None and "ema" in state:
            t.ema.module.load_state_dict(state["ema"])
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise RunDirError(f"{t.run.last} does not fit the model and optimiser of {t.run.config} ({first})") from None
    t.start_epoch = int(state["epoch"]) + 1
    t.checkpointer.saved_epochs = t.start_epoch
    # The config's epochs rule (an extension changes them); a time-limited run goes on to the end its restored plan
    # was re-planned to, never past train.epochs.
    if not t.cfg.train.time_limit or t.plan.epochs > t.cfg.train.epochs:
        t.plan.end_at(t.cfg.train.epochs)
    _extend(t, state)
    # metrics rows count epochs from 1, so the checkpointed epoch's own row is epoch == start_epoch
    rows = [r for r in read_metrics(t.run.metrics) if r["epoch"] <= t.start_epoch] if t.ctx.is_main else None
    t.rows = broadcast_object(t.ctx, rows)
    log.info("resuming %s at epoch %d", t.run.root, t.start_epoch + 1)


def _extend(t: Training, state: dict[str, Any]) -> None:
    """A resume with more epochs than the checkpoint was made for (``--resume RUN --set train.epochs=N``): the
    config's patience applies, and a run that had stopped early gets a fresh patience count."""
    t.stopper.patience = t.cfg.train.patience
    planned = int(state.get("config", {}).get("train", {}).get("epochs", t.cfg.train.epochs))
    if t.cfg.train.epochs > planned and t.stopper.should_stop:
        log.info(
            "the run had stopped early (no improvement for %d epochs); the extension starts a fresh count",
            t.stopper.bad_epochs,
        )
        t.stopper.should_stop, t.stopper.bad_epochs = False, 0


def _write_run_header(
    run: RunDir, cfg: Config, classes: list[str], pre: Preprocessing, device: torch.device, dataset: Path
) -> None:
    run.root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        run.info, {"dataset": str(Path(dataset).resolve()), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    )
    save_config(cfg, run.config)
    atomic_write_json(run.classes, classes)
    atomic_write_json(run.preprocessing, pre.to_dict())
    write_environment(run.environment, str(device))


def steps_per_epoch(n_train: int, cfg: Config) -> int:
    steps = n_train // cfg.data.batch_size if n_train > cfg.data.batch_size else 1
    if cfg.train.max_steps_per_epoch:
        steps = min(steps, cfg.train.max_steps_per_epoch)
    return max(1, steps)


def training_model(model: torch.nn.Module, cfg: Config, ctx: DistContext) -> torch.nn.Module:
    """What the training step calls: DDP over the parameters that train now (a world of one: the
    model itself), compiled when ``train.compile`` is on."""
    wrapped = wrap_ddp(model, ctx)
    return torch.compile(wrapped) if cfg.train.compile else wrapped


def score_validation(t: Training, *, alone: bool = False, model: torch.nn.Module | None = None) -> EvalResult:
    """Score the whole validation set. Under DDP each rank predicts its share and the gathered rows,
    put back in dataset order, give the figures one process would; ``alone``: this process scores
    everything by itself (rank 0 at the end of the run, while the others wait)."""
    data, cfg, ctx = t.data, t.cfg, t.ctx
    model = model if model is not None else t.eval_model
    if alone or not ctx.enabled:
        loader = make_loader(
            data.val_data,
            cfg.data.batch_size * 2,
            shuffle=False,
            num_workers=cfg.data.num_workers,
            pin_memory=ctx.device.type == "cuda",
        )
        return evaluate_loader(model, loader, ctx.device, t.amp.dtype, task=t.task)
    loader = make_loader(
        data.val_data,
        per_rank_batch(ctx, cfg.data.batch_size) * 2,
        shuffle=False,
        sampler=eval_indices(ctx, len(data.val_data)),
        num_workers=loader_workers(cfg.data.num_workers),
        pin_memory=ctx.device.type == "cuda",
    )
    gathered = gather_objects(ctx, predict_logits(model, loader, ctx.device, t.amp.dtype))
    bad = sorted(i for part in gathered for i in part[3])
    parts = [part for part in gathered if len(part[1])]
    if not parts:
        return evaluate_logits(
            torch.zeros(0, 0), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), bad, t.task
        )
    indices = torch.cat([p[2] for p in parts])
    order = torch.argsort(indices)
    return evaluate_logits(
        torch.cat([p[0] for p in parts])[order], torch.cat([p[1] for p in parts])[order], indices[order], bad, t.task
    )
