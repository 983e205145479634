"""The ablation table: one row per cell, read from the run directories alone.

Per cell: validation accuracy over seeds (mean, sample std, 95% Student-t interval), mean
training time, trainable parameters, and McNemar's test against the baseline cell on per-image
correctness (``val_predictions.csv``), pooled across seeds — seed k of the cell is paired with
seed k of the baseline, on the same validation images. Written as Markdown, CSV and one
self-contained HTML page, with every cell's learning curve (mean over seeds) on one plot.

Example::

    rows = collect_results(cells, seeds=[0, 1], baseline=0, runs_root=Path("ablations/heads/runs"))
    write_tables(rows, Path("ablations/heads"), title="heads", axes=["model.head"])
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator
from imgclf.errors import RunDirError
from imgclf.experiments.ablate import Cell, Plan, short_names
from imgclf.experiments.stats import mcnemar_pooled, mean_std_ci
from imgclf.io import atomic_write_bytes, atomic_write_text
from imgclf.report.html import image, page, paragraph, section, table
from imgclf.report.plots import fig_to_png, learning_curves
from imgclf.run.rundir import RunDir, read_metrics, read_run_csv

CSV_COLUMNS = [
    "cell",
    "baseline",
    "seeds",
    "val_accuracy_mean",
    "val_accuracy_std",
    "ci95_low",
    "ci95_high",
    "train_seconds_mean",
    "trainable_params",
    "mcnemar_baseline_only_correct",
    "mcnemar_cell_only_correct",
    "mcnemar_p_value",
    "mcnemar_method",
    "mcnemar_pairs",
]


@dataclass
class CellResult:
    cell: Cell
    is_baseline: bool
    seeds: list[int]  # the seeds with a finished run
    accuracies: list[float]
    mean: float
    std: float
    ci_low: float
    ci_high: float
    train_seconds: float
    trainable_params: int | None
    val_images: int | None
    mcnemar: dict | None  # None for the baseline row or without paired seeds
    curve: list[tuple[int, float]] = field(default_factory=list)  # (epoch, mean val_accuracy)


def collect_results(cells: list[Cell], seeds: list[int], baseline: int, runs_root: Path) -> list[CellResult]:
    """Read every finished run under ``runs_root/<slug>/seed<k>`` into one result per cell."""
    runs_root = Path(runs_root)
    finished = {
        c.slug: {
            s: runs_root / c.slug / f"seed{s}" for s in seeds if RunDir(runs_root / c.slug / f"seed{s}").is_finished()
        }
        for c in cells
    }
    base_runs = finished[cells[baseline].slug]
    results = []
    for i, cell in enumerate(cells):
        runs = finished[cell.slug]
        summaries = [RunDir(d).read_summary() for d in runs.values()]
        accs = [float(s["val_accuracy"]) for s in summaries]
        mean, std, lo, hi = mean_std_ci(accs) if accs else (math.nan,) * 4
        test = None
        paired = [s for s in runs if s in base_runs]
        if i != baseline and paired:
            test = mcnemar_pooled(_paired_correctness(base_runs[s], runs[s]) for s in paired)
        results.append(
            CellResult(
                cell=cell,
                is_baseline=i == baseline,
                seeds=list(runs),
                accuracies=accs,
                mean=mean,
                std=std,
                ci_low=lo,
                ci_high=hi,
                train_seconds=float(np.mean([s["train_seconds"] for s in summaries])) if summaries else math.nan,
                trainable_params=max(
                    (int(s["trainable_params"]) for s in summaries if s.get("trainable_params") is not None),
                    default=None,
                ),
                val_images=summaries[0].get("val_images") if summaries else None,
                mcnemar=test,
                curve=_mean_curve(list(runs.values())),
            )
        )
    return results


def _correctness(run_dir: Path) -> pd.Series:
    path = RunDir(run_dir).val_predictions
    if not path.is_file():
        raise RunDirError(f"{run_dir} has no val_predictions.csv, so it cannot be paired with the baseline")
    frame = read_run_csv(
        path,
        ("path", "correct"),
        usecols=["path", "correct"],
        dtype={"path": str, "correct": str},
        keep_default_na=False,
    )
    return pd.Series(
        frame["correct"].str.strip().str.lower().isin(["true", "1"]).to_numpy(), index=frame["path"]
    ).sort_index()


def _paired_correctness(base_dir: Path, cell_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(baseline correct, cell correct) on the same images, aligned by path."""
    a, b = _correctness(base_dir), _correctness(cell_dir)
    if set(a.index) != set(b.index):
        raise RunDirError(
            f"{cell_dir} and {base_dir} were scored on different validation images; a paired test needs the same split"
        )
    return a.to_numpy(bool), b.reindex(a.index).to_numpy(bool)


def _mean_curve(run_dirs: list[Path]) -> list[tuple[int, float]]:
    """Validation accuracy per epoch, averaged over the runs that reached that epoch."""
    rows = [r for d in run_dirs for r in read_metrics(RunDir(d).metrics)]
    if not rows:
        return []
    frame = pd.DataFrame(rows)[["epoch", "val_accuracy"]].astype(float)
    means = frame.groupby("epoch")["val_accuracy"].mean()
    return [(int(e), float(v)) for e, v in means.items()]


