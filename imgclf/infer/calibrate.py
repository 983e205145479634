"""Calibration: temperature scaling, calibration error, and the adaptive-TTA threshold.

Fit ``T`` on validation logits, then divide test logits by it (``tta.*(temperature=T)``)::

    T = fit_temperature(val_logits, val_labels)
    expected_calibration_error(softmax(val_logits / T), val_labels)

``choose_adaptive_threshold`` replays adaptive TTA on precomputed validation logits of every
view (it calls ``adaptive_tta`` itself with a look-up ``forward``), so the threshold it
picks behaves exactly as it will at test time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from imgclf.config import TTAConfig
from imgclf.errors import DataError
from imgclf.infer.tta import adaptive_tta, fixed_tta

T_MIN, T_MAX = 0.05, 20.0


def fit_temperature(logits: Any, labels: Any) -> float:
    """The temperature ``T`` in [0.05, 20] that minimises the NLL of ``softmax(logits / T)``.

    The NLL is convex in ``1/T``, so it has one minimum in ``log T``: a coarse grid finds its
    bracket and a bounded Brent search refines it (no learning rate, no divergence).

    Example::

        fit_temperature(torch.randn(500, 10) * 3, torch.randint(0, 10, (500,)))  # ≈ large T: noise
    """
    z, y = _logits_labels(logits, labels)

    def nll(log_t: float) -> float:
        return float(torch.nn.functional.cross_entropy(z / math.exp(log_t), y))

    grid = np.linspace(math.log(T_MIN), math.log(T_MAX), 41)
    values = [nll(g) for g in grid]
    best = int(np.argmin(values))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    found = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
    log_t = float(found.x) if found.success and found.fun <= values[best] else float(grid[best])
    return float(min(max(math.exp(log_t), T_MIN), T_MAX))


def reliability_curve(probs: Any, labels: Any, bins: int = 15) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width confidence bin: mean confidence, accuracy (NaN where empty), count.

    Bin ``b`` holds confidences in ``(b/bins, (b+1)/bins]`` (the first also holds 0).
    """
    p, y = _probs_labels(probs, labels)
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    which = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        bin_conf = np.bincount(which, weights=conf, minlength=bins) / count
        bin_acc = np.bincount(which, weights=correct, minlength=bins) / count
    return bin_conf, bin_acc, count


def expected_calibration_error(probs: Any, labels: Any, bins: int = 15) -> float:
    """Σ over bins of (share of samples) × |accuracy − mean confidence|; 0 is perfect."""
    bin_conf, bin_acc, count = reliability_curve(probs, labels, bins)
    used = count > 0
    if not used.any():
        return 0.0
    weights = count[used] / count.sum()
    return float((weights * np.abs(bin_acc[used] - bin_conf[used])).sum())


# ---------------------------------------------------------------- adaptive threshold


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    accuracy: float
    mean_passes: float  # forward passes per image at this threshold
    full_accuracy: float  # every image with all max_views views
    full_passes: float
    matched: bool  # False: no candidate came within tolerance; the most accurate is returned
    table: list[dict[str, float]] = field(default_factory=list)  # one row per candidate threshold


class _Lookup:
    """A "view" that returns (image index, view index); ``_lookup_forward`` turns it into logits."""

    def __init__(self, view: int):
        self.view = view

    def __call__(self, index: int) -> torch.Tensor:
        return torch.tensor([index, self.view])


def _lookup_forward(view_logits: torch.Tensor):
    def forward(batch: torch.Tensor) -> torch.Tensor:
        return view_logits[batch[:, 0], batch[:, 1]]

    return forward


def choose_adaptive_threshold(view_logits: Any, labels: Any, cfg: TTAConfig, thresholds: Sequence[float] | None = None,
                              tolerance: float = 0.005, temperature: float = 1.0) -> ThresholdChoice:
    """The cheapest threshold whose accuracy is within ``tolerance`` of full TTA.

    ``view_logits``: validation logits ``(N, V, C)`` with views in ``cfg.views`` order. Each
    candidate is replayed through ``adaptive_tta`` with ``cfg``'s other settings (budget
    ignored: it is sized for the test set). "Full TTA" is every image with
    ``min(max_views, V)`` views. Ties in cost go to the more accurate, then smaller threshold.
    Default candidates: 21 values from 0 to 1 (margin) or to ln C (entropy).
    """
    z = torch.as_tensor(np.asarray(_f64(view_logits)))
    if z.ndim != 3:
        raise DataError(f"view logits must be (images, views, classes), got shape {tuple(z.shape)}")
    n, n_views, n_classes = z.shape
    _, y = _logits_labels(z[:, 0], labels)
    y_np = y.numpy()
    views = [_Lookup(v) for v in range(n_views)]
    images = range(n)
    forward = _lookup_forward(z)
    max_views = min(cfg.max_views, n_views)
    batch = max(n, 1)  # a look-up: batching only changes the number of Python calls

    full = fixed_tta(forward, images, views, max_views, batch, cfg.aggregate, temperature)
    full_acc = float((full.predictions == y_np).mean())
    if thresholds is None:
        top = 1.0 if cfg.uncertainty == "margin" else math.log(max(n_classes, 2))
        thresholds = np.linspace(0.0, top, 21).tolist()

    table = []
    for t in sorted(float(t) for t in thresholds):
        trial = cfg.model_copy(update={"threshold": t, "budget": None})
        res = adaptive_tta(forward, images, views, trial, batch, temperature)
        acc = float((res.predictions == y_np).mean())
        table.append({"threshold": t, "accuracy": acc, "mean_passes": res.total_passes / n})
    if not table:
        raise DataError("no candidate thresholds given")
    ok = [row for row in table if row["accuracy"] >= full_acc - tolerance]
    pool, matched = (ok, True) if ok else (table, False)
    key = (lambda r: (r["mean_passes"], -r["accuracy"], r["threshold"])) if matched else (
        lambda r: (-r["accuracy"], r["mean_passes"], r["threshold"]))
    best = min(pool, key=key)
    return ThresholdChoice(threshold=best["threshold"], accuracy=best["accuracy"], mean_passes=best["mean_passes"],
                           full_accuracy=full_acc, full_passes=full.total_passes / n, matched=matched, table=table)


# ---------------------------------------------------------------- input checks


def _f64(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _labels(labels: Any, n: int, n_classes: int) -> np.ndarray:
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"labels must be a vector of {n} class indices, got shape {y.shape}")
    if n and (y.min() < 0 or y.max() >= n_classes):
        raise DataError(f"labels must lie in 0..{n_classes - 1}")
    return y.astype(np.int64)


def _logits_labels(logits: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    z = _f64(logits)
    if z.ndim != 2 or z.shape[0] == 0:
        raise DataError(f"logits must be a non-empty (samples, classes) array, got shape {z.shape}")
    if not np.isfinite(z).all():
        raise DataError("logits contain NaN or infinite values")
    y = _labels(labels, z.shape[0], z.shape[1])
    return torch.from_numpy(z), torch.from_numpy(y)


def _probs_labels(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    p = _f64(probs)
    if p.ndim != 2:
        raise DataError(f"probabilities must be (samples, classes), got shape {p.shape}")
    return p, _labels(labels, p.shape[0], p.shape[1])
