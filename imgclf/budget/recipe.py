"""``imgclf train DATASET --budget 20m``: the recipe that plans itself within a wall-clock budget.

1. **Warm-up** (a few real training steps, tracking off, in a temporary folder) at a small size and at
   the size the final model will likely take (:func:`~imgclf.budget.measure.second_size`): images/s fit the cost model of
   :mod:`imgclf.budget.plan` (seconds per image = a + b·s²).
2. **Probes** on frozen features: the resolution probe caps the size only where a larger one is shown (gap + one
   standard error) to add nothing; the orientation probe picks the flip group (McNemar's test).
3. **Final models** at the largest size that fits ≥ 6 epochs (one model, or up to ``train.budget_members`` as an
   equal-weight ensemble), re-planned by the clock. Each holds out the same ``data.val_fraction`` of the images
   (0.2 by default) and keeps its last epoch's weights (``train.keep=last``).
4. **Estimate**: what is submitted — the blend with its TTA, as ``predict`` makes it — scored on those held-out
   images, with its standard error (:func:`~imgclf.budget.estimate.held_out_estimate`; ``RUN/eval/``). The flip TTA stays only when it
   beats no TTA there by more than one standard error (:func:`~imgclf.budget.estimate.decide_tta`). ``data.val_fraction=0`` trains on
   every image instead and has no estimate (and keeps the TTA untested).

There is no hyperparameter search: the proxy search it had (Optuna on a low-resolution subset) kept the config's own
values in every recorded run and, switched on, cost 8.9 ± 0.7 pp on the thin-defect set (BENCHMARKS.md "Does each
part of the budget recipe pay?"); ``imgclf sweep`` is there for a search the user asks for.

Multilabel and regression data (:mod:`imgclf.task`) take the same steps without the two probes and the flip TTA:
both decide by paired tests on classes. The estimate is then the run's metric (``map``, ``rmse``, ...) on the
held-out images with its bootstrap standard error.

Everything it chose and why goes to ``RUN/recipe.json`` (the run report shows it). The recipe ends by the budget: its
one time-safety mechanism is the clock (see :mod:`imgclf.budget`); the tests hold it to ``budget × 1.05``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgclf.training.task_setup import dataset_task
from imgclf.budget.estimate import held_out_estimate, tta_choice, tta_views
from imgclf.budget.final import even_share, final_config, member_dir, train_members
from imgclf.budget.measure import measure
from imgclf.budget.plan import (
    MIN_EPOCHS,
    PLAN_SHARE,
    Clock,
    CostModel,
    Start,
    epoch_images,
    estimate_seconds,
    fold_images,
    ladder,
    plan_final,
    plan_members,
    report_reserve,
)
from imgclf.budget.prior import growth, with_flip_tta, with_growth, with_prior
from imgclf.config import Config, with_overrides
from imgclf.io import atomic_write_json
from imgclf.run.rundir import RunDir

log = logging.getLogger("imgclf")


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


def measure_and_probe(
    cfg: Config,
    dataset: Path,
    budget: float,
    clock: Clock,
    *,
    probe_flips: bool = False,
    reserve: float | None = None,
    folds: int | None = None,
    start: Start | None = None,
) -> Measured:
    """Step 1 of the recipe, the warm-up, then the probes: the resolution probe caps the size at what the data's
    pixels are shown to need and, with ``probe_flips`` (``data.flips`` left to the recipe), the orientation probe at
    that size sets the flip group. ``folds``: the final model is that many CV folds; ``reserve``: what the caller keeps
    back after the final model; ``start``: progressive resizing (:func:`growth`)."""
    from imgclf.budget.feature_probe import shared_probe
    from imgclf.budget.orientation import oriented, probe_size
    from imgclf.budget.resolution import resolution_cap

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
        cap, resolution, orientation = (
            largest,
            {"skipped": off, "size": largest},
            {"skipped": off, "flips": cfg.data.flips},
        )
    if (
        probe_flips and cfg.train.budget_probes
    ):  # at the size the data needs: where its details, and so its "up", can be seen
        at = probe_size(ladder(cap), cost.seconds_per_image, budget)
        cfg, orientation = oriented(cfg, Path(dataset), at, cost.seconds_per_image(at), budget, source)
    record = {
        "budget_seconds": budget,
        "warmup": points,
        "resolution": resolution,
        "orientation": orientation,
        "cost_model": {"a": cost.a, "b": cost.b, "formula": "seconds/image = a + b*size^2"},
    }
    return Measured(cfg, cost, cap, images, per_run, overhead, record)


def run_recipe(
    cfg: Config,
    dataset: Path,
    out: Path,
    budget: float,
    *,
    started: float | None = None,
    tracking_uri: str | None = None,
    callbacks: Iterable[Any] = (),
) -> dict[str, Any]:
    """Warm-up, probes, the final models into ``out`` (one model, or an equal-weight
    ensemble of up to ``train.budget_members``: :func:`~imgclf.budget.plan.plan_members`) within ``budget``
    seconds, then the estimate of what is submitted on the images they held out; return the first model's summary."""
    classes = dataset_task(cfg, dataset) == "multiclass"
    clock, run, start = Clock(started), RunDir(Path(out)), growth(cfg)  # growth: before the prior names every key
    cfg, prior = with_prior(cfg)
    if not classes:  # label sets, values: the probes and the flip TTA's paired test score classes (module docstring)
        cfg = with_overrides(cfg, {"train.budget_probes": False, "tta.mode": "none"})
    found = measure_and_probe(cfg, dataset, budget, clock, probe_flips="data.flips" in prior, start=start)
    cfg = found.cfg
    left = budget - report_reserve(budget) - clock.elapsed() - found.overhead
    most = max(cfg.train.epochs, MIN_EPOCHS)
    val_images = round(found.images * float(cfg.data.val_fraction or 0.0))
    members, size, epochs, held = _plan(cfg, found, left, val_images, start)
    # The size comes from the warm-up's cost model; the epochs from the clock (train.time_limit re-plans them after
    # each epoch, up to ``most``, and the LR schedule anneals by the limit), so a mis-measured warm-up costs neither
    # the budget nor an unfinished schedule.
    final = with_growth(
        with_overrides(final_config(cfg, size, epochs), {"train.epochs": max(epochs, most)}), start, found.cost
    )
    final = with_flip_tta(final) if classes else final
    first = even_share(clock, budget - report_reserve(budget) - held, members, found.overhead)
    record = _final_record(found, prior, final, members, epochs, left, first)
    log.info(
        "recipe: %s at %dpx%s on %d images%s, about %d epoch(s) each (re-planned by the clock within %.0fs; "
        "%.0fs left of %.0fs)",
        "one final model" if members == 1 else f"{members} final models (an ensemble)",
        size,
        f" (growing from {final.data.start_size}px)" if final.data.start_size else "",
        found.images - val_images,
        f" ({val_images} held out for the estimate)" if val_images else "",
        epochs,
        first,
        left,
        budget,
    )
    atomic_write_json(run.recipe, {**record, "status": "training the final model"})
    summaries = train_members(
        final,
        Path(dataset),
        run,
        members,
        clock,
        budget,
        found.overhead,
        tracking_uri,
        callbacks,
        first=first,
        held=held,
    )
    final, estimate = held_out_estimate(run, final, len(summaries))
    record["chosen"]["tta"] = tta_choice(final)
    return _finish(run, summaries, {**record, "estimate": estimate}, clock)


