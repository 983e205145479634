"""Classification heads that sit on a timm backbone built with ``num_classes=0`` (already pooled)."""

from __future__ import annotations

from torch import nn

from imgclf.config import HEADS


def build_head(kind: str, in_features: int, num_classes: int, hidden: int = 512, dropout: float = 0.2) -> nn.Sequential:
    """Build a head by name.

    - ``linear``: dropout → linear
    - ``mlp``: linear(hidden) → ReLU → dropout → linear
    - ``mlp_bn``: linear(hidden, no bias) → BatchNorm1d → ReLU → dropout → linear (the reviewed notebook's head)

    The backbone does the global pooling, so every head takes a ``(batch, in_features)`` tensor.

    >>> build_head("mlp_bn", 1280, 10, hidden=256)[1]
    BatchNorm1d(256, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    """
    if kind == "linear":
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_classes))
    if kind == "mlp":
        return nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, num_classes)
        )
    if kind == "mlp_bn":
        return nn.Sequential(
            nn.Linear(in_features, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
    raise ValueError(f"unknown head {kind!r}; choose one of {', '.join(HEADS)}")