def results_frame(results: list[CellResult], axes: list[str]) -> pd.DataFrame:
    """The CSV table: axis columns, then :data:`CSV_COLUMNS` (unrounded numbers)."""
    records = []
    for r in results:
        t = r.mcnemar or {}
        records.append(
            {
                **{k: r.cell.settings[k] for k in axes},
                "cell": r.cell.slug,
                "baseline": r.is_baseline,
                "seeds": len(r.seeds),
                "val_accuracy_mean": r.mean,
                "val_accuracy_std": r.std,
                "ci95_low": r.ci_low,
                "ci95_high": r.ci_high,
                "train_seconds_mean": r.train_seconds,
                "trainable_params": r.trainable_params,
                "mcnemar_baseline_only_correct": t.get("b"),
                "mcnemar_cell_only_correct": t.get("c"),
                "mcnemar_p_value": t.get("p_value"),
                "mcnemar_method": t.get("method"),
                "mcnemar_pairs": t.get("seeds"),
            }
        )
    frame = pd.DataFrame(records, columns=[*axes, *CSV_COLUMNS])
    # counts stay integers next to the baseline row's blanks
    ints = ["trainable_params", "mcnemar_baseline_only_correct", "mcnemar_cell_only_correct", "mcnemar_pairs"]
    return frame.astype({c: "Int64" for c in ints})


def caption(results: list[CellResult], title: str, description: str = "") -> str:
    base = next(r for r in results if r.is_baseline)
    seeds = max((len(r.seeds) for r in results), default=0)
    images = base.val_images if base.val_images is not None else "?"
    text = (
        f"Validation accuracy of each run's kept (best-epoch) weights over {seeds} seed(s) per cell — "
        "mean ± sample std and a 95% Student-t interval; train time is the mean over seeds. "
        f"Last columns: McNemar's test against the baseline ({base.cell.label(short_names(list(base.cell.settings)))}) "
        f"on per-image correctness on the same {images} validation images, pooled across seeds (seed k paired with seed k); "
        "b = images only the baseline got right, c = images only this cell got right (summed over seeds)."
    )
    return f"{description} {text}" if description else f"{title}. {text}"


def _fmt(value: float, digits: int = 4) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def display_rows(results: list[CellResult], axes: list[str]) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells shared by the Markdown and HTML tables."""
    short = short_names(axes)
    header = [short[k] for k in axes] + [
        "val accuracy (mean ± std)",
        "95% CI",
        "seeds",
        "train time (s)",
        "trainable params",
        "vs baseline: b / c",
        "McNemar p",
    ]
    rows = []
    for r in results:
        t = r.mcnemar
        rows.append(
            [str(r.cell.settings[k]) for k in axes]
            + [
                f"{_fmt(r.mean)} ± {_fmt(r.std)}",
                f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]",
                str(len(r.seeds)),
                _fmt(r.train_seconds, 1),
                f"{r.trainable_params:,}" if r.trainable_params is not None else "n/a",
                "baseline" if r.is_baseline else (f"{t['b']} / {t['c']}" if t else "n/a"),
                "—" if r.is_baseline else (_p(t["p_value"]) if t else "n/a"),
            ]
        )
    return header, rows


def _p(p: float) -> str:
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


def render_markdown(results: list[CellResult], axes: list[str], title: str, description: str = "") -> str:
    header, rows = display_rows(results, axes)
    lines = [
        f"# Ablation: {title}",
        "",
        caption(results, title, description),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def curves_png(results: list[CellResult], axes: list[str]) -> bytes:
    """Every cell's validation accuracy per epoch (mean over seeds) on one plot."""
    short = short_names(axes)
    runs = {
        r.cell.label(short) + (" (baseline)" if r.is_baseline else ""): [
            {"epoch": e, "val_accuracy": v} for e, v in r.curve
        ]
        for r in results
    }
    fig = learning_curves(runs, metrics=("val_accuracy",), width=8.0, height=4.8)
    fig.axes[0].set_ylabel("mean over seeds")
    fig.axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig_to_png(fig, dpi=110)


def render_html(results: list[CellResult], axes: list[str], title: str, png: bytes, description: str = "") -> str:
    header, rows = display_rows(results, axes)
    return page(
        f"Ablation: {title}",
        paragraph(caption(results, title, description)),
        table([dict(zip(header, row)) for row in rows], header),
        section(
            "Learning curves",
            image(base64.b64encode(png).decode("ascii"), "validation accuracy per epoch, one line per cell"),
        ),
    )


def write_tables(
    results: list[CellResult], out: Path, title: str, axes: list[str], description: str = ""
) -> dict[str, Path]:
    """results.md, results.csv, results.html and learning_curves.png in ``out``."""
    out = Path(out)
    paths = {
        k: out / n
        for k, n in [
            ("md", "results.md"),
            ("csv", "results.csv"),
            ("html", "results.html"),
            ("png", "learning_curves.png"),
        ]
    }
    png = curves_png(results, axes)
    atomic_write_bytes(paths["png"], png)
    atomic_write_text(paths["csv"], results_frame(results, axes).to_csv(index=False))
    atomic_write_text(paths["md"], render_markdown(results, axes, title, description))
    atomic_write_text(paths["html"], render_html(results, axes, title, png, description))
    return paths


def write_results(plan: Plan) -> tuple[list[CellResult], dict[str, Path]]:
    """Collect a plan's finished runs and write its tables into ``plan.out``."""
    results = collect_results(plan.cells, plan.seeds, plan.baseline, plan.out / "runs")
    axes = list(plan.grid.axes)
    return results, write_tables(results, plan.out, plan.grid.name, axes, plan.grid.description)
