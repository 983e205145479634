"""Accuracy against cost across runs, with the Pareto front marked.

A run is on the front when no other run is at least as accurate *and* at most as costly, and
strictly better in one of the two. Costs: training time (``summary.json: train_seconds``) and,
when the run was evaluated, inference latency (``eval/metrics.json: seconds / images``).

The compare and ablate pages embed :func:`pareto_section`; :func:`write_comparison_page` makes
a page of its own. Example::

    points = run_points([Path("runs/a"), Path("runs/b"), Path("runs/c")])
    pareto_front([p.train_seconds for p in points], [p.accuracy for p in points])   # e.g. [0, 2]
    html_fragment = pareto_section(points)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from matplotlib.figure import Figure

from imgclf.report import html as h
from imgclf.report.plots import fig_to_base64
from imgclf.run.rundir import RunDir

COSTS = {
    "train_seconds": "training time (s)",
    "latency_ms": "inference latency (ms / image)",
}
_MAX_LABELS = 20  # more point labels than this would cover the plot


def pareto_front(costs: Sequence[float], scores: Sequence[float]) -> list[int]:
    """Indices of the points no other point dominates (lower cost is better, higher score is better).

    Points with a missing (None/NaN) cost or score take no part. Identical points are all kept.
    Indices come back sorted by cost, then by score descending.

    >>> pareto_front([10, 20, 30, 15], [0.8, 0.9, 0.85, 0.7])
    [0, 1]
    """
    if len(costs) != len(scores):
        raise ValueError(f"costs and scores differ in length ({len(costs)} vs {len(scores)})")
    valid = [i for i in range(len(costs)) if _finite(costs[i]) and _finite(scores[i])]

    def dominated(i: int) -> bool:
        return any(
            costs[j] <= costs[i] and scores[j] >= scores[i] and (costs[j] < costs[i] or scores[j] > scores[i])
            for j in valid
        )

    front = [i for i in valid if not dominated(i)]
    return sorted(front, key=lambda i: (costs[i], -scores[i]))


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(float(value))


@dataclass
class RunPoint:
    """One run's accuracy and costs (``None`` where the run did not record them)."""

    name: str
    accuracy: float | None
    train_seconds: float | None
    latency_ms: float | None


def run_point(run_dir: Path, name: str | None = None) -> RunPoint:
    """Read one run directory: summary.json (accuracy, training time) and eval/metrics.json (latency)."""
    run = RunDir(Path(run_dir))
    run_dir = run.root
    summary = run.read_summary() if run.summary.is_file() else {}
    latency = None
    scored = run.read_eval_metrics()
    if scored:
        if scored.get("images") and scored.get("seconds") is not None:
            latency = 1000.0 * float(scored["seconds"]) / float(scored["images"])
    return RunPoint(name or run_dir.name, summary.get("val_accuracy"), summary.get("train_seconds"), latency)


def run_points(run_dirs: Sequence[Path], names: Sequence[str] | None = None) -> list[RunPoint]:
    return [run_point(d, names[i] if names else None) for i, d in enumerate(run_dirs)]


def pareto_figure(points: Sequence[RunPoint], cost: str = "train_seconds") -> Figure:
    """Scatter of accuracy against ``cost`` (a key of ``COSTS``); the front drawn as a red step line."""
    if cost not in COSTS:
        raise ValueError(f"unknown cost {cost!r}; choose one of {', '.join(COSTS)}")
    xs = [getattr(p, cost) for p in points]
    ys = [p.accuracy for p in points]
    front = pareto_front(xs, ys)
    shown = [i for i in range(len(points)) if _finite(xs[i]) and _finite(ys[i])]
    fig = Figure(figsize=(5.2, 3.8))
    ax = fig.add_subplot()
    others = [i for i in shown if i not in front]
    ax.scatter([xs[i] for i in others], [ys[i] for i in others], color="#9e9e9e", s=28, label="dominated")
    ax.scatter([xs[i] for i in front], [ys[i] for i in front], color="#d62728", s=40, zorder=3, label="Pareto front")
    if front:
        ax.step([xs[i] for i in front], [ys[i] for i in front], where="post", color="#d62728", linewidth=1.2, alpha=0.7)
    if len(shown) <= _MAX_LABELS:
        for i in shown:
            ax.annotate(points[i].name, (xs[i], ys[i]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if not shown:
        ax.text(
            0.5,
            0.5,
            f"no run recorded both validation accuracy and {COSTS[cost]}",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    ax.set_xlabel(COSTS[cost])
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    return fig


def pareto_section(points: Sequence[RunPoint], title: str = "Accuracy against cost") -> str:
    """An HTML section: one scatter per cost some run recorded, and the table with front membership."""
    parts = []
    on_front: dict[str, set[int]] = {}
    for cost, label in COSTS.items():
        xs = [getattr(p, cost) for p in points]
        if not any(_finite(x) for x in xs):
            continue
        plotted = [p for p, x in zip(points, xs) if _finite(x) and _finite(p.accuracy)]
        if plotted:
            on_front[cost] = set(pareto_front(xs, [p.accuracy for p in points]))
            parts.append(h.image(fig_to_base64(pareto_figure(points, cost)), f"validation accuracy against {label}"))
        if len(plotted) < sum(_finite(x) for x in xs):
            parts.append(h.paragraph(unplotted_note(points, cost), "note"))
    if not parts:
        return h.section(title, h.paragraph("No run recorded accuracy with training time or latency.", "note"))
    rows = [
        {
            "run": p.name,
            "val_accuracy": p.accuracy,
            "train_seconds": p.train_seconds,
            "latency_ms": p.latency_ms,
            **{f"front ({c})": ("yes" if i in front else "") for c, front in on_front.items()},
        }
        for i, p in enumerate(points)
    ]
    return h.section(
        title, *parts, h.table(rows, highlight={"val_accuracy": "max", "train_seconds": "min", "latency_ms": "min"})
    )


def unplotted_note(points: Sequence[RunPoint], cost: str) -> str:
    """One line naming the runs whose ``cost`` the table shows but the chart cannot place (no validation accuracy)."""
    left = [p for p in points if _finite(getattr(p, cost)) and not _finite(p.accuracy)]
    named = ", ".join(f"{p.name} ({getattr(p, cost):.1f})" for p in left)
    return (
        f"Not on the {COSTS[cost]} chart, for want of a validation accuracy to plot against: {named} "
        "(a --budget run's final model trains on every image and has no validation of its own)."
    )


def write_comparison_page(run_dirs: Sequence[Path], out: Path, title: str = "Run comparison") -> Path:
    """A self-contained page comparing ``run_dirs`` on accuracy, training time and latency."""
    points = run_points(run_dirs)
    return h.write_page(out, h.page(title, pareto_section(points), subtitle=f"{len(points)} runs"))
