"""``imgclf train DATASET --budget 20m``: the recipe that plans itself within a wall-clock budget.

1. **Warm-up** (a few real training steps, tracking off, in a temporary folder) at the model's size
   and at the proxy size: images/s at both fit the cost model of :mod:`imgclf.experiments.budget`
   (seconds per image = a + b·s²).
2. **Proxy search** (≤ 30 % of the budget): the Optuna sweep (:func:`run_sweep`) on a subset at a small
   size, over the augmentation preset, LR, weight decay, EMA and mixup — plus ``data.flips``,
   ``data.crop_scale`` and ``data.eval_crop_pct`` where the config has those keys. The first trial is
   the config's own values. No trial starts once the proxy's share (less one trial's estimate) is spent.
3. **Final model**: the best proxy values, refit on every image (``data.val_fraction=0``) at the largest
   size that fits ≥ 6 epochs in what is left, re-planned with the proxy's measured speed. It has no
   validation of its own: the proxy's validation score is the recipe's estimate.

Everything it chose and why goes to ``RUN/recipe.json`` (the run report shows it); the trials live in
``RUN/proxy/``. The recipe aims to end by the budget; ``budget × 1.05`` is the hard promise.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from imgclf.config import AUGMENT_PRESETS, Config, known_keys, with_overrides
from imgclf.experiments.budget import (
    MIN_EPOCHS, PROXY_SHARE, CostModel, ProxyPlan, plan_final, plan_proxy, proxy_size,
)
from imgclf.experiments.space import SearchParam
from imgclf.io import atomic_write_json
from imgclf.run.rundir import RunDir

log = logging.getLogger("imgclf")

STUDY = "recipe"
WARMUP_STEPS = 3  # optimiser steps per warm-up epoch; the second epoch's images/s is the measurement
REPORT_RESERVE = 0.04  # share of the budget kept for the final set-up, calibration and report
_OPTIONAL = {  # keys another part of imgclf may add to the config: searched only when Config has them
    "data.flips": ("none", "h", "hv", "d4"),
    "data.crop_scale": ((0.08, 1.0), (0.35, 1.0), (0.7, 1.0)),
    "data.eval_crop_pct": (None, 1.0),
}


class Clock:
    """Seconds since the recipe (or the command) started."""

    def __init__(self, started: float | None = None):
        self.started = time.perf_counter() if started is None else started

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def search_space(cfg: Config) -> list[SearchParam]:
    """What matters most on unknown data, around ``cfg``'s own values (which are always among the choices)."""
    lr, wd = cfg.train.lr, cfg.train.weight_decay
    space = [
        SearchParam("data.augment", "categorical", choices=tuple(AUGMENT_PRESETS)),
        SearchParam("train.lr", "float", low=lr / 3, high=min(lr * 3, 10.0), log=True),
        SearchParam("train.weight_decay", "float", low=0.0, high=max(0.1, 2 * wd)),
        SearchParam("train.ema", "categorical", choices=(False, True)),
        SearchParam("train.mixup", "categorical", choices=tuple(sorted({0.0, 0.2, float(cfg.train.mixup)}))),
    ]
    keys, flat = set(known_keys()), cfg.flat()
    for key, choices in _OPTIONAL.items():
        if key in keys:
            own = _choice(flat[key])
            space.append(SearchParam(key, "categorical", choices=choices if own in choices else (*choices, own)))
    return space


