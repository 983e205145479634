"""The training loop, readable top to bottom.

``fit`` = set-up (seeds, device, data, model, fine-tuning strategy, optimiser, schedule,
early stopping, resume) → one loop over epochs (strategy hook, train, validate, log a
metrics row, checkpoint, stop early) → restore the best weights → summary.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from imgclf.config import Config, save_config
from imgclf.data.pipeline import DataBundle, build_data, make_loader
from imgclf.data.samples import load_training_set
from imgclf.data.transforms import Preprocessing
from imgclf.errors import ImgclfError
from imgclf.io import atomic_write_json
from imgclf.models.backbones import create_model, data_config
from imgclf.secrets import redact_tree
from imgclf.train.checkpoint import (
    load_training_state, model_state, rng_state, save_training_state, save_weights, set_rng_state, load_weights,
)
from imgclf.train.distributed import (
    DistContext, broadcast_object, eval_indices, gather_objects, init_distributed, per_rank_batch, reduce_epoch, shutdown,
    train_sampler, wrap_ddp, workers_per_process,
)
from imgclf.train.early_stopping import EarlyStopping
from imgclf.train.evaluation import evaluate_loader, evaluate_logits, predict_logits, write_val_predictions
from imgclf.train.preflight import validate_for_training
from imgclf.train.rundir import RunDir, read_metrics, write_environment, write_metrics
from imgclf.train.schedule import warmup_cosine

log = logging.getLogger("imgclf")


class TrainingInterrupted(ImgclfError):
    """Ctrl-C during training: the last finished epoch is saved and the run can be resumed."""

    exit_code = 130


class Progress(Protocol):
    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None: ...
    def advance(self, loss: float) -> None: ...
    def epoch_end(self, row: dict[str, Any]) -> None: ...


class NullProgress:
    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None: ...
    def advance(self, loss: float) -> None: ...
    def epoch_end(self, row: dict[str, Any]) -> None: ...


@dataclass
class Hooks:
    """What the caller plugs into the loop: a progress display and callbacks.

    A callback may define ``on_fit_start(cfg, run_dir, info)``, ``on_epoch_end(row)`` (it may
    raise, e.g. to prune a sweep trial) and ``on_fit_end(summary, run_dir)``.
    """

    progress: Progress = field(default_factory=NullProgress)
    callbacks: list[Any] = field(default_factory=list)

    def call(self, name: str, *args: Any) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, name, None)
            if fn is not None:
                fn(*args)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """Each epoch re-seeds from (seed, epoch): data order and augmentation of epoch e are the
    same whether the run got there directly or through a resume."""
    return (seed * 1_000_003 + epoch * 7_919) % 2**31


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ImgclfError("train.device=cuda but no CUDA device is available; use train.device=auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def autocast_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """bf16 where the GPU has it, else fp16 (with a GradScaler); None = full precision."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def fit(cfg: Config, dataset: Path, out: Path, *, resume: bool = False, hooks: Hooks | None = None) -> dict[str, Any]:
    """Train ``cfg`` on ``dataset`` into run directory ``out``; return the summary dict.

    Under ``torchrun`` every process calls this (see :mod:`imgclf.train.distributed`): the data is
    sharded, gradients and metrics are reduced, and rank 0 alone writes ``out`` and runs ``hooks``.
    """
    ctx = init_distributed(resolve_device(cfg.train.device))
    try:
        return _fit(cfg, dataset, out, ctx, resume=resume, hooks=hooks if ctx.is_main else None)
    finally:
        shutdown(ctx)