def _plan(
    cfg: Config, found: Measured, left: float, val_images: int, start: Start | None
) -> tuple[int, int, int, float]:
    """``(members, size, epochs, seconds held for the estimate)`` for ``left`` seconds. The estimate's time comes off
    the training: it is planned for the plan without it, which it can only shrink; it scores the models with their TTA
    and, to decide it, without (one more pass an image)."""

    def plan(seconds: float) -> tuple[int, int, int]:
        most = max(cfg.train.epochs, MIN_EPOCHS)
        return plan_members(
            PLAN_SHARE * seconds,
            found.per_epoch,
            found.cost,
            found.cap,
            most,
            cfg.train.budget_members,
            found.overhead,
            start=start,
        )

    views = tta_views(with_flip_tta(cfg)) + (with_flip_tta(cfg).tta.mode != "none")
    members, size, _ = plan(left)
    held = estimate_seconds(val_images, members, views, found.cost, size)
    return (*plan(left - held), held)


def _final_record(
    found: Measured, prior: dict[str, Any], final: Config, members: int, epochs: int, left: float, limit: float
) -> dict[str, Any]:
    tta = tta_choice(final)
    held_out = round(found.images * float(final.data.val_fraction or 0.0))
    return {
        **found.record,
        "prior": prior,
        "chosen": {
            "image_size": int(final.data.image_size),
            "members": members,
            "start_size": final.data.start_size or None,
            "epochs": epochs,
            "images": found.images - held_out,
            "held_out": held_out,
            "tta": tta,
            "seconds_planned": left,
            "time_limit": limit,
        },
        "estimate": {"status": "measured on the held-out images once the final models are trained"},
    }


def _finish(run: RunDir, summaries: list[dict[str, Any]], record: dict[str, Any], clock: Clock) -> dict[str, Any]:
    elapsed, summary = clock.elapsed(), summaries[0]
    trained = [
        {
            "path": member_dir(run, i).relative_to(run.root).as_posix(),
            "epochs_run": s.get("epochs_run"),
            "train_seconds": s.get("train_seconds"),
        }
        for i, s in enumerate(summaries)
    ]
    chosen = {**record["chosen"], "images": summary.get("train_images"), "held_out": summary.get("val_images")}
    record = {
        **record,
        "chosen": chosen,
        "status": "done",
        "elapsed_seconds": elapsed,
        "epochs_run": summary.get("epochs_run"),
        "members_trained": trained,
        "clock": "from the start of api.train (the train command), after Python's start-up and imports",
        "within_budget": elapsed <= record["budget_seconds"] * 1.05,
    }
    atomic_write_json(run.recipe, record)
    summary = {
        **summary,
        "recipe": {
            "budget_seconds": record["budget_seconds"],
            "elapsed_seconds": elapsed,
            "members": len(summaries),
            "estimate": record["estimate"],
        },
    }
    atomic_write_json(run.summary, summary)
    return summary


def record_total(out: Path, started: float) -> float:
    """After the run report: the command's whole time so far, into ``recipe.json`` (``elapsed_with_report_seconds``)."""
    run, total = RunDir(Path(out)), time.perf_counter() - started
    if run.recipe.is_file():
        atomic_write_json(run.recipe, {**run.read_recipe(), "elapsed_with_report_seconds": total})
    return total