def _choice(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def own_values(cfg: Config, space: list[SearchParam]) -> dict[str, Any]:
    flat = cfg.flat()
    return {p.key: _choice(flat[p.key]) for p in space}


class _Rows:
    """A ``fit`` callback that keeps the metrics rows."""

    def __init__(self):
        self.rows: list[dict[str, Any]] = []

    def on_epoch_end(self, row: dict[str, Any]) -> None:
        self.rows.append(row)


def warm_up(cfg: Config, dataset: Path, size: int | None, folder: Path) -> dict[str, Any]:
    """Two epochs of ``WARMUP_STEPS`` steps on every image at ``size`` (None: the config's): measured images/s,
    the fit's fixed overhead, the resolved size and the number of images."""
    values = {"data.val_fraction": 0.0, "data.split_file": None, "train.epochs": 2, "train.patience": None,
              "train.warmup_epochs": 0, "train.max_steps_per_epoch": WARMUP_STEPS, "tracking.enabled": False}
    if size is not None:
        values["data.image_size"] = int(size)
    from imgclf.train.loop import fit

    rows, t0 = _Rows(), time.perf_counter()
    summary = fit(with_overrides(cfg, values), dataset, folder, callbacks=[rows], preflight=False)
    wall = time.perf_counter() - t0
    return {
        "size": int(summary["image_size"]), "images_per_second": float(rows.rows[-1]["images_per_second"]),
        "overhead_seconds": max(wall - sum(float(r["epoch_seconds"]) for r in rows.rows), 0.0),
        "images": int(summary["train_images"]), "seconds": wall,
    }


def measure(cfg: Config, dataset: Path) -> tuple[list[dict[str, Any]], CostModel]:
    """Warm-ups at the model's size and at the proxy size; the cost model fitted to them."""
    with tempfile.TemporaryDirectory(prefix="imgclf-warmup-") as tmp:
        first = warm_up(cfg, dataset, None, Path(tmp) / "cap")
        points = [first]
        small = proxy_size(first["size"])
        if small != first["size"]:
            points.append(warm_up(cfg, dataset, small, Path(tmp) / "proxy"))
    cost = CostModel.fit([(p["size"], p["images_per_second"]) for p in points])
    log.info("recipe warm-up: %s", ", ".join(f"{p['images_per_second']:.1f} images/s at {p['size']}px" for p in points))
    return points, cost


def proxy_overrides(cfg: Config, plan: ProxyPlan) -> dict[str, Any]:
    return {"data.image_size": plan.size, "data.subset": plan.subset, "train.epochs": plan.epochs,
            "train.patience": None, "train.warmup_epochs": min(cfg.train.warmup_epochs, 1.0),
            "train.checkpoint_every": plan.epochs, "tracking.enabled": False}


def run_proxy(cfg: Config, dataset: Path, run: RunDir, plan: ProxyPlan, clock: Clock, ends_at: float) -> dict[str, Any]:
    """The proxy sweep into ``RUN/proxy``; launches no trial after ``ends_at`` less one trial's estimate.
    Returns the trial table, the best values and the best proxy score."""
    import optuna

    from imgclf.experiments.sweep import SweepOptions, default_storage, direction_for, open_storage, run_sweep

    space = search_space(cfg)
    study = optuna.create_study(study_name=STUDY, storage=open_storage(default_storage(run.proxy)),
                                direction=direction_for(cfg.train.monitor), load_if_exists=True)
    study.enqueue_trial(own_values(cfg, space))  # trial 0: the config as it is, the yardstick
    table: list[dict[str, Any]] = []
    options = SweepOptions(
        trials=plan.trials, study=STUDY, out=run.proxy, seed=cfg.train.seed, proxy=proxy_overrides(cfg, plan),
        timeout=max(ends_at - clock.elapsed() - plan.trial_seconds, 0.0), on_trial=lambda t: table.append(_trial_row(t)),
    )
    result = run_sweep(dataset, cfg, space, options)
    return {"trials": table, "best_params": {k: _choice(v) for k, v in result.best_params.items()},
            "best_value": result.best_value, "best_trial": result.best_trial, "monitor": result.monitor}


def _trial_row(trial) -> dict[str, Any]:
    seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else None
    return {"trial": trial.number, "state": trial.state.name, "value": trial.value,
            "params": {k: _choice(v) for k, v in trial.params.items()}, "seconds": seconds,
            "train_seconds": trial.user_attrs.get("train_seconds"), "run_dir": trial.user_attrs.get("run_dir")}


def proxy_speed(table: list[dict[str, Any]]) -> float | None:
    """Mean images/s the finished proxy trials measured (their summary.json), or None."""
    speeds = []
    for row in table:
        run = RunDir(Path(row["run_dir"])) if row.get("run_dir") else None
        if run is not None and run.is_finished():
            speed = run.read_summary().get("mean_images_per_second")
            if isinstance(speed, (int, float)) and math.isfinite(speed) and speed > 0:
                speeds.append(float(speed))
    return sum(speeds) / len(speeds) if speeds else None


def final_config(cfg: Config, best: dict[str, Any], size: int, epochs: int) -> Config:
    from imgclf.train.refit import refit_config

    values = {k: list(v) if isinstance(v, tuple) else v for k, v in best.items()}
    return refit_config(with_overrides(cfg, {**values, "data.image_size": int(size)}), epochs)


def train_final(cfg: Config, dataset: Path, run: RunDir, tracking_uri: str | None, callbacks: Iterable[Any]) -> dict[str, Any]:
    from imgclf.experiments.tracking import tracking_session
    from imgclf.train.loop import fit

    with tracking_session(cfg, run.root, tracking_uri) as tracking:
        return fit(cfg, dataset, run.root, callbacks=[*callbacks, *tracking], preflight=False)


def run_recipe(cfg: Config, dataset: Path, out: Path, budget: float, *, started: float | None = None,
               tracking_uri: str | None = None, callbacks: Iterable[Any] = ()) -> dict[str, Any]:
    """Warm-up, proxy search and the final refit into ``out`` within ``budget`` seconds; return its summary."""
    clock, run = Clock(started), RunDir(Path(out))
    points, cost = measure(cfg, Path(dataset))
    cap, images = points[0]["size"], points[0]["images"]
    overhead = max(p["overhead_seconds"] for p in points)
    val_images = round(images * (cfg.data.val_fraction or 0.2))
    plan = plan_proxy(PROXY_SHARE * budget - clock.elapsed(), images - val_images, val_images, cost,
                      proxy_size(cap), overhead)
    if not cfg.data.val_fraction:  # the proxy needs a validation split even when the final model has none
        cfg_proxy = with_overrides(cfg, {"data.val_fraction": 0.2})
    else:
        cfg_proxy = cfg
    t_proxy = clock.elapsed()
    proxy = run_proxy(cfg_proxy, Path(dataset), run, plan, clock, PROXY_SHARE * budget)
    proxy_seconds = clock.elapsed() - t_proxy
    speed = proxy_speed(proxy["trials"])
    if speed:  # the proxy's own timing corrects the warm-up's model at small sizes
        cost = CostModel.fit([*((p["size"], p["images_per_second"]) for p in points), (plan.size, speed)])
    left = budget * (1 - REPORT_RESERVE) - clock.elapsed() - overhead
    size, epochs = plan_final(left, images, cost, cap, max(cfg.train.epochs, MIN_EPOCHS))
    final = final_config(cfg, proxy["best_params"], size, epochs)
    record = {
        "budget_seconds": budget, "warmup": points, "cost_model": {"a": cost.a, "b": cost.b, "formula": "seconds/image = a + b*size^2"},
        "proxy": {"size": plan.size, "subset": plan.subset, "epochs": plan.epochs, "trials_planned": plan.trials,
                  "trial_seconds_estimate": plan.trial_seconds, "share_seconds": PROXY_SHARE * budget,
                  "seconds": proxy_seconds, "monitor": proxy["monitor"], "best_trial": proxy["best_trial"],
                  "best_value": proxy["best_value"], "table": proxy["trials"], "images_per_second": speed},
        "chosen": {"params": proxy["best_params"], "image_size": size, "epochs": epochs, "images": images,
                   "seconds_planned": left, "refit_on_all_images": True},
        "estimate": {"val_accuracy": proxy["best_value"] if proxy["monitor"] == "val_accuracy" else None,
                     "note": "the proxy's validation score (subset, small size); the final model was trained on "
                             "every image and has no validation of its own"},
    }
    log.info("recipe: final model at %dpx for %d epoch(s) on all %d images (%.0fs left of %.0fs)", size, epochs, images, left, budget)
    atomic_write_json(run.recipe, {**record, "status": "training the final model"})
    summary = train_final(final, Path(dataset), run, tracking_uri, callbacks)
    return _finish(run, summary, record, clock)


def _finish(run: RunDir, summary: dict[str, Any], record: dict[str, Any], clock: Clock) -> dict[str, Any]:
    elapsed = clock.elapsed()
    record = {**record, "status": "done", "elapsed_seconds": elapsed,
              "within_budget": elapsed <= record["budget_seconds"] * 1.05}
    atomic_write_json(run.recipe, record)
    summary = {**summary, "recipe": {"budget_seconds": record["budget_seconds"], "elapsed_seconds": elapsed,
                                     "val_accuracy_estimate": record["estimate"]["val_accuracy"],
                                     "validation": record["estimate"]["note"]}}
    atomic_write_json(run.summary, summary)
    return summary
