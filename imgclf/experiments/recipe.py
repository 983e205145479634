"""``imgclf train DATASET --budget 20m``: the recipe that plans itself within a wall-clock budget.

1. **Warm-up** (a few real training steps, tracking off, in a temporary folder) at a small size and at
   the size the final model will likely take (:func:`second_size`): images/s fit the cost model of
   :mod:`imgclf.experiments.budget` (seconds per image = a + b·s²).
2. **Probes** on frozen features: the resolution probe caps the size only where a larger one is shown (gap + one
   standard error) to add nothing; the orientation probe picks the flip group (McNemar's test).
3. **Final models** at the largest size that fits ≥ 6 epochs (one model, or up to ``train.budget_members`` as an
   equal-weight ensemble), re-planned by the clock. Each holds out the same ``data.val_fraction`` of the images
   (0.2 by default) and keeps its last epoch's weights (``train.keep=last``).
4. **Estimate**: what is submitted — the blend with its TTA, as ``predict`` makes it — scored on those held-out
   images, with its standard error (:func:`held_out_estimate`; ``RUN/eval/``). The flip TTA stays only when it
   beats no TTA there by more than one standard error (:func:`decide_tta`). ``data.val_fraction=0`` trains on
   every image instead and has no estimate (and keeps the TTA untested).

There is no hyperparameter search: the proxy search it had (Optuna on a low-resolution subset) kept the config's own
values in every recorded run and, switched on, cost 8.9 ± 0.7 pp on the thin-defect set (BENCHMARKS.md "Does each
part of the budget recipe pay?"); ``imgclf sweep`` is there for a search the user asks for.

Everything it chose and why goes to ``RUN/recipe.json`` (the run report shows it). The recipe aims to end by the budget; ``budget × 1.05`` is the hard promise.
"""

from __future__ import annotations

import logging
import math
import statistics
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.config import Config, with_overrides
from imgclf.experiments.budget import (
    MIN_EPOCHS, PLAN_SHARE, CostModel, Start, epoch_images, estimate_seconds, fold_images, ladder, plan_final,
    plan_members, progressive_start, small_size,
)
from imgclf.io import atomic_write_json
from imgclf.run.rundir import RunDir

log = logging.getLogger("imgclf")

WARMUP_STEPS = 4  # optimiser steps per warm-up epoch; the median of the second epoch's last three is the measurement
WARMUP_SHARE = 0.05  # the warm-up at the model's full size runs only if its estimate is at most this share
# Kept for the run report and the last epoch's spread past the clock's plan: 3 % of the budget, at least 5 s, at most
# 30 s (the report took 1.7 s after a 3-minute budget on the demo data, ~9 s for a tiny run on a loaded machine).
REPORT_RESERVE = (0.03, 5.0, 30.0)
# The final model's train.time_limit, as a share of the time left: it re-plans its epochs after each one, so only
# the last epoch's spread (and its validation-free finish) needs a margin.
TIME_SHARE = 0.95
MEMBERS_DIR = "members"  # train --budget's final models after the first: RUN/members/2, RUN/members/3, ...
# A final model after the first starts only when its share of the time left is at least this share of the planned one.
MEMBER_FLOOR = 0.5
# Where the recipe starts for the keys the user left at their defaults. A fine-tune of a few epochs from pretrained weights needs no heavy
# regularisation: on the whole image, mirrored left-right, it beat the medium preset (random resized crops from 35 %
# of the area, colour jitter, eval crop 0.875) by 3.6 pp on the demo data and 5.6 pp on the no-up data (64 px,
# 5 epochs, every image; BENCHMARKS.md "The recipe's starting point").
# The lowest third of the backbone's layer groups stays frozen (finetune.freeze_bottom): their backward pass is the
# costliest per parameter (highest resolution), so each step is cheaper and the budget buys a larger size or more
# epochs (BENCHMARKS.md "Freezing the lowest layers under a budget").
SHORT_RUN_PRIOR: dict[str, Any] = {"data.augment": "none", "data.flips": "h", "data.eval_crop_pct": 1.0,
                                   "finetune.freeze_bottom": 0.35}
