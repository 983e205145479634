"""The warm-up: a few real training steps at two sizes, which fit the cost model (seconds per image = a + b·s²) of
:mod:`imgclf.budget.plan`."""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.budget.plan import MIN_EPOCHS, PLAN_SHARE, CostModel, Start, ladder, plan_final, small_size
from imgclf.config import Config, with_overrides

log = logging.getLogger("imgclf")

WARMUP_STEPS = 4  # optimiser steps per warm-up epoch; the median of the second epoch's last three is the measurement
WARMUP_SHARE = 0.05  # the warm-up at the model's full size runs only if its estimate is at most this share


class _StepTimer:
    """A ``fit`` callback timing each training step of the last epoch (the first epoch warms up lazy kernels
    and the allocator); that epoch's first step (loader start) is left out, the median of the others is the
    measurement."""

    def __init__(self):
        self.seconds: list[float] = []
        self.rows: list[dict[str, Any]] = []
        self._last: float | None = None

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self._last, self.seconds = None, []

    def on_train_batch_end(self, epoch: int, step: int, loss: float) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.seconds.append(now - self._last)
        self._last = now

    def on_epoch_end(self, row: dict[str, Any]) -> None:
        self.rows.append(row)

    def images_per_second(self, batch_size: int) -> float:
        if not self.seconds:  # one step an epoch: the epoch's own figure
            return float(self.rows[-1]["images_per_second"])
        return batch_size / statistics.median(self.seconds)


def warm_up(cfg: Config, dataset: Path, size: int | None, folder: Path) -> dict[str, Any]:
    """Two epochs of ``WARMUP_STEPS`` steps at ``size`` (None: the config's) on the same few images
    (:func:`warmup_subset`): the first decodes them into the resize cache and warms the kernels, the second
    reads them back as every later epoch of a real run does — its measured images/s, the fit's fixed overhead,
    the resolved size and the number of training images the final model will see."""
    images, fraction = warmup_subset(cfg, dataset)
    values = {
        "data.val_fraction": 0.0,
        "data.split_file": None,
        "data.subset": fraction,
        "train.epochs": 2,
        "train.patience": None,
        "train.warmup_epochs": 0,
        "train.max_steps_per_epoch": WARMUP_STEPS,
        "tracking.enabled": False,
    }
    if size is not None:
        values["data.image_size"] = int(size)
    from imgclf.training.loop import fit

    timer, t0 = _StepTimer(), time.perf_counter()
    summary = fit(with_overrides(cfg, values), dataset, folder, callbacks=[timer], preflight=False)
    wall = time.perf_counter() - t0
    return {
        "size": int(summary["image_size"]),
        "images_per_second": timer.images_per_second(cfg.data.batch_size),
        "overhead_seconds": max(wall - sum(float(r["epoch_seconds"]) for r in timer.rows), 0.0),
        "images": images,
        "classes": int(summary["num_classes"]),
        "seconds": wall,
    }


def warmup_subset(cfg: Config, dataset: Path) -> tuple[int, float]:
    """``(images, fraction)``: the training images the final model sees (``data.subset`` of every image, no
    validation), and the stratified fraction of them that fills ``WARMUP_STEPS`` batches. Measuring on images
    the first epoch has cached is what a real run's later epochs do; fresh images would time the cache being
    filled as well (measured: 29.5 images/s at 64 px where the final model then trained at 37 to 41)."""
    from imgclf.data.samples import load_training_set
    from imgclf.data.split import stratified_subset

    samples = load_training_set(dataset, Path(cfg.data.blocklist) if cfg.data.blocklist else None)
    everything = np.arange(len(samples.paths))
    images = len(stratified_subset(samples.labels, everything, cfg.data.subset, cfg.data.split_seed))
    want = WARMUP_STEPS * cfg.data.batch_size
    return images, min(1.0, want / max(len(everything), 1))


def model_size(cfg: Config) -> int | None:
    """The size the final model may use at most: ``data.image_size``, else the backbone's pretrained size
    (timm's config; None when timm has none — the first warm-up then finds it)."""
    if cfg.data.image_size:
        return int(cfg.data.image_size)
    from timm.models import get_pretrained_cfg

    pretrained = get_pretrained_cfg(cfg.model.backbone) if cfg.model.backbone else None
    size = getattr(pretrained, "input_size", None)
    return int(size[-1]) if size else None


def measure(
    cfg: Config, dataset: Path, budget: float, start: Start | None = None
) -> tuple[list[dict[str, Any]], CostModel, int]:
    """Warm-ups at a small size (:func:`~imgclf.budget.plan.small_size`) and at a second size, the one the final model would take by the first point's pure
    s² (when that costs at most ``WARMUP_SHARE`` of the budget), else the smallest it may take; the cost model
    fitted to them (a + b·s²); the model's size."""
    cap = model_size(cfg)
    with tempfile.TemporaryDirectory(prefix="imgclf-warmup-") as tmp:
        if cap is None:
            points = [warm_up(cfg, dataset, None, Path(tmp) / "cap")]
            cap = points[0]["size"]
            if small_size(cap) != cap:
                points.append(warm_up(cfg, dataset, small_size(cap), Path(tmp) / "small"))
        else:
            points = [warm_up(cfg, dataset, small_size(cap), Path(tmp) / "small")]
            second = second_size(points[0], cap, budget, start)
            if second is not None:
                points.append(warm_up(cfg, dataset, second, Path(tmp) / "second"))
    cost = CostModel.fit([(p["size"], p["images_per_second"]) for p in points])
    log.info("recipe: warm-up %s", ", ".join(f"{p['images_per_second']:.1f} images/s at {p['size']}px" for p in points))
    return points, cost, cap


def second_size(first: dict[str, Any], cap: int, budget: float, start: Start | None = None) -> int | None:
    """Where to measure the cost model's second point: the size the final model would take with the first point's
    pure s² (measured where it will be used), if its warm-up costs at most ``WARMUP_SHARE`` of the budget — else,
    or when that is the first point's size, the smallest size the final model may take (a cheap point that fixes the
    per-image cost that does not shrink with the size, which pure s² misses: it planned 6 epochs at 64 px on the
    demo data where 5 fitted); None when there is no other size."""
    size, steps = first["size"], first["seconds"] - first["overhead_seconds"]
    pure = CostModel.fit([(size, first["images_per_second"])])
    planned, _ = plan_final(PLAN_SHARE * budget, first["images"], pure, cap, MIN_EPOCHS, start=start)
    if planned != size and first["overhead_seconds"] + steps * (planned / size) ** 2 <= WARMUP_SHARE * budget:
        return planned
    smallest = ladder(cap)[0]
    return smallest if smallest < size else None
