"""The adaptive-TTA threshold, chosen on validation logits.

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

from imgclf.config import TTAConfig
from imgclf.errors import DataError
from imgclf.eval.calibration import as_float64, logits_and_labels
from imgclf.infer.tta import adaptive_tta, fixed_tta


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


def choose_adaptive_threshold(
    view_logits: Any,
    labels: Any,
    cfg: TTAConfig,
    thresholds: Sequence[float] | None = None,
    tolerance: float = 0.005,
    temperature: float = 1.0,
) -> ThresholdChoice:
    """The cheapest threshold whose accuracy is within ``tolerance`` of full TTA.

    ``view_logits``: validation logits ``(N, V, C)`` with views in ``cfg.views`` order. Each
    candidate is replayed through ``adaptive_tta`` with ``cfg``'s other settings (budget
    ignored: it is sized for the test set). "Full TTA" is every image with
    ``min(max_views, V)`` views. Ties in cost go to the more accurate, then smaller threshold.
    Default candidates: 21 values from 0 to 1 (margin) or to ln C (entropy).
    """
    z = torch.as_tensor(np.asarray(as_float64(view_logits)))
    if z.ndim != 3:
        raise DataError(f"view logits must be (images, views, classes), got shape {tuple(z.shape)}")
    n, n_views, n_classes = z.shape
    _, y = logits_and_labels(z[:, 0], labels)
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
    key = (
        (lambda r: (r["mean_passes"], -r["accuracy"], r["threshold"]))
        if matched
        else (lambda r: (-r["accuracy"], r["mean_passes"], r["threshold"]))
    )
    best = min(pool, key=key)
    return ThresholdChoice(
        threshold=best["threshold"],
        accuracy=best["accuracy"],
        mean_passes=best["mean_passes"],
        full_accuracy=full_acc,
        full_passes=full.total_passes / n,
        matched=matched,
        table=table,
    )
