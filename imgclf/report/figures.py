"""Figures of one run's validation results: per-class precision/recall and reliability.

(:func:`confusion_figure` is shared with ``evaluate``.)
Plain ``matplotlib.figure.Figure`` objects (no pyplot state); turn them into page images with
``imgclf.report.plots.fig_to_base64``. Example::

    fig = per_class_figure(scores.per_class)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def per_class_figure(per_class: pd.DataFrame) -> Figure:
    """Horizontal bars of precision and recall per class (columns ``class, precision, recall``)."""
    frame = per_class.iloc[::-1]
    fig = Figure(figsize=(7.0, max(2.5, 0.28 * len(frame) + 1.2)))
    ax = fig.add_subplot()
    y = np.arange(len(frame))
    ax.barh(y + 0.2, frame["precision"], height=0.4, color="#4c78a8", label="precision")
    ax.barh(y - 0.2, frame["recall"], height=0.4, color="#f58518", label="recall")
    ax.set_yticks(y, frame["class"].astype(str), fontsize=8 if len(frame) <= 40 else 5)
    ax.set_xlim(0, 1.0)
    ax.set_xlabel("validation precision / recall")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(
        loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize="small", frameon=False
    )  # never over a bar
    fig.tight_layout()
    return fig


def reliability_figure(series: dict[str, tuple[Sequence[float], Sequence[float]]]) -> Figure:
    """Reliability diagram: accuracy against mean confidence per bin, one line per series.

    ``series`` maps a name (e.g. ``"before"``, ``"after temperature"``) to ``(confidence, accuracy)``
    lists; empty bins (NaN) are left out. The diagonal is perfect calibration.
    """
    fig = Figure(figsize=(4.6, 4.2))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="#999", linewidth=1, label="perfect")
    for name, (conf, acc) in series.items():
        c, a = np.asarray(conf, dtype=float), np.asarray(acc, dtype=float)
        ok = ~(np.isnan(c) | np.isnan(a))
        ax.plot(c[ok], a[ok], marker="o", markersize=4, linewidth=1.5, label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean confidence")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    return fig


_MAX_ANNOTATED = 30  # above this many classes, cell counts would be unreadable


def confusion_figure(confusion: np.ndarray, classes: Sequence[str]) -> Figure:
    """Rows = true class, columns = predicted; counts written in the cells of small matrices."""
    n = len(classes)
    side = min(3.0 + 0.3 * n, 14.0)
    fig = Figure(figsize=(side + 1.0, side))
    ax = fig.add_subplot()
    shown = ax.imshow(confusion, cmap="Blues", interpolation="nearest")
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    fontsize = 8 if n <= _MAX_ANNOTATED else max(3, int(240 / n))
    ax.set_xticks(range(n), [str(c) for c in classes], rotation=45, ha="right", fontsize=fontsize)
    ax.set_yticks(range(n), [str(c) for c in classes], fontsize=fontsize)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if n <= _MAX_ANNOTATED:
        top = confusion.max() if confusion.size else 0
        for i in range(n):
            for j in range(n):
                if confusion[i, j]:
                    ax.text(
                        j,
                        i,
                        int(confusion[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if confusion[i, j] > top / 2 else "black",
                    )
    fig.tight_layout()
    return fig