class Clock:
    """Seconds since the recipe (or the command) started."""

    def __init__(self, started: float | None = None):
        self.started = time.perf_counter() if started is None else started

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def left_to_recipe(cfg: Config, key: str) -> bool:
    """Whether the user left ``key`` alone: at its default and not named in the YAML or a ``--set`` (pydantic's
    ``model_fields_set``; a config rebuilt by ``with_overrides`` counts every key as named)."""
    section, name = key.split(".", 1)
    return cfg.flat()[key] == Config().flat()[key] and name not in getattr(cfg, section).model_fields_set


def with_prior(cfg: Config) -> tuple[Config, dict[str, Any]]:
    """``cfg`` with :data:`SHORT_RUN_PRIOR` on the keys the user left alone, and those changes."""
    changes = {k: v for k, v in SHORT_RUN_PRIOR.items() if left_to_recipe(cfg, k)}
    return (with_overrides(cfg, changes) if changes else cfg), changes


def growth(cfg: Config) -> Start | None:
    """Progressive resizing as the plan counts it (final size -> first size): the recipe's
    :func:`~imgclf.experiments.budget.progressive_start` when ``data.start_size`` is left to it, the user's size
    when set, None when the user turned it off (0)."""
    if left_to_recipe(cfg, "data.start_size"):
        return progressive_start
    own = cfg.data.start_size
    return (lambda size: own if own < size else None) if own else None


def with_growth(cfg: Config, start: Start | None, cost: CostModel | None = None) -> Config:
    """The final config with the ``data.start_size`` the plan counted on (0 when ``start`` gives none at its size),
    and the warm-up's ``cost`` as ``train.time_cost``, by which the clock times the larger epochs to come."""
    if start is None:
        return cfg
    first = start(int(cfg.data.image_size)) or 0
    timed = {"train.time_cost": [cost.a, cost.b]} if first and cost is not None and cost.b > 0 else {}
    return with_overrides(cfg, {"data.start_size": first, **timed})


