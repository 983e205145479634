"""``imgclf cv DATASET --budget 20m``: the budget recipe of :mod:`imgclf.budget.recipe` ending in a CV ensemble.

The warm-up and the probes are the same as for ``train --budget``. What is left of the budget, less the folds' fixed overhead and a reserve for
OOF scores, label issues and the report, is split evenly between the K folds: each trains on (K-1)/K of the images and validates on the rest
every epoch, at the largest size that fits at least six epochs. The folds together are the final model
(``imgclf predict CV_DIR`` blends them), so there is no refit; the OOF score is an honest estimate of it.

Each fold's share is its ``train.time_limit``: the loop re-plans its epochs by it after each one, so a machine that
slows down mid-way costs epochs, not the budget. ``CV_DIR/recipe.json`` records the plan.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from imgclf.training.task_setup import dataset_task
from imgclf.budget.final import even_share
from imgclf.budget.plan import MIN_EPOCHS, PLAN_SHARE, Clock, fold_images, plan_final, report_reserve
from imgclf.budget.prior import growth, with_flip_tta, with_growth, with_prior
from imgclf.budget.recipe import measure_and_probe
from imgclf.config import Config, with_overrides
from imgclf.errors import ConfigError
from imgclf.io import atomic_write_json
from imgclf.run.rundir import BlendDir, RunDir

log = logging.getLogger("imgclf")

# OOF scores, cleanlab's label issues and the CV report, on top of the run report's reserve (measured ~10 s
# for a tiny CV on the 2-core build machine).
CV_EXTRA_RESERVE = 10.0


def with_fold_limits(
    train_one: Callable[..., dict[str, Any]], clock: Clock, ends_at: float, folds: int, overhead: float = 0.0
):
    """``train_one`` with a time limit per fold: the k-th fold it trains gets an even share of the time left for the
    folds not yet trained (:func:`~imgclf.budget.final.even_share`) as its ``train.time_limit``, by which the loop
    re-plans its epochs. (``cv --budget`` always starts a new CV, so every fold passes through here in turn.)"""
    started = 0

    def timed(
        cfg: Config, dataset: Path, out: Path, resume: bool, name: str, callbacks: Sequence[Any] = ()
    ) -> dict[str, Any]:
        nonlocal started
        limit = even_share(clock, ends_at, max(folds - started, 1), overhead)
        started += 1
        return train_one(
            with_overrides(cfg, {"train.time_limit": limit}), dataset, out, resume, name, callbacks=callbacks
        )

    return timed


def check_new_cv(out: Path) -> None:
    if BlendDir(Path(out)).cv_spec.is_file():
        raise ConfigError(
            f"{out} already holds a CV; --budget plans a new one, so choose another --out (or resume "
            f"this one without --budget: imgclf cv DATASET --out {out} --config {RunDir(Path(out)).config})"
        )


def _same(cfg: Config) -> Config:
    return cfg


def run_cv_recipe(
    cfg: Config,
    dataset: Path,
    out: Path,
    budget: float,
    *,
    folds: int,
    train_one: Callable[..., dict[str, Any]],
    started: float | None = None,
) -> dict[str, Any]:
    """Warm-up, probes, then a K-fold CV at the size they chose into ``out``, within ``budget`` seconds."""
    from imgclf.experiments.cv import run_cv
    from imgclf.experiments.cv_report import write_cv_report

    check_new_cv(out)
    classes = dataset_task(cfg, dataset) == "multiclass"
    clock, run, start = Clock(started), RunDir(Path(out)), growth(cfg)  # growth: before the prior names every key
    cfg, prior = with_prior(cfg)
    if not classes:  # label sets, values: no probes, no flip TTA (imgclf.budget.recipe says why)
        cfg = with_overrides(cfg, {"train.budget_probes": False, "tta.mode": "none"})
    reserve = report_reserve(budget) + CV_EXTRA_RESERVE
    found = measure_and_probe(
        cfg, dataset, budget, clock, probe_flips="data.flips" in prior, reserve=reserve, folds=folds, start=start
    )
    cfg = found.cfg
    left = budget - reserve - clock.elapsed() - folds * found.overhead
    size, epochs = plan_final(
        PLAN_SHARE * left / folds,
        fold_images(found.images, folds),
        found.cost,
        found.cap,
        max(cfg.train.epochs, MIN_EPOCHS),
        start=start,
    )
    final = (with_flip_tta if classes else _same)(
        with_growth(
            with_overrides(
                cfg,
                {
                    "data.image_size": int(size),
                    "train.epochs": max(int(epochs), cfg.train.epochs, MIN_EPOCHS),
                    "train.warmup_epochs": min(cfg.train.warmup_epochs, max(int(epochs) - 1, 0)),
                },
            ),
            start,
            found.cost,
        )
    )
    chosen = {"image_size": size, "start_size": final.data.start_size or None, "epochs": epochs}
    chosen |= {"images": found.images, "folds": folds, "seconds_planned": left, "per_fold_seconds": left / folds}
    record = {**found.record, "prior": prior, "chosen": {**chosen, "refit_on_all_images": False}}
    log.info(
        "recipe: %d folds at %dpx for up to %d epoch(s) each (%.0fs left of %.0fs)", folds, size, epochs, left, budget
    )
    atomic_write_json(run.recipe, {**record, "status": "training the folds"})
    timed = with_fold_limits(train_one, clock, budget - reserve, folds, found.overhead)
    summary = run_cv(final, Path(dataset), Path(out), folds=folds, train_one=timed)
    elapsed = clock.elapsed()
    oof = summary["oof"].get("accuracy")
    atomic_write_json(run.recipe, _done_record(record, elapsed, budget, oof, found.images, folds))
    write_cv_report(out)  # again, now that the recipe is done: its section shows the final record
    return {**summary, "recipe": {"budget_seconds": budget, "elapsed_seconds": elapsed, "oof_accuracy": oof}}


def _done_record(
    record: dict[str, Any], elapsed: float, budget: float, oof: float | None, images: int, folds: int
) -> dict[str, Any]:
    """``recipe.json`` once the folds are trained: the time used and the out-of-fold estimate."""
    return {
        **record,
        "status": "done",
        "elapsed_seconds": elapsed,
        "within_budget": elapsed <= budget * 1.05,
        "clock": "from the start of the cv command, after Python's start-up and imports",
        "estimate": {
            "metric": "accuracy",
            "value": oof,
            "images": images,
            "se": math.sqrt(oof * (1 - oof) / images) if oof is not None and images else None,
            "what": f"the out-of-fold accuracy of the {folds} folds (each image scored by the fold that "
            "never trained on it; the folds together are the final model)",
        },
    }
