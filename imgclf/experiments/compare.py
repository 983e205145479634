"""Compare runs: one table with only the config keys that differ, then metrics, time and size.

Runs come from run directories (a folder of runs, e.g. a sweep's ``trials/``, is expanded) or from
an MLflow experiment (each tracked run names its directory in the ``imgclf.run_dir`` tag). The run
directory is read, never MLflow's copy: it is the source of truth.

Example::

    runs = load_runs([Path("runs/a"), Path("runs/b")])
    report = compare_runs(runs, sort="val_accuracy")
    print(report.markdown); write_report(report, Path("compare.html"))  # + compare.md, compare.csv
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from imgclf.config import flatten
from imgclf.io import atomic_write_text
from imgclf.errors import ConfigError, RunDirError
from imgclf.report import html
from imgclf.report.pareto import pareto_section, run_points
from imgclf.report.plots import fig_to_base64, learning_curves
from imgclf.report.tables import markdown_table, write_csv
from imgclf.run.rundir import RunDir, read_metrics
from imgclf.safe_yaml import read_yaml_file

log = logging.getLogger("imgclf")

METRIC_COLUMNS = (
    "val_accuracy",
    "val_loss",
    "val_macro_f1",
    "best_epoch",
    "epochs_run",
    "train_seconds",
    "total_params",
    "trainable_params",
)
# Smaller is better for these; larger for every other sortable column.
ASCENDING = ("val_loss", "val_log_loss", "train_seconds", "total_params", "trainable_params", "mean_epoch_seconds")
# A --budget run's summary has no val_accuracy of its own: this column ranks every run, by val_accuracy where the
# run has one, else by the recipe's held-out estimate (summary.json: recipe.estimate). Shown when a budget run is.
ESTIMATE = "val_accuracy_estimate"
ESTIMATE_NOTE = (
    f"{ESTIMATE}: val_accuracy, or for a --budget run the accuracy of the blend it submits, with its TTA, "
    "on the validation images every one of its models held out (recipe.estimate in summary.json); --sort "
    f"{ESTIMATE} ranks every run."
)
# Keys that differ between runs without saying anything about the experiment.
IGNORED_KEYS = ("tracking.uri", "data.num_workers", "data.cache_dir")


@dataclass
class RunRecord:
    name: str
    path: Path
    config: dict[str, Any]  # flattened config.yaml
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]


@dataclass
class Comparison:
    columns: list[str]
    rows: list[dict[str, Any]]
    differing: list[str]
    sort: str
    runs: list[RunRecord]
    markdown: str


def load_run(path: str | Path, name: str | None = None) -> RunRecord:
    run = RunDir(Path(path))
    run.require("config", "summary")
    tree = read_yaml_file(run.config, what="run config", error=RunDirError) or {}
    if not isinstance(tree, dict):
        raise RunDirError(f"run config {run.config} must hold a mapping of sections")
    try:
        config = flatten(tree)
        summary = json.loads(run.summary.read_text())
    except (ValueError, OSError) as exc:
        raise RunDirError(f"{run.root}: cannot read config.yaml/summary.json ({exc.__class__.__name__})") from None
    return RunRecord(
        name=name or run.root.name, path=run.root, config=config, summary=summary, metrics=read_metrics(run.metrics)
    )


def expand_run_dirs(paths: list[Path]) -> list[Path]:
    """Run directories as given; a folder without summary.json stands for the finished runs inside it."""
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if RunDir(path).is_finished() or not path.is_dir():
            found.append(path)
            continue
        inner = sorted(p for p in path.iterdir() if RunDir(p).is_finished())
        if not inner:
            raise RunDirError(f"{path} is not a finished run and holds none (no summary.json)")
        found.extend(inner)
    return found


def load_runs(paths: list[Path]) -> list[RunRecord]:
    dirs = expand_run_dirs(paths)
    names = _unique_names(dirs)
    return [load_run(p, n) for p, n in zip(dirs, names)]


def _unique_names(dirs: list[Path]) -> list[str]:
    names = [d.name for d in dirs]
    if len(set(names)) == len(names):
        return names
    return [f"{d.parent.name}/{d.name}" if names.count(d.name) > 1 else d.name for d in dirs]


def runs_from_experiment(experiment: str, tracking_uri: str) -> list[RunRecord]:
    """The finished runs of an MLflow experiment, read from the run directories they name."""
    from mlflow.tracking import MlflowClient

    from imgclf.tracking.session import RUN_DIR_TAG, bounded_mlflow_http
    from imgclf.tracking.urls import one_line, sqlalchemy_url
    from imgclf.secrets import mask_url

    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[len("sqlite:///") :]).is_file():
        raise ConfigError(f"no MLflow store at {tracking_uri[len('sqlite:///') :]}; pass --tracking-uri")
    try:
        with bounded_mlflow_http():
            client = MlflowClient(tracking_uri=sqlalchemy_url(tracking_uri))
            exp = client.get_experiment_by_name(experiment)
            found = client.search_runs([exp.experiment_id], max_results=10000) if exp else None
            names = [e.name for e in client.search_experiments()] if exp is None else []
    except Exception as exc:
        raise ConfigError(f"cannot read MLflow store {mask_url(tracking_uri)}: {one_line(exc, tracking_uri)}") from None
    if exp is None:
        raise ConfigError(
            f"no MLflow experiment {experiment!r} in {mask_url(tracking_uri)} (there: {', '.join(names) or 'none'})"
        )
    dirs, missing = [], 0
    for r in found:
        path = r.data.tags.get(RUN_DIR_TAG)
        if path and RunDir(Path(path)).is_finished():
            dirs.append(Path(path))
        else:
            missing += 1
    if missing:
        log.warning(
            "%d run(s) of experiment %s left out: unfinished, or their run directory is gone", missing, experiment
        )
    if not dirs:
        raise RunDirError(f"experiment {experiment!r} has no finished run whose run directory still exists")
    return load_runs(sorted(set(dirs)))


def differing_keys(runs: list[RunRecord]) -> list[str]:
    """Config keys whose values are not the same in every run (a key missing from a run counts as differing)."""
    keys = sorted(set().union(*(r.config for r in runs)) - set(IGNORED_KEYS))
    return [
        k
        for k in keys
        if len({json.dumps(r.config.get(k, "<missing>"), sort_keys=True, default=str) for r in runs}) > 1
    ]


def compare_runs(runs: list[RunRecord], sort: str = "val_accuracy") -> Comparison:
    if not runs:
        raise RunDirError("nothing to compare: give run directories or --experiment NAME")
    differing = differing_keys(runs)
    # Runs scored with another train.metric add its val_<metric> column (e.g. val_qwk).
    own = [
        f"val_{m}"
        for m in dict.fromkeys(r.summary.get("metric") for r in runs)
        if m and f"val_{m}" not in METRIC_COLUMNS
    ]
    budget = any(isinstance(r.summary.get("recipe"), dict) for r in runs)
    columns = ["run", *differing, *own, *METRIC_COLUMNS, *([ESTIMATE] if budget else [])]
    if sort not in columns:
        raise ConfigError(
            f"--sort {sort!r} is not a column; choose one of {', '.join(c for c in columns if c != 'run')}"
        )
    rows = []
    for r in runs:
        row: dict[str, Any] = {"run": r.name}
        row.update({k: r.config.get(k) for k in differing})
        row.update({m: r.summary.get(m) for m in (*own, *METRIC_COLUMNS)})
        if budget:
            row[ESTIMATE] = accuracy_estimate(r.summary)
        rows.append(row)
    order = sorted(range(len(rows)), key=lambda i: _sort_key(rows[i].get(sort), sort))
    rows = [rows[i] for i in order]
    runs = [runs[i] for i in order]
    markdown = markdown_table(rows, columns) + (f"\n{ESTIMATE_NOTE}\n" if budget else "")
    return Comparison(columns=columns, rows=rows, differing=differing, sort=sort, runs=runs, markdown=markdown)


def accuracy_estimate(summary: dict[str, Any]) -> float | None:
    """The run's val_accuracy, else (a --budget run) its recipe's held-out accuracy estimate, else None."""
    if summary.get("val_accuracy") is not None:
        return summary["val_accuracy"]
    recipe = summary.get("recipe")
    estimate = recipe.get("estimate") if isinstance(recipe, dict) else None
    if not isinstance(estimate, dict) or estimate.get("metric") != "accuracy":
        return None
    value = estimate.get("value")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _sort_key(value: Any, column: str) -> tuple:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(float(value)):
        return (0, value if column in ASCENDING else -value)
    return (1, str(value))  # text columns sort alphabetically; missing values go last


def report_paths(out: Path) -> tuple[Path, Path, Path]:
    """``(html, md, csv)`` for ``--out``: a .html file and its siblings, or compare.* inside a folder."""
    out = Path(out)
    if out.suffix.lower() in (".html", ".htm"):
        return out, out.with_suffix(".md"), out.with_suffix(".csv")
    return out / "compare.html", out / "compare.md", out / "compare.csv"


def write_report(comparison: Comparison, out: Path, title: str = "Run comparison") -> tuple[Path, Path, Path]:
    html_path, md_path, csv_path = report_paths(out)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        md_path,
        f"# {title}\n\nSorted by {comparison.sort}; config keys shown are those that differ.\n\n{comparison.markdown}",
    )
    write_csv(csv_path, comparison.rows, comparison.columns)
    html.write_page(html_path, render_html(comparison, title))
    return html_path, md_path, csv_path


def render_html(comparison: Comparison, title: str = "Run comparison") -> str:
    scores = [c for c in comparison.columns if c.startswith("val_") and c != "val_images"]
    best = {m: ("min" if m in ASCENDING else "max") for m in (*scores, "train_seconds")}
    curves = learning_curves({r.name: r.metrics for r in comparison.runs})
    differing = ", ".join(comparison.differing) or "none (the runs share one config)"
    paths = "\n".join(f"{r.name}: {r.path}" for r in comparison.runs)
    return html.page(
        title,
        html.section("Runs", html.table(comparison.rows, comparison.columns, highlight=best, text_columns=["run"])),
        html.paragraph(f"Config keys that differ: {differing}.", "note"),
        html.paragraph(ESTIMATE_NOTE, "note") if ESTIMATE in comparison.columns else "",
        html.section("Learning curves", html.image(fig_to_base64(curves), "learning curves of all runs")),
        pareto_section(run_points([r.path for r in comparison.runs], [r.name for r in comparison.runs])),
        html.section("Run directories", html.preformatted(paths)),
        subtitle=f"{len(comparison.runs)} runs, sorted by {comparison.sort}",
    )