def with_flip_tta(cfg: Config) -> Config:
    """The final model predicts on each image under every flip and turn it was trained with (``tta.mode=fixed`` on
    the views of ``data.flips``' group, :data:`~imgclf.infer.views.SYMMETRY_VIEWS`: h → identity and mirror,
    hv → 4 views, d4 → 8) when the user left TTA alone: the views it was trained to be indifferent to (mirror TTA:
    +0.5 pp on the demo data, BENCHMARKS.md "Test-time augmentation")."""
    from imgclf.config import TTAConfig
    from imgclf.data.transforms import AugmentSpec
    from imgclf.infer.views import SYMMETRY_VIEWS

    flips = AugmentSpec.from_config(cfg.data).resolved()["flips"]
    if flips == "none" or cfg.tta.mode != "none" or cfg.tta.views != TTAConfig().views:
        return cfg
    group = list(SYMMETRY_VIEWS[flips])
    views = group + [view for view in cfg.tta.views if view not in group]
    return with_overrides(cfg, {"tta.mode": "fixed", "tta.n": len(group), "tta.views": views})


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
    values = {"data.val_fraction": 0.0, "data.split_file": None, "data.subset": fraction, "train.epochs": 2,
              "train.patience": None, "train.warmup_epochs": 0, "train.max_steps_per_epoch": WARMUP_STEPS,
              "tracking.enabled": False}
    if size is not None:
        values["data.image_size"] = int(size)
    from imgclf.train.loop import fit

    timer, t0 = _StepTimer(), time.perf_counter()
    summary = fit(with_overrides(cfg, values), dataset, folder, callbacks=[timer], preflight=False)
    wall = time.perf_counter() - t0
    return {
        "size": int(summary["image_size"]), "images_per_second": timer.images_per_second(cfg.data.batch_size),
        "overhead_seconds": max(wall - sum(float(r["epoch_seconds"]) for r in timer.rows), 0.0),
        "images": images, "classes": int(summary["num_classes"]), "seconds": wall,
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


def measure(cfg: Config, dataset: Path, budget: float, start: Start | None = None) -> tuple[list[dict[str, Any]], CostModel, int]:
    """Warm-ups at a small size (:func:`~imgclf.experiments.budget.small_size`) and at a second size, the one the final model would take by the first point's pure
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


class _FinalDeadline:
    """The final model's callback: stop after an epoch when the next (as long as the latest, or the share of it
    that the clock planned for a partial last epoch: the row's ``planned_epochs``; the first epoch also fills
    the resize cache, so it is not the guide for later ones) would end past ``ends_at`` — the safety net for a
    machine that slowed down after the plan was made."""

    def __init__(self, clock: Clock, ends_at: float):
        self.clock, self.ends_at = clock, ends_at
        self.stop_training = False

    def on_epoch_end(self, row: dict[str, Any]) -> None:
        share = min(1.0, float(row.get("planned_epochs") or math.inf) - float(row.get("epoch") or 0))
        if share > 0 and self.clock.elapsed() + share * float(row.get("epoch_seconds") or 0.0) > self.ends_at:
            self.stop_training = True
            log.warning("recipe: stopping the final model after epoch %s: another would end past the budget", row.get("epoch"))


def final_config(cfg: Config, size: int, epochs: int) -> Config:
    """The final models' config: ``cfg`` at ``size`` for ``epochs`` epochs. The user's ``data.val_fraction`` (0.2 by
    default; the same split for every model) stays held out, the estimate of what is submitted; the last epoch's
    weights are kept (``train.keep=last``), since weights picked on those images would make it optimistic."""
    return with_overrides(cfg, {"data.image_size": int(size), "train.epochs": int(epochs), "train.patience": None,
                                "train.warmup_epochs": min(cfg.train.warmup_epochs, max(int(epochs) - 1, 0)),
                                "train.keep": "last"})


def train_final(cfg: Config, dataset: Path, run: RunDir, tracking_uri: str | None, callbacks: Iterable[Any]) -> dict[str, Any]:
    from imgclf.experiments.tracking import tracking_session
    from imgclf.train.loop import fit

    with tracking_session(cfg, run.root, tracking_uri) as tracking:
        return fit(cfg, dataset, run.root, callbacks=[*callbacks, *tracking], preflight=False)


@dataclass
class Measured:
    """What the warm-up and the probes found: the config with the probes' choices (the flip group), the cost model,
    the largest size the data is shown to need, the training images, what one final model's epoch costs in images,
    the fixed overhead of one fit, and the ``recipe.json`` record so far."""

    cfg: Config
    cost: CostModel
    cap: int
    images: int
    per_epoch: int  # training-image equivalents one final model's epoch costs (its validation part included)
    overhead: float
    record: dict[str, Any]


def measure_and_probe(cfg: Config, dataset: Path, budget: float, clock: Clock, *, probe_flips: bool = False,
                      reserve: float | None = None, folds: int | None = None, start: Start | None = None) -> Measured:
    """Step 1 of the recipe, the warm-up, then the probes: the resolution probe caps the size at what the data's
    pixels are shown to need and, with ``probe_flips`` (``data.flips`` left to the recipe), the orientation probe at
    that size sets the flip group. ``folds``: the final model is that many CV folds; ``reserve``: what the caller keeps
    back after the final model; ``start``: progressive resizing (:func:`growth`)."""
    from imgclf.experiments.feature_probe import shared_probe
    from imgclf.experiments.orientation import oriented, probe_size
    from imgclf.experiments.resolution import resolution_cap

    points, cost, cap = measure(cfg, Path(dataset), budget, start)
    source = shared_probe(cfg, Path(dataset), cap)  # both probes embed the same images, decoded once
    images = points[0]["images"]
    overhead = max(p["overhead_seconds"] for p in points)
    runs = folds or 1
    per_run = fold_images(images, folds) if folds else epoch_images(images, float(cfg.data.val_fraction or 0.0))
    left = budget - (report_reserve(budget) if reserve is None else reserve) - clock.elapsed() - runs * overhead
    largest, _ = plan_final(PLAN_SHARE * left / runs, per_run, cost, cap, MIN_EPOCHS, start=start)
    if cfg.train.budget_probes:
        cap, resolution = resolution_cap(cfg, Path(dataset), largest, cost, budget, source)
        orientation = {"skipped": "data.flips was set", "flips": cfg.data.flips}
    else:
        off = "off (train.budget_probes=false)"
        cap, resolution, orientation = largest, {"skipped": off, "size": largest}, {"skipped": off, "flips": cfg.data.flips}
    if probe_flips and cfg.train.budget_probes:  # at the size the data needs: where its details, and so its "up", can be seen
        at = probe_size(ladder(cap), cost.seconds_per_image, budget)
        cfg, orientation = oriented(cfg, Path(dataset), at, cost.seconds_per_image(at), budget, source)
    record = {"budget_seconds": budget, "warmup": points, "resolution": resolution, "orientation": orientation,
              "cost_model": {"a": cost.a, "b": cost.b, "formula": "seconds/image = a + b*size^2"}}
    return Measured(cfg, cost, cap, images, per_run, overhead, record)


def report_reserve(budget: float) -> float:
    """Seconds kept back for the report (:data:`REPORT_RESERVE`): 3 % of the budget, at least 5 s, at most 30 s."""
    share, low, high = REPORT_RESERVE
    return min(max(share * budget, low), high)


def run_recipe(cfg: Config, dataset: Path, out: Path, budget: float, *, started: float | None = None,
               tracking_uri: str | None = None, callbacks: Iterable[Any] = ()) -> dict[str, Any]:
    """Warm-up, probes, the final models into ``out`` (one model, or an equal-weight
    ensemble of up to ``train.budget_members``: :func:`~imgclf.experiments.budget.plan_members`) within ``budget``
    seconds, then the estimate of what is submitted on the images they held out; return the first model's summary."""
    clock, run, start = Clock(started), RunDir(Path(out)), growth(cfg)  # growth: before the prior names every key
    cfg, prior = with_prior(cfg)
    found = measure_and_probe(cfg, dataset, budget, clock, probe_flips="data.flips" in prior, start=start)
    cfg = found.cfg
    left = budget - report_reserve(budget) - clock.elapsed() - found.overhead
    most = max(cfg.train.epochs, MIN_EPOCHS)

    def plan(seconds: float) -> tuple[int, int, int]:
        return plan_members(PLAN_SHARE * seconds, found.per_epoch, found.cost, found.cap, most, cfg.train.budget_members,
                            found.overhead, start=start)

    # The estimate's time comes off the training: planned for the plan without it, which it can only shrink.
    # the estimate scores the models with their TTA and, to decide it, without (one more pass an image)
    views = tta_views(with_flip_tta(cfg)) + (with_flip_tta(cfg).tta.mode != "none")
    val_images = round(found.images * float(cfg.data.val_fraction or 0.0))
    members, size, _ = plan(left)
    held = estimate_seconds(val_images, members, views, found.cost, size)
    members, size, epochs = plan(left - held)
    # The size comes from the warm-up's cost model; the epochs from the clock (train.time_limit re-plans them after
    # each epoch, up to ``most``, and the LR schedule anneals by the limit), so a mis-measured warm-up costs neither
    # the budget nor an unfinished schedule.
    final = with_flip_tta(with_growth(with_overrides(final_config(cfg, size, epochs),
                                                     {"train.epochs": max(epochs, most)}), start, found.cost))
    first = even_share(clock, budget - report_reserve(budget) - held, members, found.overhead, slack=0.05 * budget)
    record = _final_record(found, prior, final, members, epochs, left, first[0])
    log.info("recipe: %s at %dpx%s on %d images%s, about %d epoch(s) each (re-planned by the clock within %.0fs; "
             "%.0fs left of %.0fs)", "one final model" if members == 1 else f"{members} final models (an ensemble)",
             size, f" (growing from {final.data.start_size}px)" if final.data.start_size else "",
             found.images - val_images, f" ({val_images} held out for the estimate)" if val_images else "", epochs,
             first[0], left, budget)
    atomic_write_json(run.recipe, {**record, "status": "training the final model"})
    summaries = train_members(final, Path(dataset), run, members, clock, budget, found.overhead, tracking_uri, callbacks,
                              first=first, held=held)
    final, estimate = held_out_estimate(run, final, len(summaries))
    record["chosen"]["tta"] = _tta_choice(final)
    return _finish(run, summaries, {**record, "estimate": estimate}, clock)


