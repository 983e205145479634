"""``imgclf ablate``: train every cell of a grid for several seeds and write the comparison table."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from imgclf.terminal import RichTrainingProgress, console, err_console
from imgclf.errors import DataError


def ablate_command(
    dataset: Path = typer.Argument(..., help="Dataset folder (train/<class>/images) or a CSV of path,label."),
    grid: str = typer.Option(
        ..., "--grid", "-g", help="Grid YAML (base:, axes:, baseline:) or a shipped grid: heads, strategies, data_size."
    ),
    seeds: int = typer.Option(
        3, "--seeds", "-n", min=1, help="Training seeds per cell (train.seed, train.seed+1, ...)."
    ),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        help="Ablation folder (default ablations/<grid name>); rerun with the same folder to resume.",
    ),
    set_: list[str] = typer.Option(
        [], "--set", "-s", help="Override a base config key for every cell, e.g. --set train.epochs=3 (repeatable)."
    ),
    tracking_uri: Optional[str] = typer.Option(
        None,
        "--tracking-uri",
        help="MLflow store (default $MLFLOW_TRACKING_URI or sqlite:///<out>/mlflow.db; tracking.enabled=false turns it off).",
    ),
) -> None:
    """Train every cell of GRID × seeds on one shared validation split; skip runs already finished.

    Writes runs/<cell>/seed<k>/ (normal run directories), results.md/.csv/.html (accuracy mean ± std,
    95% interval, training time, trainable parameters, McNemar's test against the baseline pooled
    across seeds) and learning_curves.png. An interrupted ablation resumes when run again.
    """
    from imgclf.experiments.ablate import load_grid, plan_ablation, run_ablation
    from imgclf.experiments.ablation_table import write_results

    if not Path(dataset).exists():
        raise DataError(f"dataset not found: {dataset}")
    spec = load_grid(grid)
    plan = plan_ablation(spec, Path(dataset), seeds, out or Path("ablations") / spec.name, set_)
    total = len(plan.cells) * len(plan.seeds)
    console.print(
        f"ablation {spec.name}: {len(plan.cells)} cells × {len(plan.seeds)} seeds = {total} runs → {plan.out}",
        highlight=False,
    )
    done = {"n": 0}

    def announce(cell, seed, state) -> None:
        done["n"] += 1
        verb = {"done": "finished earlier, skipped", "new": "training", "resume": "resuming", "restart": "restarting"}[
            state
        ]
        err_console.print(f"[{done['n']}/{total}] {cell.label(plan.short_names)}, seed {seed}: {verb}", highlight=False)

    def tracked(cfg, run_dir, name):
        from imgclf.tracking.session import resolve_tracking_uri, tracking_session

        # one store per ablation: <out>/mlflow.db unless a URI is given
        uri = resolve_tracking_uri(plan.out / "runs", tracking_uri, cfg.tracking.uri)
        return tracking_session(cfg, run_dir, uri, run_name=name, tags={"ablation": spec.name})

    counts = run_ablation(plan, progress=RichTrainingProgress, on_run=announce, session=tracked)
    results, paths = write_results(plan)
    console.print(_table(results, plan))
    console.print(
        f"{counts['new'] + counts['resume'] + counts['restart']} run(s) trained, {counts['done']} skipped; "
        f"tables: {paths['md']}, {paths['csv']}, {paths['html']}; plot: {paths['png']}",
        highlight=False,
        soft_wrap=True,
    )


# Short headers so the table fits a terminal; the files keep the long ones and the interval.
_SHORT = {
    "val accuracy (mean ± std)": "val acc ± std",
    "train time (s)": "time s",
    "trainable params": "params",
    "vs baseline: b / c": "b / c",
    "McNemar p": "p",
}


def _table(results, plan) -> Table:
    from imgclf.experiments.ablation_table import display_rows

    header, rows = display_rows(results, list(plan.grid.axes))
    keep = [i for i, name in enumerate(header) if name not in ("95% CI", "seeds")]
    table = Table(
        title=f"{plan.grid.name}, {len(plan.seeds)} seeds: McNemar vs baseline pooled across seeds (95% CI in results.md)"
    )
    for i in keep:
        table.add_column(
            _SHORT.get(header[i], header[i]), justify="left" if i < len(plan.grid.axes) else "right", no_wrap=True
        )
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    return table
