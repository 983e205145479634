"""``imgclf cv`` (k-fold cross-validation, OOF predictions, refit) and ``imgclf ensemble`` (OOF-weighted blends)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.table import Table

from imgclf.cli.commands import CONFIG_HELP, SET_HELP, build_cli_config
from imgclf.terminal import RichTrainingProgress, console
from imgclf.run.rundir import BlendDir, RunDir

if TYPE_CHECKING:
    from imgclf.config import Config


def _fold_trainer(parent, tracking_uri: Optional[str]):
    """What ``run_cv`` calls per fold: ``fit`` with a progress bar and MLflow (a child of the CV's parent run)."""
    from imgclf.tracking.session import tracking_session
    from imgclf.training.loop import TrainingInterrupted, fit

    def train_one(cfg: Config, dataset: Path, out: Path, resume: bool, name: str, callbacks=()) -> dict[str, Any]:
        try:
            with tracking_session(
                cfg, out, tracking_uri, run_name=f"{out.parent.name}/{name}", tags=parent.child_tags(name)
            ) as tracking:
                return fit(cfg, dataset, out, resume=resume, callbacks=[RichTrainingProgress(), *callbacks, *tracking])
        except TrainingInterrupted as exc:  # its hint names `train --resume`; for a CV the whole command resumes
            first = str(exc).split(";")[0].split(",")[0]
            raise TrainingInterrupted(
                f"{name} {first}; run the same imgclf cv command again to resume the CV"
            ) from None

    return train_one


def cv_command(
    dataset: Path = typer.Argument(
        ..., help="Dataset folder (train/<class>/images), or a labels CSV: path,label, tags, 0/1 columns or a number."
    ),
    folds: int = typer.Option(5, "--folds", "-k", min=2, help="Number of folds K."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="CV folder to create, or to resume (same --folds/--config/--set)."
    ),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    set_: list[str] = typer.Option([], "--set", "-s", help=SET_HELP),
    refit: bool = typer.Option(
        False,
        "--refit",
        help="After the folds, train one more model on every image for the median best epoch of the folds (CV_DIR/refit).",
    ),
    tracking_uri: Optional[str] = typer.Option(
        None, "--tracking-uri", help="MLflow store (default $MLFLOW_TRACKING_URI or sqlite:///CV_DIR/mlflow.db)."
    ),
    budget: Optional[str] = typer.Option(
        None,
        "--budget",
        help="Wall-clock budget like 20m or 1.5h for the whole CV: measure speed, choose the largest image size that fits and that the data is shown to need (a frozen-feature probe by size), then train the K folds at that size; the folds are the final model (predict CV_DIR) and their out-of-fold score its estimate. Writes CV_DIR/recipe.json.",
    ),
) -> None:
    """K-fold cross-validation: stratified folds that keep duplicate groups whole, one run per fold.

    Writes folds.csv, fold_1..fold_K (normal run directories), oof.csv, summary.json (mean ± std and a
    95 % interval over folds, OOF scores), label_issues.csv (cleanlab, blocklist format) with its thumbnail review page label_issues.html, and report.html.
    Run it again to resume: finished folds are skipped. `imgclf predict CV_DIR TEST_DIR` averages the folds.
    """
    started = time.perf_counter()
    cfg = build_cli_config(config, set_)  # a config error answers before torch is imported
    from imgclf.experiments.cv import run_cv
    from imgclf.tracking.cv import close_parent, open_parent
    from imgclf.budget.cv import run_cv_recipe
    from imgclf.run.claim import claim_folder
    from imgclf.training.preflight import validate_for_training

    seconds = _cv_budget(budget, refit, out)
    if seconds is not None:
        from imgclf.training.auto_batch import refuse_auto_under_budget

        refuse_auto_under_budget(cfg)
    validate_for_training(cfg, dataset)
    with claim_folder(out, "cv"):  # a new or empty folder, or this CV's own (to resume); one writer
        parent = open_parent(cfg, out, tracking_uri)
        try:
            train_one = _fold_trainer(parent, tracking_uri)
            if seconds is None:
                summary = run_cv(cfg, dataset, out, folds=folds, refit=refit, train_one=train_one)
            else:
                summary = run_cv_recipe(cfg, dataset, out, seconds, folds=folds, train_one=train_one, started=started)
        except BaseException:
            close_parent(parent, None, "FAILED")
            raise
        close_parent(parent, summary)
    _print_cv(summary, out)


def _cv_budget(budget: Optional[str], refit: bool, out: Path) -> Optional[float]:
    """Seconds of ``--budget`` (None without it), checked before anything is written."""
    if budget is None:
        return None
    from imgclf.errors import ConfigError
    from imgclf.budget.plan import parse_budget
    from imgclf.budget.cv import check_new_cv

    if refit:
        raise ConfigError("--budget makes the K folds the final model (no refit); drop --refit")
    check_new_cv(out)
    return parse_budget(budget)


_PRETTY = {"macro_f1": "macro-F1", "log_loss": "log-loss"}


def _number(value: Any) -> str:
    """``0.9123``, or ``–`` for a score undefined on these images (None, NaN)."""
    return f"{value:.4f}" if isinstance(value, (int, float)) and value == value else "–"


def _print_cv(summary: dict[str, Any], out: Path) -> None:
    table = Table(title=f"{summary['folds']}-fold CV: {out} (metric: {summary.get('metric', 'accuracy')})")
    scores = list(summary["cv"])  # the run's metric first, then the task's standard scores
    for col in ("fold", "images", *scores, "best epoch", "seconds", "run"):
        table.add_column(col, justify="right")
    for r, action in zip(summary["per_fold"], summary["actions"]):
        table.add_row(
            str(r["fold"]),
            str(r["images"]),
            *(_number(r.get(m)) for m in scores),
            str(r["best_epoch"]),
            f"{r['train_seconds'] or 0:.0f}",
            action,
        )
    console.print(table)
    for metric, v in summary["cv"].items():
        lo, hi = v["ci95"]
        spread = f" ± {v['std']:.4f} (95% CI {lo:.4f}–{hi:.4f})" if v["std"] is not None else ""
        mean = _number(v["mean"])
        console.print(f"{metric}: {mean}{spread}; OOF {_number(summary['oof'].get(metric))}", highlight=False)
    if summary["refit"]:
        r = summary["refit"]
        console.print(
            f"refit: {out / r['run']} on all {r['train_images']} images for {r['epochs']} epoch(s) ({r['epochs_from']})",
            highlight=False,
        )
    if summary.get("recipe"):
        r = summary["recipe"]
        console.print(
            f"budget recipe: {r['elapsed_seconds']:.0f}s of {r['budget_seconds']:.0f}s; what it tried and chose: "
            f"{RunDir(out).recipe}",
            highlight=False,
            soft_wrap=True,
        )
    issues = (
        f"label-issue candidates: {summary['label_issues']} in {BlendDir(out).label_issues} "
        f"(review: {BlendDir(out).label_issues.with_suffix('.html')})"
        if summary["label_issues"] is not None
        else "label-issue candidates: not looked for (no cleanlab)"
    )
    console.print(f"{issues} — report: {summary['report']}", highlight=False, soft_wrap=True)


def ensemble_command(
    members: list[Path] = typer.Argument(..., help="Run directories and/or CV folders (same dataset, same classes)."),
    out: Path = typer.Option(..., "--out", "-o", help="Ensemble folder to write (predict ENS_DIR TEST_DIR uses it)."),
    weights: str = typer.Option(
        "optimize",
        "--weights",
        help="optimize (minimise OOF log-loss; weights >= 0, sum 1; with another metric, equal weights are kept when they score better on it) or equal.",
    ),
    metric: Optional[str] = typer.Option(
        None,
        "--metric",
        help="Score members and blend with this metric (accuracy, log_loss, macro_f1, qwk, roc_auc, top_k); default: the first member's train.metric.",
    ),
) -> None:
    """Blend runs and CV folders: weights chosen on their out-of-fold predictions; prints each member's OOF score and the ensemble's."""
    from imgclf.errors import ConfigError
    from imgclf.experiments.ensemble import build_ensemble

    if weights not in ("optimize", "equal"):
        raise ConfigError(f"--weights must be optimize or equal (got {weights!r})")
    summary = build_ensemble(members, out, method=weights, metric=metric)
    table = Table(title=f"ensemble {out}: OOF scores on {summary['oof_images']} images (metric: {summary['metric']})")
    shown = [summary["metric"], *(k for k in summary["ensemble"] if k not in ("images", summary["metric"]))]
    for col in ("member", "weight", *shown):
        table.add_column(_PRETTY.get(col, col), justify="left" if col == "member" else "right")
    for r in summary["members"]:
        table.add_row(r["member"], f"{r['weight']:.3f}", *(_number(r.get(m)) for m in shown))
    rows = (
        (
            f"ensemble (weights: {summary['weights_chosen_by']}; fitted on these OOF predictions: optimistic)",
            "ensemble",
        ),
        ("ensemble, nested (each fold's weights fitted on the other folds)", "ensemble_nested"),
        ("equal weights", "equal_weights"),
    )
    for name, key in ((n, k) for n, k in rows if k in summary):
        table.add_row(f"[bold]{name}[/]", "", *(_number(summary[key].get(m)) for m in shown))
    console.print(table)
    console.print(
        f"written to {out} — imgclf predict {out} TEST_DIR writes the blended submission",
        highlight=False,
        soft_wrap=True,
    )