def tta_views(cfg: Config) -> int:
    """Forward passes per image and model that ``cfg``'s TTA makes at most."""
    return {"none": 1, "fixed": cfg.tta.n}.get(cfg.tta.mode, cfg.tta.max_views)


def held_out_estimate(run: RunDir, final: Config, members: int) -> tuple[Config, dict[str, Any]]:
    """What the submission is worth: the blend of the final models (``RUN/ensemble.json``) as ``predict`` makes it,
    scored on the validation split that every model held out (``RUN/eval/``), with the binomial standard error of the
    accuracy; and the final config, whose TTA stays only where it is shown to pay (:func:`decide_tta`)."""
    if not final.data.val_fraction:
        return final, {"metric": "accuracy", "value": None, "se": None, "images": 0,
                       "what": "none: data.val_fraction=0 trained every model on every image; pass a labelled holdout "
                               "to imgclf evaluate (imgclf prepare --holdout makes one)"}
    from imgclf.infer.jobs import evaluate_run
    from imgclf.runtime import resolve_device

    device = str(resolve_device(final.train.device, "train.device"))

    def scored(cfg: Config, out: Path) -> dict[str, Any]:
        return evaluate_run(run.root, None, out, tta=cfg.tta, batch_size=cfg.data.batch_size, device=device)

    result, decided = scored(final, run.eval.root), None
    if final.tta.mode != "none":
        final, result, decided = decide_tta(run, final, result, scored)
    p, n = float(result["accuracy"]), int(result["images"])
    blend = "model" if members == 1 else f"{members}-model equal-weight blend"
    estimate = {"metric": "accuracy", "value": p, "se": math.sqrt(p * (1 - p) / n) if n else None, "images": n,
                "what": f"the submitted {blend} with {tta_text(final)}, on {n} held-out images no model trained on "
                        "(RUN/eval)"}
    metric = result.get("metric")
    if metric and metric != "accuracy" and result.get(metric) is not None:
        estimate[metric] = result[metric]
    if decided:
        estimate["tta"] = decided
    if members > 1 or final.tta.mode != "none":
        estimate["over_one_model"] = extras_effect(run, f"{blend} with {tta_text(final)}")
    log.debug("recipe: estimate %.4f ± %.4f accuracy (%s)", p, estimate["se"] or 0.0, estimate["what"])  # the CLI's last line says it
    return final, estimate


