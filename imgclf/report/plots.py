"""Plots for reports, drawn on plain ``matplotlib.figure.Figure`` objects (no pyplot, no global state).

Example::

    fig = learning_curves({"run-a": read_metrics(RunDir(a).metrics), "run-b": read_metrics(RunDir(b).metrics)})
    html_img = image(fig_to_base64(fig))        # imgclf.report.html.image
    save_png(fig, run / "learning_curves.png")
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from imgclf.io import atomic_write_bytes

CURVE_METRICS = ("train_loss", "val_loss", "val_accuracy")
_TITLES = {
    "train_loss": "training loss",
    "val_loss": "validation loss",
    "val_accuracy": "validation accuracy",
    "train_accuracy": "training accuracy",
    "lr": "learning rate",
    "epoch_seconds": "seconds per epoch",
    "images_per_second": "images per second",
}


def fig_to_png(fig: Figure, dpi: int = 100) -> bytes:
    FigureCanvasAgg(fig)  # attaches a canvas; Figure() alone cannot render
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def fig_to_base64(fig: Figure, dpi: int = 100) -> str:
    """The figure as a base64 PNG string, for ``<img src="data:image/png;base64,...">``."""
    return base64.b64encode(fig_to_png(fig, dpi)).decode("ascii")


def save_png(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    atomic_write_bytes(path, fig_to_png(fig, dpi))
    return Path(path)


def learning_curves(
    runs: Mapping[str, Sequence[Mapping[str, Any]]],
    metrics: Sequence[str] = CURVE_METRICS,
    *,
    width: float = 4.2,
    height: float = 3.2,
) -> Figure:
    """One panel per metric, one line per run over the epochs (rows as in metrics.csv).

    Metrics that no run recorded are left out; runs with no rows are skipped.
    """
    present = [m for m in metrics if any(_values(rows, m)[1] for rows in runs.values())]
    fig = Figure(figsize=(width * max(len(present), 1), height))
    if not present:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no epochs recorded", ha="center", va="center")
        ax.set_axis_off()
        return fig
    axes = [fig.add_subplot(1, len(present), i + 1) for i in range(len(present))]
    for name, rows in runs.items():
        for ax, metric in zip(axes, present):
            epochs, values = _values(rows, metric)
            if values:
                ax.plot(epochs, values, marker="o", markersize=3, linewidth=1.5, label=name)
    for ax, metric in zip(axes, present):
        ax.set_title(_TITLES.get(metric, metric))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if len(runs) <= 12:
        # One legend naming every run that drew a line in any panel: a run without validation (a --budget
        # run) has no val_loss line, so the last panel's own handles would leave it out.
        labelled = {label: handle for ax in axes for handle, label in zip(*ax.get_legend_handles_labels())}
        axes[-1].legend(list(labelled.values()), list(labelled), fontsize="small", loc="best")
    fig.tight_layout()
    return fig


def _values(rows: Sequence[Mapping[str, Any]], metric: str) -> tuple[list[float], list[float]]:
    epochs, values = [], []
    for row in rows:
        value = row.get(metric)
        if isinstance(value, (int, float)) and not math.isnan(float(value)):
            epochs.append(float(row.get("epoch", len(epochs) + 1)))
            values.append(float(value))
    return epochs, values
