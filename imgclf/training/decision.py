"""The decision a run's metric reads, tuned on held-out predictions and kept only when it pays beyond its noise.

A thresholded multilabel metric (``f1_*``, ``f2_samples``, ``accuracy``) turns label probabilities into label
sets at per-label thresholds; regression ``qwk`` cuts values into grades at cut-points. The defaults are 0.5 per
label and the midpoints between grades. Tuned on the very predictions they are scored on, thresholds flatter
themselves, so the gain is measured cross-fitted (:func:`imgclf.eval.decisions.honest_tuned_score`: tune on one
part of the validation images, score on the other, over repeated splits), and the tuned decision is used only
when that gain exceeds one standard error; otherwise the default stands, and ``decisions.json`` says why.
Both scores go into the summary side by side, with the in-sample score that overstates the tuned one.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from imgclf.eval.decisions import honest_tuned_score, tune_cutpoints, tune_thresholds
from imgclf.io import atomic_write_json
from imgclf.run.rundir import RunDir
from imgclf.task import Task

log = logging.getLogger("imgclf")


def decision_kind(metric: Any, task: Task) -> str | None:
    """``thresholds``, ``cutpoints`` or None: what ``metric`` reads for ``task`` beyond the outputs."""
    if not getattr(metric, "thresholded", False) or task.multiclass:
        return None
    return "thresholds" if task.kind == "multilabel" else "cutpoints"


def tuner(metric: Any, task: Task):
    """The function that tunes ``metric``'s decision on (targets, outputs)."""
    if task.kind == "multilabel":
        beta = 2.0 if metric.name.startswith("f2") else 1.0
        return lambda y, p: tune_thresholds(np.asarray(y), np.asarray(p), beta=beta)
    return lambda y, v: tune_cutpoints(np.rint(np.asarray(y).ravel()).astype(int), np.asarray(v).ravel())


def decide(metric: Any, task: Task, targets: np.ndarray, outputs: np.ndarray, run: RunDir, seed: int = 0) -> dict:
    """Tune, measure and store the decision (``decisions.json``); the summary's record of it ({} when the metric
    reads none)."""
    kind = decision_kind(metric, task)
    if kind is None or len(targets) < 20:
        return {}
    result = honest_tuned_score(metric, targets, outputs, tuner(metric, task), folds=2, seed=seed)
    gain = result["tuned_cross_fitted"] - result["untuned"]
    gain = gain if metric.direction == "max" else -gain
    se = float(result["se"])
    used = bool(np.isfinite(gain) and np.isfinite(se) and gain > se)
    decision = np.asarray(result["decision"], dtype=float).tolist()
    record = {
        "kind": kind,
        "metric": metric.name,
        "used": used,
        "why": (
            f"tuned {kind} gain {gain:+.4f} (cross-fitted) beyond one SE {se:.4f}"
            if used
            else f"tuned {kind} gain {gain:+.4f} (cross-fitted) is within one SE {se:.4f}: the default stands"
        ),
        "untuned": _finite(result["untuned"]),
        "tuned_cross_fitted": _finite(result["tuned_cross_fitted"]),
        "tuned_in_sample": _finite(result["tuned_in_sample"]),
        "se": _finite(se),
        "values": decision,
        "names": list(task.names),
    }
    if kind == "cutpoints":
        grades = np.rint(np.asarray(targets).ravel()).astype(int)  # every integer between, as tune_cutpoints takes them
        record["grades"] = list(range(int(grades.min()), int(grades.max()) + 1))
    atomic_write_json(run.decisions, record)
    log.info("%s: %s", kind, record["why"])
    return record


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None