def decide_tta(run: RunDir, final: Config, with_tta: dict[str, Any], scored) -> tuple[Config, dict[str, Any], dict[str, Any]]:
    """Keep the flip TTA only when it beats the same models without it, paired on the held-out images, by more than
    one standard error; else submit without it (``RUN/config.yaml``'s ``tta.mode=none``, which ``predict RUN``
    reads; ``RUN/eval`` then holds the scores without TTA). Returns the final config, the scores of what is
    submitted and the decision's record. On the thin-defect benchmark 8-view TTA bought -0.2 ± 1.9 pp and made
    ``predict`` 8× slower (BENCHMARKS.md "The budget recipe made trustworthy")."""
    import os

    from imgclf.config import load_config, save_config

    plain_cfg = with_overrides(final, {"tta.mode": "none"})
    with tempfile.TemporaryDirectory(prefix=".eval-plain-", dir=run.root) as tmp:
        plain = scored(plain_cfg, Path(tmp))
        effect = paired_effect(Path(tmp) / run.eval.predictions.name, run.eval.predictions)  # TTA over none
        kept = effect.get("gap") is not None and effect["gap"] > effect["se"]
        views = tta_text(final)
        decided = {**effect, "views": views, "kept": kept,
                   "rule": "kept only when its gain over no TTA, paired on the held-out images, exceeds one standard error"}
        if kept:
            return final, with_tta, decided
        for name in os.listdir(tmp):  # the scores of what is submitted, file by file (one filesystem: atomic)
            os.replace(Path(tmp) / name, run.eval.root / name)
    save_config(load_config(run.config, ["tta.mode=none"]), run.config)
    log.info("recipe: %s dropped: %s over none (one standard error), so predict makes one pass an image", views,
             f"{100 * effect['gap']:+.1f} ± {100 * effect['se']:.1f} pp" if effect.get("gap") is not None else "no measure")
    return plain_cfg, plain, decided


