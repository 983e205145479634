"""Calibration: temperature scaling and calibration error.

Fit ``T`` on validation logits, then divide test logits by it (``tta.*(temperature=T)``)::

    T = fit_temperature(val_logits, val_labels)
    expected_calibration_error(softmax(val_logits / T), val_labels)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from imgclf.errors import DataError

T_MIN, T_MAX = 0.05, 20.0


def fit_temperature(logits: Any, labels: Any) -> float:
    """The temperature ``T`` in [0.05, 20] that minimises the NLL of ``softmax(logits / T)``.

    The NLL is convex in ``1/T``, so it has one minimum in ``log T``: a coarse grid finds its
    bracket and a bounded Brent search refines it (no learning rate, no divergence).

    Example::

        fit_temperature(torch.randn(500, 10) * 3, torch.randint(0, 10, (500,)))  # ≈ large T: noise
    """
    z, y = logits_and_labels(logits, labels)

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
    p, y = probs_and_labels(probs, labels)
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


# ---------------------------------------------------------------- input checks


def as_float64(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def check_labels(labels: Any, n: int, n_classes: int) -> np.ndarray:
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"labels must be a vector of {n} class indices, got shape {y.shape}")
    if n and (y.min() < 0 or y.max() >= n_classes):
        raise DataError(f"labels must lie in 0..{n_classes - 1}")
    return y.astype(np.int64)


def logits_and_labels(logits: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    z = as_float64(logits)
    if z.ndim != 2 or z.shape[0] == 0:
        raise DataError(f"logits must be a non-empty (samples, classes) array, got shape {z.shape}")
    if not np.isfinite(z).all():
        raise DataError("logits contain NaN or infinite values")
    y = check_labels(labels, z.shape[0], z.shape[1])
    return torch.from_numpy(z), torch.from_numpy(y)


def probs_and_labels(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    p = as_float64(probs)
    if p.ndim != 2:
        raise DataError(f"probabilities must be (samples, classes), got shape {p.shape}")
    return p, check_labels(labels, p.shape[0], p.shape[1])
