"""The competition metric: one small registry every stage scores with (``train.metric``).

Each metric knows the task kinds it serves (``multiclass``, ``multilabel``, ``regression``), its
direction (``max`` or ``min``) and what it reads (hard ``labels`` — the argmax class —, ``probs``,
or regression ``values``); all are scikit-learn's implementations, computed from labels and
either logits or probabilities::

    m = get_metric("log_loss")
    m.direction                           # "min"
    m.score(labels, logits=val_logits)    # natural-log cross-entropy of softmax(logits)
    m.better(0.31, 0.35)                  # True

    f2 = get_metric("f2_samples", task="multilabel")     # targets (n, K) of 0/1, sigmoid probabilities
    f2.score(targets, logits=val_logits, decision=thresholds)   # thresholds (K,); None = 0.5 each
    get_metric("qwk", task="regression").score(grades, values, decision=cuts)   # cuts: eval.decisions

A name two tasks share (``accuracy``, ``qwk``) is one implementation per task: the task picks it.
Thresholded metrics (``Metric.thresholded``) read a decision — per-label thresholds, or cut-points
for regression ``qwk`` — tuned by :mod:`imgclf.eval.decisions`; the others ignore it.

Undefined values (ROC AUC with one class present, kappa with one label) give NaN and a logged
warning, never an exception: ROC AUC first falls back to the macro mean over the classes that
have both positives and negatives in ``labels``.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit, softmax
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    cohen_kappa_score,
    f1_score,
    fbeta_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
    top_k_accuracy_score,
)

from imgclf.errors import ConfigError, DataError
from imgclf.eval.decisions import apply_cutpoints, apply_thresholds, cut_grades, qwk

TASKS: tuple[str, ...] = ("multiclass", "multilabel", "regression")

log = logging.getLogger("imgclf")


def _accuracy(y: np.ndarray, p: np.ndarray, k: int) -> float:
    return float(accuracy_score(y, p.argmax(1)))


def _log_loss(y: np.ndarray, p: np.ndarray, k: int) -> float:
    return float(log_loss(y, p, labels=list(range(p.shape[1]))))


def _macro_f1(y: np.ndarray, p: np.ndarray, k: int) -> float:
    return float(f1_score(y, p.argmax(1), labels=list(range(p.shape[1])), average="macro", zero_division=0))


def _qwk(y: np.ndarray, p: np.ndarray, k: int) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined → NaN, reported below
        value = float(cohen_kappa_score(y, p.argmax(1), labels=list(range(p.shape[1])), weights="quadratic"))
    if not math.isfinite(value):
        log.warning(
            "quadratic weighted kappa is undefined here (labels and predictions hold a single class); recorded as NaN"
        )
    return value


def _roc_auc(y: np.ndarray, p: np.ndarray, k: int) -> float:
    n_classes = p.shape[1]
    present = [c for c in range(n_classes) if 0 < (y == c).sum() < len(y)]
    if n_classes == 2:
        present = [1] if len(present) == 2 else []
    if not present:
        log.warning("ROC AUC is undefined: the labels hold a single class; recorded as NaN")
        return float("nan")
    if n_classes == 2:
        return float(roc_auc_score(y, p[:, 1]))
    if len(present) < n_classes:
        log.warning(
            "ROC AUC: only %d of %d classes occur in these labels; the macro mean is over those %d",
            len(present),
            n_classes,
            len(present),
        )
        return float(np.mean([roc_auc_score(y == c, p[:, c]) for c in present]))
    return float(roc_auc_score(y, p, multi_class="ovr", average="macro", labels=list(range(n_classes))))


def _top_k(y: np.ndarray, p: np.ndarray, k: int) -> float:
    n_classes = p.shape[1]
    if k >= n_classes:
        log.warning(
            "top-%d accuracy with %d classes is always 1; choose train.metric_k below %d", k, n_classes, n_classes
        )
        return 1.0
    if n_classes == 2:  # k == 1: scikit-learn takes the positive class's score in the binary case
        return float(top_k_accuracy_score(y, p[:, 1], k=1, labels=[0, 1]))
    return float(top_k_accuracy_score(y, p, k=k, labels=list(range(n_classes))))


# Multilabel: y (n, K) of 0/1, p (n, K) sigmoid probabilities, t (K,) thresholds (None = 0.5 each).
def _f1(average: str) -> Callable[[np.ndarray, np.ndarray, Any], float]:
    def fn(y: np.ndarray, p: np.ndarray, t: Any) -> float:
        return float(f1_score(y, apply_thresholds(p, t), average=average, zero_division=0))

    return fn


def _f2_samples(y: np.ndarray, p: np.ndarray, t: Any) -> float:
    return float(fbeta_score(y, apply_thresholds(p, t), beta=2, average="samples", zero_division=0))


def _subset_accuracy(y: np.ndarray, p: np.ndarray, t: Any) -> float:
    return float(accuracy_score(y, apply_thresholds(p, t)))


def _mean_auc(y: np.ndarray, p: np.ndarray, t: Any) -> float:
    positives = y.sum(0)
    keep = (positives > 0) & (positives < len(y))
    if not keep.any():
        log.warning("mean ROC AUC is undefined: no label has both positives and negatives here; recorded as NaN")
        return float("nan")
    return float(np.mean([roc_auc_score(y[:, j], p[:, j]) for j in np.flatnonzero(keep)]))


def _map(y: np.ndarray, p: np.ndarray, t: Any) -> float:
    keep = y.sum(0) > 0
    if not keep.any():
        log.warning("mean average precision is undefined: no label has a positive here; recorded as NaN")
        return float("nan")
    return float(np.mean([average_precision_score(y[:, j], p[:, j]) for j in np.flatnonzero(keep)]))


def _bce(y: np.ndarray, p: np.ndarray, t: Any) -> float:
    q = np.clip(p, 1e-15, 1 - 1e-15)  # each label's log loss averages over rows; their mean is the mean of all
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log1p(-q)))


# Regression: y (n,) targets, v (n,) values on the targets' scale, cuts (ascending) or None.
def _rmse(y: np.ndarray, v: np.ndarray, cuts: Any) -> float:
    return float(np.sqrt(mean_squared_error(y, v)))


def _mae(y: np.ndarray, v: np.ndarray, cuts: Any) -> float:
    return float(mean_absolute_error(y, v))


def _r2(y: np.ndarray, v: np.ndarray, cuts: Any) -> float:
    if len(y) < 2:
        log.warning("R² is undefined for fewer than two rows; recorded as NaN")
        return float("nan")
    return float(r2_score(y, v))


def _regression_qwk(y: np.ndarray, v: np.ndarray, cuts: Any) -> float:
    grades = np.rint(y)
    if not np.allclose(y, grades):
        raise DataError(
            "metric qwk reads integer grades, and these regression targets hold non-integers; choose rmse, mae or r2"
        )
    if cuts is None:  # round to the nearest grade, within the targets' observed range
        pred = np.clip(np.rint(v), grades.min(), grades.max())
    else:
        pred = apply_cutpoints(v, cuts, cut_grades(cuts))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined → NaN, reported below
        value = qwk(grades.astype(np.int64), pred.astype(np.int64))
    if not math.isfinite(value):
        log.warning("quadratic weighted kappa is undefined here (targets and grades hold a single value); NaN")
    return value


@dataclass(frozen=True)
class _Spec:
    direction: str  # "max" | "min"
    needs: str  # "labels" (argmax class) | "probs" | "values" (regression outputs)
    fn: Callable[[np.ndarray, np.ndarray, Any], float]  # (y, p, k) multiclass; (y, p, decision) otherwise
    description: str
    thresholded: bool = False


@dataclass(frozen=True)
class Metric:
    """One registry entry for one task, with ``k`` bound (it matters to ``top_k`` only)."""

    name: str
    direction: str  # "max" | "min"
    needs: str  # "labels" (argmax class) | "probs" | "values"
    fn: Callable[[np.ndarray, np.ndarray, Any], float]
    description: str
    k: int = 5
    task: str = "multiclass"
    thresholded: bool = False  # reads a decision: per-label thresholds, or cut-points for regression qwk

    @property
    def column(self) -> str:
        """The metrics.csv / summary.json key: ``val_<name>``."""
        return f"val_{self.name}"

    @property
    def label(self) -> str:
        return f"top-{self.k} accuracy" if self.name == "top_k" else self.name

    def score(self, labels: Any, probs: Any = None, *, logits: Any = None, decision: Any = None) -> float:
        """The metric of these labels and outputs; NaN for no rows.

        multiclass: ``probs`` (rows renormalised) or ``softmax(logits)``; ``decision`` is ignored.
        multilabel: ``labels`` (n, K) of 0/1, ``probs`` (n, K) or ``sigmoid(logits)``; ``decision`` the
        thresholds (K,) (None: 0.5 each), read by thresholded metrics only.
        regression: ``labels`` and ``probs`` = the values, (n,) or (n, 1); ``decision`` the cut-points of ``qwk``
        (None: round and clip to the targets' range).
        """
        if self.task == "multilabel":
            return self._score_multilabel(labels, probs, logits, decision)
        if self.task == "regression":
            return self._score_regression(labels, probs, decision)
        y = np.asarray(labels, dtype=np.int64)
        if len(y) == 0:
            return float("nan")  # no validation images (a run on every image)
        if logits is not None:
            p = softmax(np.asarray(logits, dtype=np.float64), axis=1)
        else:
            p = np.clip(np.asarray(probs, dtype=np.float64), 1e-15, None)
            p = p / p.sum(1, keepdims=True)  # probabilities read back from CSV are rounded
        if p.ndim != 2 or len(y) != p.shape[0]:
            raise ValueError(
                f"{self.name}: expected (samples, classes) scores for {len(y)} labels, got shape {p.shape}"
            )
        return self.fn(y, p, self.k)

    def _score_multilabel(self, labels: Any, probs: Any, logits: Any, decision: Any) -> float:
        y = np.asarray(labels, dtype=np.float64)
        if logits is not None:
            p = expit(np.asarray(logits, dtype=np.float64))
        else:
            p = np.clip(np.asarray(probs, dtype=np.float64), 0.0, 1.0)
        if y.ndim == 1:
            y, p = y[:, None], p.reshape(len(p), -1)
        if p.ndim != 2 or y.shape != p.shape:
            raise ValueError(f"{self.name}: expected (samples, labels) probabilities of shape {y.shape}, got {p.shape}")
        if len(y) == 0:
            return float("nan")
        if not np.isin(y, (0.0, 1.0)).all():
            raise ValueError(f"{self.name}: multilabel targets must be 0 or 1")
        return self.fn(y.astype(np.int64), p, decision if self.thresholded else None)

    def _score_regression(self, labels: Any, values: Any, decision: Any) -> float:
        y = np.asarray(labels, dtype=np.float64)
        v = np.asarray(values, dtype=np.float64)
        if y.ndim > 2 or v.ndim > 2 or y.size != len(y) or v.size != len(v) or y.size != v.size:
            raise ValueError(f"{self.name}: expected one value per target, (n,) or (n, 1); got {v.shape}, {y.shape}")
        if y.size == 0:
            return float("nan")
        return self.fn(y.ravel(), v.ravel(), decision if self.thresholded else None)

    def better(self, a: float, b: float) -> bool:
        """Whether ``a`` is strictly better than ``b`` (NaN is never better; anything beats NaN)."""
        if not math.isfinite(a):
            return False
        if not math.isfinite(b):
            return True
        return a > b if self.direction == "max" else a < b


_REGISTRY: dict[str, dict[str, _Spec]] = {
    "multiclass": {
        "accuracy": _Spec("max", "labels", _accuracy, "share of images whose top class is right"),
        "log_loss": _Spec("min", "probs", _log_loss, "cross-entropy of the probabilities (natural log)"),
        "macro_f1": _Spec("max", "labels", _macro_f1, "F1 averaged over classes, each class equal"),
        "qwk": _Spec(
            "max", "labels", _qwk, "quadratic weighted Cohen's kappa (ordered classes, in classes.json order)"
        ),
        "roc_auc": _Spec("max", "probs", _roc_auc, "ROC AUC, one-vs-rest, macro over classes"),
        "top_k": _Spec(
            "max",
            "probs",
            _top_k,
            "share of images whose label is among the k most probable classes (train.metric_k)",
        ),
    },
    "multilabel": {
        "f1_micro": _Spec("max", "probs", _f1("micro"), "F1 over every (image, label) decision", True),
        "f1_macro": _Spec("max", "probs", _f1("macro"), "F1 per label, averaged with each label equal", True),
        "f1_samples": _Spec("max", "probs", _f1("samples"), "F1 per image, averaged over images", True),
        "f2_samples": _Spec("max", "probs", _f2_samples, "F2 per image, averaged over images (Planet)", True),
        "exact_match": _Spec(
            "max", "probs", _subset_accuracy, "subset accuracy: share of images with every label right", True
        ),
        "mean_auc": _Spec("max", "probs", _mean_auc, "ROC AUC per label, mean over labels with both classes present"),
        "map": _Spec("max", "probs", _map, "average precision per label, mean over labels with a positive"),
        "bce": _Spec("min", "probs", _bce, "binary cross-entropy per label (natural log), mean over labels"),
    },
    "regression": {
        "rmse": _Spec("min", "values", _rmse, "root mean squared error"),
        "mae": _Spec("min", "values", _mae, "mean absolute error"),
        "r2": _Spec("max", "values", _r2, "coefficient of determination R²"),
        "qwk": _Spec(
            "max",
            "values",
            _regression_qwk,
            "quadratic weighted kappa of integer targets vs values cut into grades (rounded, or at cut-points)",
            True,
        ),
    },
}
METRIC_NAMES: tuple[str, ...] = tuple(dict.fromkeys(name for task in TASKS for name in _REGISTRY[task]))
_DEFAULTS = {"multiclass": "accuracy", "multilabel": "map", "regression": "rmse"}


def _check_task(task: str) -> None:
    if task not in _REGISTRY:
        raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")


def metric_names(task: str = "multiclass") -> tuple[str, ...]:
    """The metric names ``task`` accepts, in registry order."""
    _check_task(task)
    return tuple(_REGISTRY[task])


def default_metric(task: str = "multiclass") -> str:
    """The metric a task scores with when none is chosen: accuracy, map (multilabel), rmse (regression)."""
    _check_task(task)
    return _DEFAULTS[task]


def get_metric(name: str, k: int = 5, task: str = "multiclass") -> Metric:
    """The registry entry ``name`` for ``task``; an unknown name, or one of another task, is a one-line
    ConfigError (with a suggestion, or the names the task accepts)."""
    _check_task(task)
    if name not in METRIC_NAMES:
        import difflib

        close = difflib.get_close_matches(name, METRIC_NAMES, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown metric {name!r}{hint}; choose one of {', '.join(METRIC_NAMES)}")
    if name not in _REGISTRY[task]:
        raise ConfigError(
            f"metric {name!r} does not score {task} targets; for {task} choose one of {', '.join(_REGISTRY[task])}"
        )
    spec = _REGISTRY[task][name]
    return Metric(name, spec.direction, spec.needs, spec.fn, spec.description, k, task, spec.thresholded)


def monitor_direction(monitor: str, k: int = 5, task: str = "multiclass") -> str:
    """``max`` or ``min`` for an early-stopping key: ``val_loss`` or ``val_<metric>``."""
    if monitor == "val_loss":
        return "min"
    return get_metric(monitor.removeprefix("val_"), k, task).direction


def metric_of(train: Any, task: str = "multiclass") -> Metric:
    """The metric a ``TrainConfig`` (``train.metric``, ``train.metric_k``) names, for ``task``."""
    return get_metric(train.metric, train.metric_k, task)