def tta_text(cfg: Config) -> str:
    """``no TTA`` or ``4-view TTA``."""
    return "no TTA" if cfg.tta.mode == "none" else f"{tta_views(cfg)}-view TTA"


def paired_effect(base: Path, other: Path) -> dict[str, Any]:
    """How much more accurate the predictions in ``other`` are than those in ``base`` (two CSV files with ``path`` and
    ``correct`` columns), paired on the images both hold: ``gap``, ``se`` (:func:`~imgclf.experiments.stats.paired_gap`)
    and ``images``; ``skipped`` when there is nothing to pair."""
    from imgclf.experiments.stats import paired_gap
    from imgclf.run.rundir import read_run_csv

    if not (base.is_file() and other.is_file()):
        return {"skipped": "no per-image predictions to compare"}
    one = read_run_csv(base, ("path", "correct"), dtype={"path": str}, keep_default_na=False)
    two = read_run_csv(other, ("path", "correct"), dtype={"path": str}, keep_default_na=False)
    both = one.merge(two, on="path", suffixes=("_base", "_other"))
    if both.empty:
        return {"skipped": "the two sets of predictions share no image"}
    as_bool = lambda col: both[col].astype(str).str.lower().eq("true").to_numpy()  # noqa: E731
    gap, se = paired_gap(as_bool("correct_base"), as_bool("correct_other"))
    return {"gap": gap, "se": se, "images": int(len(both))}


def extras_effect(run: RunDir, what: str) -> dict[str, Any]:
    """What the extra models and TTA bought: the submitted predictions (``RUN/eval/predictions.csv``) against the first
    model's own, without TTA (``RUN/val_predictions.csv``), on the same held-out images (:func:`paired_effect`).
    Recorded, not acted on: a gap within one standard error says the extras' cost bought nothing this data can show."""
    effect = paired_effect(run.val_predictions, run.eval.predictions)
    if effect.get("gap") is None:
        return effect
    verdict = ("a gain beyond one standard error" if effect["gap"] > effect["se"]
               else "within one standard error: no gain this data can show")
    return {**effect, "verdict": verdict,
            "what": f"the submitted {what} against the first model alone without TTA, paired on the same images"}


def _tta_choice(final: Config) -> str:
    return final.tta.mode if final.tta.mode != "fixed" else f"{final.tta.n} views: {', '.join(final.tta.views[:final.tta.n])}"


def _final_record(found: Measured, prior: dict[str, Any], final: Config, members: int, epochs: int, left: float,
                  limit: float) -> dict[str, Any]:
    tta = _tta_choice(final)
    held_out = round(found.images * float(final.data.val_fraction or 0.0))
    return {
        **found.record,
        "prior": prior,
        "chosen": {"image_size": int(final.data.image_size), "members": members,
                   "start_size": final.data.start_size or None, "epochs": epochs, "images": found.images - held_out,
                   "held_out": held_out, "tta": tta, "seconds_planned": left, "time_limit": limit},
        "estimate": {"status": "measured on the held-out images once the final models are trained"},
    }


def even_share(clock: Clock, ends_at: float, runs_left: int, overhead: float, slack: float = 0.0) -> tuple[float, float]:
    """``(train.time_limit, deadline)`` for the next of ``runs_left`` models sharing the time until ``ends_at`` evenly:
    :data:`TIME_SHARE` of its share less a fit's fixed ``overhead`` (by which the clock re-plans its epochs), and the
    end of its share plus its part of ``slack`` (where :class:`_FinalDeadline` stops it)."""
    runs_left = max(int(runs_left), 1)
    share = (ends_at - clock.elapsed()) / runs_left
    return max(TIME_SHARE * (share - overhead), 1.0), clock.elapsed() + share + slack / runs_left


