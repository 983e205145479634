"""``imgclf compare RUN_DIR... | --experiment NAME``: one table of runs, printed and written as Markdown, CSV and HTML."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from imgclf.terminal import console
from imgclf.errors import ConfigError


def compare_command(
    run_dirs: list[Path] = typer.Argument(
        None, help="Run directories (a folder of runs, e.g. a sweep's trials/, counts as all runs in it)."
    ),
    experiment: Optional[str] = typer.Option(
        None, "--experiment", "-e", help="Compare the runs of this MLflow experiment instead."
    ),
    tracking_uri: Optional[str] = typer.Option(
        None,
        "--tracking-uri",
        help="MLflow store for --experiment (default $MLFLOW_TRACKING_URI or sqlite:///runs/mlflow.db).",
    ),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        help="report.html (with report.md and report.csv beside it), or a folder for compare.{html,md,csv}.",
    ),
    sort: str = typer.Option(
        "val_accuracy",
        "--sort",
        help="Column to sort by: a metric (val_accuracy, val_loss, val_macro_f1, train_seconds, ...) or a differing config key.",
    ),
) -> None:
    """Compare runs: the config keys that differ between them, then accuracy, loss, macro-F1, epochs, time and parameters."""
    from imgclf.experiments.compare import compare_runs, load_runs, runs_from_experiment, write_report

    if bool(run_dirs) == bool(experiment):
        raise ConfigError("give either RUN_DIR... or --experiment NAME (not both)")
    if out is not None:
        from imgclf.experiments.compare import report_paths
        from imgclf.run.claim import check_file_out

        for path in report_paths(out):  # the page and its .md/.csv: earlier comparisons, never a run's files
            check_file_out(path, "--out", (path.suffix.lower(),), own=tuple(p.name for p in report_paths(Path("."))))
    if experiment:
        from imgclf.tracking.session import tracking_uri_in

        runs = runs_from_experiment(experiment, tracking_uri_in("runs", tracking_uri))
    else:
        runs = load_runs(list(run_dirs))
    comparison = compare_runs(runs, sort=sort)
    console.print(comparison.markdown, highlight=False, soft_wrap=True, markup=False)
    if out is not None:
        title = f"Run comparison: {experiment}" if experiment else "Run comparison"
        paths = write_report(comparison, out, title=title)
        console.print("written: " + ", ".join(str(p) for p in paths), highlight=False, soft_wrap=True)
