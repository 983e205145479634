"""The competition metric: one small registry every stage scores with (``train.metric``).

Each metric knows its direction (``max`` or ``min``) and what it reads (hard ``labels`` — the
argmax class — or ``probs``); all are scikit-learn's implementations, computed from labels and
either logits or probabilities::

    m = get_metric("log_loss")
    m.direction                           # "min"
    m.score(labels, logits=val_logits)    # natural-log cross-entropy of softmax(logits)
    m.better(0.31, 0.35)                  # True

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
from scipy.special import softmax
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    f1_score,
    log_loss,
    roc_auc_score,
    top_k_accuracy_score,
)

from imgclf.errors import ConfigError

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


@dataclass(frozen=True)
class Metric:
    """One registry entry, with ``k`` bound (it matters to ``top_k`` only)."""

    name: str
    direction: str  # "max" | "min"
    needs: str  # "labels" (argmax class) | "probs"
    fn: Callable[[np.ndarray, np.ndarray, int], float]
    description: str
    k: int = 5

    @property
    def column(self) -> str:
        """The metrics.csv / summary.json key: ``val_<name>``."""
        return f"val_{self.name}"

    @property
    def label(self) -> str:
        return f"top-{self.k} accuracy" if self.name == "top_k" else self.name

    def score(self, labels: Any, probs: Any = None, *, logits: Any = None) -> float:
        """The metric of ``probs`` (rows renormalised) or of ``softmax(logits)``; NaN for no rows."""
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

    def better(self, a: float, b: float) -> bool:
        """Whether ``a`` is strictly better than ``b`` (NaN is never better; anything beats NaN)."""
        if not math.isfinite(a):
            return False
        if not math.isfinite(b):
            return True
        return a > b if self.direction == "max" else a < b


_REGISTRY: dict[str, tuple[str, str, Callable[[np.ndarray, np.ndarray, int], float], str]] = {
    "accuracy": ("max", "labels", _accuracy, "share of images whose top class is right"),
    "log_loss": ("min", "probs", _log_loss, "cross-entropy of the probabilities (natural log)"),
    "macro_f1": ("max", "labels", _macro_f1, "F1 averaged over classes, each class equal"),
    "qwk": ("max", "labels", _qwk, "quadratic weighted Cohen's kappa (ordered classes, in classes.json order)"),
    "roc_auc": ("max", "probs", _roc_auc, "ROC AUC, one-vs-rest, macro over classes"),
    "top_k": (
        "max",
        "probs",
        _top_k,
        "share of images whose label is among the k most probable classes (train.metric_k)",
    ),
}
METRIC_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def get_metric(name: str, k: int = 5) -> Metric:
    """The registry entry ``name``; an unknown name is a one-line ConfigError with a suggestion."""
    if name not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(name, METRIC_NAMES, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown metric {name!r}{hint}; choose one of {', '.join(METRIC_NAMES)}")
    direction, needs, fn, description = _REGISTRY[name]
    return Metric(name, direction, needs, fn, description, k)


def monitor_direction(monitor: str, k: int = 5) -> str:
    """``max`` or ``min`` for an early-stopping key: ``val_loss`` or ``val_<metric>``."""
    if monitor == "val_loss":
        return "min"
    return get_metric(monitor.removeprefix("val_"), k).direction


def metric_of(train: Any) -> Metric:
    """The metric a ``TrainConfig`` (``train.metric``, ``train.metric_k``) names."""
    return get_metric(train.metric, train.metric_k)