def member_dir(run: RunDir, index: int) -> Path:
    """Where the recipe's model ``index`` (0-based) trains: the run itself for the first, ``RUN/members/<n>`` after."""
    return run.root if index == 0 else run.root / MEMBERS_DIR / str(index + 1)


def train_members(final: Config, dataset: Path, run: RunDir, members: int, clock: Clock, budget: float, overhead: float,
                  tracking_uri: str | None, callbacks: Iterable[Any], first: tuple[float, float] | None = None,
                  held: float = 0.0) -> list[dict[str, Any]]:
    """The final models, one after another, each with an even share of the time left (the last ends by the budget,
    +5 % at most) and its own seed; then, for more than one, ``RUN/ensemble.json`` (equal weights), which
    ``predict RUN`` blends. A model whose share has shrunk below half the planned one (a machine that slowed down)
    is not started: the ensemble keeps the models it has. ``first``: the first model's ``(time_limit, deadline)``
    as the plan recorded them (:func:`even_share` at that moment); ``held``: seconds kept for the estimate after them."""
    ends_at, callbacks = budget - report_reserve(budget) - held, list(callbacks)
    planned = (ends_at - clock.elapsed()) / members
    summaries: list[dict[str, Any]] = []
    for index in range(members):
        limit, deadline = first if index == 0 and first else even_share(clock, ends_at, members - index, overhead,
                                                                         slack=0.05 * budget)
        if index and (ends_at - clock.elapsed()) / (members - index) < MEMBER_FLOOR * planned:
            log.warning("recipe: %d of %d final models trained; too little time is left for another", index, members)
            break
        member = with_overrides(final, {"train.time_limit": limit, "train.seed": (final.train.seed + index) % 2**32})
        summaries.append(train_final(member, dataset, RunDir(member_dir(run, index)), tracking_uri,
                                     [*callbacks, _FinalDeadline(clock, deadline)]))
    if len(summaries) > 1:
        from imgclf.infer.model_set import ENSEMBLE_FILE

        atomic_write_json(run.root / ENSEMBLE_FILE, {
            "members": [{"path": member_dir(run, i).relative_to(run.root).as_posix(), "weight": 1.0 / len(summaries)}
                        for i in range(len(summaries))],
            "weights": "equal", "source": "train --budget: each model on the same training images, with its own seed"})
    return summaries


def _finish(run: RunDir, summaries: list[dict[str, Any]], record: dict[str, Any], clock: Clock) -> dict[str, Any]:
    elapsed, summary = clock.elapsed(), summaries[0]
    trained = [{"path": member_dir(run, i).relative_to(run.root).as_posix(), "epochs_run": s.get("epochs_run"),
                "train_seconds": s.get("train_seconds")} for i, s in enumerate(summaries)]
    chosen = {**record["chosen"], "images": summary.get("train_images"), "held_out": summary.get("val_images")}
    record = {**record, "chosen": chosen, "status": "done", "elapsed_seconds": elapsed, "epochs_run": summary.get("epochs_run"),
              "members_trained": trained,
              "clock": "from the start of api.train (the train command), after Python's start-up and imports",
              "within_budget": elapsed <= record["budget_seconds"] * 1.05}
    atomic_write_json(run.recipe, record)
    summary = {**summary, "recipe": {"budget_seconds": record["budget_seconds"], "elapsed_seconds": elapsed,
                                     "members": len(summaries), "estimate": record["estimate"]}}
    atomic_write_json(run.summary, summary)
    return summary


def record_total(out: Path, started: float) -> float:
    """After the run report: the command's whole time so far, into ``recipe.json`` (``elapsed_with_report_seconds``)."""
    run, total = RunDir(Path(out)), time.perf_counter() - started
    if run.recipe.is_file():
        atomic_write_json(run.recipe, {**run.read_recipe(), "elapsed_with_report_seconds": total})
    return total