def _fit(cfg: Config, dataset: Path, out: Path, ctx: DistContext, *, resume: bool, hooks: Hooks | None) -> dict[str, Any]:
    hooks = hooks or Hooks()
    validate_for_training(cfg, dataset)  # every problem at once, before anything is written
    run = RunDir(Path(out))
    seed_everything(cfg.train.seed)
    if cfg.train.deterministic:
        # cuBLAS is only deterministic with a fixed workspace; it reads this when CUDA starts.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    device = ctx.device
    if device.type == "cuda" and not cfg.train.deterministic:
        torch.backends.cudnn.benchmark = True  # one input size: cuDNN times its kernels once, then reuses the fastest
    rank_batch = per_rank_batch(ctx, cfg.data.batch_size)

    samples = load_training_set(dataset, Path(cfg.data.blocklist) if cfg.data.blocklist else None)
    classes = samples.classes
    if resume and ctx.is_main and classes != run.read_classes():
        raise ImgclfError(f"cannot resume {run.root}: the dataset's classes changed since the run started")
    model, weights_info = create_model(cfg.model, len(classes))
    # The model's pretrained config decides the preprocessing (mean/std/interpolation/crop).
    pre = Preprocessing.from_model(data_config(model), cfg.data.image_size)
    data = build_data(cfg.data, samples, pre, split_out=None if resume or not ctx.is_main else run.split)
    if not resume and ctx.is_main:
        _write_run_header(run, cfg, classes, pre, device, dataset)
    if cfg.train.sync_bn and ctx.enabled:
        from imgclf.train.sync_bn import convert_sync_batchnorm

        model = convert_sync_batchnorm(model, device)  # before configure(): the BN policy must see the new layers

    from imgclf.finetune import configure

    finetuner = configure(model, cfg.finetune)
    model.to(device)
    if cfg.train.channels_last and device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(finetuner.param_groups(cfg.train.lr, cfg.train.weight_decay), lr=cfg.train.lr)
    steps_per_epoch = _steps_per_epoch(len(data.train_data), cfg)
    total_steps = steps_per_epoch * cfg.train.epochs
    warmup = int(round(cfg.train.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total_steps, warmup))
    amp_dtype = autocast_dtype(device, cfg.train.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    stopper = EarlyStopping(
        cfg.train.patience, "max" if cfg.train.monitor == "val_accuracy" else "min", cfg.train.min_delta
    )
    train_model: torch.nn.Module | None = None  # wrapped at the first epoch and whenever the trainable set changes
    # One loader for the whole run (workers persist across epochs unless the run must be
    # deterministic); the sampler's permutation changes with set_epoch.
    sampler = train_sampler(ctx, data.train_data, epoch_seed(cfg.train.seed, 0))
    loader = make_loader(
        data.train_data, rank_batch, shuffle=False, sampler=sampler, num_workers=workers_per_process(cfg.data.num_workers),
        pin_memory=device.type == "cuda", persistent=not cfg.train.deterministic, drop_last=len(sampler) > rank_batch,
    )

    rows: list[dict[str, Any]] = []
    start_epoch = 0
    if resume:
        state = broadcast_object(ctx, load_training_state(run.last) if ctx.is_main else None)  # other nodes may not see the run directory
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        stopper.load_state_dict(state["early_stopping"])
        set_rng_state(state["rng"])
        start_epoch = state["epoch"] + 1
        # metrics rows count epochs from 1, so the checkpointed epoch's own row is epoch == start_epoch
        rows = [r for r in read_metrics(run.metrics) if r["epoch"] <= start_epoch]
        rows = broadcast_object(ctx, rows)
        log.info("resuming %s at epoch %d", run.root, start_epoch + 1)

    info = {"weights": weights_info, "classes": classes, "train_images": len(data.train_data), "val_images": len(data.val_data)}
    hooks.call("on_fit_start", cfg, run.root, info)
    skipped: set[str] = set()
    train_seconds = sum(float(r["epoch_seconds"]) for r in rows)
    epoch = start_epoch - 1
    saved_epochs = start_epoch  # epochs held by checkpoints/last.pt
    try:
        for epoch in range(start_epoch, cfg.train.epochs):
            if stopper.should_stop:
                break
            message = finetuner.on_epoch_start(epoch)
            if message:
                if ctx.is_main:
                    log.info(message)
                train_model = None  # release the old DDP wrapper's gradient hooks before wrapping again
                train_model = _training_model(model, cfg, ctx)
            # Augmentation draws from (seed, epoch), offset per rank so ranks augment differently;
            # the order comes from the sampler, seeded from (seed, epoch) too.
            seed_everything(epoch_seed(cfg.train.seed, epoch) + ctx.rank)
            sampler.set_epoch(epoch)
            hooks.progress.epoch_start(epoch, cfg.train.epochs, steps_per_epoch)
            t0 = time.perf_counter()
            train_loss, train_acc, seen, bad = _train_one_epoch(
                train_model, loader, optimizer, scheduler, scaler, cfg, device, amp_dtype, steps_per_epoch, hooks.progress
            )
            epoch_seconds = time.perf_counter() - t0
            train_loss, train_acc, seen, bad = reduce_epoch(ctx, train_loss, train_acc, seen, bad)
            skipped.update(data.samples.rel(data.train_data.paths[i]) for i in bad)
            val = _validate(model, data, cfg, ctx, amp_dtype)
            skipped.update(data.samples.rel(data.val_data.paths[i]) for i in val.bad)
            train_seconds += epoch_seconds
            row = {
                "epoch": epoch + 1,
                "lr": optimizer.param_groups[-1]["lr"],
                "train_loss": train_loss,
                "train_accuracy": train_acc,
                "val_loss": val.loss,
                "val_accuracy": val.accuracy,
                "epoch_seconds": epoch_seconds,
                "images_per_second": seen / epoch_seconds if epoch_seconds > 0 else float("nan"),
                "trainable_params": finetuner.trainable_parameters(),
            }
            rows.append(row)
            if ctx.is_main:
                write_metrics(run.metrics, rows)
            # every rank updates its stopper (same validation figures, so the same decision)
            if stopper.update(epoch, val.accuracy if cfg.train.monitor == "val_accuracy" else val.loss) and ctx.is_main:
                save_weights(model, run.best, {"epoch": str(epoch + 1)})
            if ctx.is_main and ((epoch + 1) % cfg.train.checkpoint_every == 0 or stopper.should_stop or epoch + 1 == cfg.train.epochs):
                save_training_state(run.last, {
                    "model": model_state(model), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(), "early_stopping": stopper.state_dict(), "rng": rng_state(),
                    "epoch": epoch, "config": redact_tree(cfg.to_dict()),
                })
                saved_epochs = epoch + 1
            hooks.progress.epoch_end(row)
            hooks.call("on_epoch_end", row)
    except KeyboardInterrupt:
        if not saved_epochs:
            raise TrainingInterrupted(
                f"interrupted in epoch {epoch + 1}, before the first checkpoint: nothing to resume, start the run again"
            ) from None
        raise TrainingInterrupted(
            f"interrupted in epoch {epoch + 1}; checkpoints/last.pt holds epoch {saved_epochs} — "
            f"continue with: imgclf train --resume {run.root}"
        ) from None

    # Rank 0 alone restores the best weights, scores them and writes the summary; all ranks return it.
    summary = broadcast_object(ctx, _finish(
        model, data, run, cfg, device, amp_dtype, stopper, rows, train_seconds, weights_info, skipped, finetuner
    ) if ctx.is_main else None)
    hooks.call("on_fit_end", summary, run.root)
    return summary


def _write_run_header(run: RunDir, cfg: Config, classes: list[str], pre: Preprocessing, device: torch.device, dataset: Path) -> None:
    run.root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run.info, {"dataset": str(Path(dataset).resolve()), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    save_config(cfg, run.config)
    atomic_write_json(run.classes, classes)
    atomic_write_json(run.preprocessing, pre.to_dict())
    write_environment(run.environment, str(device))


def _steps_per_epoch(n_train: int, cfg: Config) -> int:
    steps = n_train // cfg.data.batch_size if n_train > cfg.data.batch_size else 1
    if cfg.train.max_steps_per_epoch:
        steps = min(steps, cfg.train.max_steps_per_epoch)
    return max(1, steps)


def _eval_loader(data: DataBundle, cfg: Config, device: torch.device):
    return make_loader(data.val_data, cfg.data.batch_size * 2, shuffle=False, num_workers=cfg.data.num_workers, pin_memory=device.type == "cuda")


def _training_model(model: torch.nn.Module, cfg: Config, ctx: DistContext) -> torch.nn.Module:
    """What the training step calls: DDP over the parameters that train now (a world of one: the
    model itself), compiled when ``train.compile`` is on."""
    wrapped = wrap_ddp(model, ctx)
    return torch.compile(wrapped) if cfg.train.compile else wrapped


def _validate(model, data: DataBundle, cfg: Config, ctx: DistContext, amp_dtype):
    """Score the whole validation set. Under DDP each rank predicts its share and the gathered rows,
    put back in dataset order, give the figures one process would."""
    if not ctx.enabled:
        return evaluate_loader(model, _eval_loader(data, cfg, ctx.device), ctx.device, amp_dtype)
    loader = make_loader(
        data.val_data, per_rank_batch(ctx, cfg.data.batch_size) * 2, shuffle=False, sampler=eval_indices(ctx, len(data.val_data)),
        num_workers=workers_per_process(cfg.data.num_workers), pin_memory=ctx.device.type == "cuda",
    )
    gathered = gather_objects(ctx, predict_logits(model, loader, ctx.device, amp_dtype))
    bad = sorted(i for part in gathered for i in part[3])
    parts = [part for part in gathered if len(part[1])]
    if not parts:
        return evaluate_logits(torch.zeros(0, 0), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), bad)
    indices = torch.cat([p[2] for p in parts])
    order = torch.argsort(indices)
    return evaluate_logits(torch.cat([p[0] for p in parts])[order], torch.cat([p[1] for p in parts])[order], indices[order], bad)


def _train_one_epoch(model, loader, optimizer, scheduler, scaler, cfg: Config, device, amp_dtype, max_steps, progress):
    model.train()
    total_loss, correct, seen, steps = 0.0, 0, 0, 0
    bad: list[int] = []
    for images, labels, _, bad_idx in loader:
        bad.extend(bad_idx)
        if images is None:
            continue
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        if cfg.train.channels_last and device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(images)
            loss = F.cross_entropy(logits, labels, label_smoothing=cfg.train.label_smoothing)
        if not math.isfinite(loss.item()):
            raise ImgclfError(f"training diverged (loss is {loss.item()}); lower train.lr (now {cfg.train.lr})")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.train.grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"] if p.grad is not None], cfg.train.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        n = labels.shape[0]
        total_loss += loss.item() * n
        correct += (logits.argmax(1) == labels).sum().item()
        seen += n
        steps += 1
        progress.advance(loss.item())
        if steps >= max_steps:
            break
    return total_loss / max(seen, 1), correct / max(seen, 1), seen, bad


def _finish(model, data, run, cfg, device, amp_dtype, stopper, rows, train_seconds, weights_info, skipped, finetuner):
    """Restore the best weights, record validation predictions and write summary.json."""
    if run.best.exists():
        model.load_state_dict(load_weights(run.best))
    val = evaluate_loader(model, _eval_loader(data, cfg, device), device, amp_dtype)
    write_val_predictions(run.val_predictions, val, data, data.val_idx)
    calibration = _calibrate(val, run)
    best = rows[stopper.best_epoch - (rows[0]["epoch"] - 1)] if rows and stopper.best_epoch >= 0 else {}
    summary = {
        "val_accuracy": val.accuracy,
        "val_loss": val.loss,
        "val_macro_f1": val.macro_f1,
        "best_epoch": stopper.best_epoch + 1,
        "epochs_run": len(rows),
        "stopped_early": bool(stopper.should_stop and len(rows) < cfg.train.epochs),
        "train_seconds": train_seconds,
        "mean_epoch_seconds": train_seconds / max(len(rows), 1),
        "mean_images_per_second": float(np.mean([r["images_per_second"] for r in rows])) if rows else None,
        "backbone": cfg.model.backbone,
        "weights": weights_info.get("weights"),
        "pretrained": weights_info.get("pretrained"),
        "weights_note": weights_info.get("note"),
        "head": cfg.model.head,
        "strategy": cfg.finetune.strategy,
        "bn_policy": cfg.finetune.bn,
        "image_size": data.pre.image_size,
        "num_classes": len(data.samples.classes),
        "train_images": len(data.train_data),
        "val_images": len(data.val_data),
        "total_params": sum(p.numel() for p in model.parameters()),
        "trainable_params": max((r["trainable_params"] for r in rows), default=finetuner.trainable_parameters()),
        "best_epoch_val_accuracy": best.get("val_accuracy"),
        "excluded_images": data.samples.excluded,
        "skipped_images": sorted(skipped | {data.samples.rel(data.val_data.paths[i]) for i in val.bad}),
        "device": str(device),
        "seed": cfg.train.seed,
        **calibration,
    }
    atomic_write_json(run.summary, summary)
    return summary


def _calibrate(val, run: RunDir) -> dict[str, Any]:
    """Fit temperature scaling on the validation logits and store it in the run (calibration.json).

    Uncertainty thresholds (adaptive TTA) then mean the same thing for every model.
    """
    from imgclf.infer.calibrate import expected_calibration_error, fit_temperature, reliability_curve

    if len(val.labels) < 2:
        return {}
    logits, labels = torch.from_numpy(val.logits), torch.from_numpy(val.labels)
    temperature = fit_temperature(logits, labels)
    before = torch.softmax(logits, 1).numpy()
    after = torch.softmax(logits / temperature, 1).numpy()
    conf, acc, count = reliability_curve(after, val.labels)
    result = {
        "temperature": temperature,
        "ece_before": float(expected_calibration_error(before, val.labels)),
        "ece_after": float(expected_calibration_error(after, val.labels)),
    }
    atomic_write_json(run.root / "calibration.json", {
        **result,
        "reliability": {"confidence": _nan_none(conf), "accuracy": _nan_none(acc), "count": [int(c) for c in count]},
    })
    return result


def _nan_none(values) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in values]
