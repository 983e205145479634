"""``CV_DIR/report.html``: the per-fold table, the spread over folds, learning curves, the OOF
confusion matrix and the top label-issue candidates. Reads the CV folder only."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from imgclf.eval.metrics import get_metric
from imgclf.experiments.oof import read_oof_csv
from imgclf.infer.evaluate_targets import SCORES
from imgclf.io import read_json
from imgclf.report import html as h
from imgclf.report.plots import fig_to_base64, learning_curves
from imgclf.report.recipe import recipe_section
from imgclf.run.rundir import BlendDir, RunDir

TOP_ISSUES = 20


def _spread_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for metric, v in summary["cv"].items():
        lo, hi = v["ci95"]
        rows.append(
            {
                "metric": metric,
                "mean": v["mean"],
                "std": v["std"],
                "95% interval": "—" if lo is None else f"[{lo:.4f}, {hi:.4f}]",
                "OOF (all images)": summary["oof"][metric],
            }
        )
    return rows


def _curves(cv_dir: Path, folds: list[str], score: str = "val_accuracy") -> str:
    from imgclf.run.rundir import RunDir, read_metrics

    runs = {name: read_metrics(RunDir(cv_dir / name).metrics) for name in folds}
    fig = learning_curves(runs, (score, "val_loss", "train_loss"))
    return h.image(fig_to_base64(fig), "learning curves of every fold")


def _confusion(cv_dir: Path, classes: list[str]) -> str:
    from imgclf.eval.scores import score
    from imgclf.report.figures import confusion_figure

    oof = read_oof_csv(BlendDir(cv_dir).oof, classes)
    scores = score(oof.labels, oof.probs.argmax(1), classes)
    return h.image(fig_to_base64(confusion_figure(scores.confusion, classes)), "OOF confusion matrix")


def _issues(cv_dir: Path) -> str:
    path = BlendDir(cv_dir).label_issues
    if not path.is_file():
        return h.paragraph("No label-issue list.", "note")
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")][1:]
    rows = [{"rank": i, "path": r[0], "why": r[1]} for i, r in enumerate(csv.reader(lines[:TOP_ISSUES]), start=1)]
    note = h.paragraph(f"{len(lines)} candidate(s) in {path.name} (blocklist format); the first {len(rows)}:", "note")
    review = path.with_suffix(".html")  # label_issues.html: every candidate as a thumbnail (report.label_review)
    link = h.link_paragraph(f"Review them as thumbnails: {review.name}", review.name) if review.is_file() else ""
    return note + link + (h.table(rows, text_columns=("path", "why")) if rows else "")


def _scoring_note(metric, task: str) -> str:
    what = (
        "each fold's calibrated probabilities (softmax(logit / temperature))"
        if task == "multiclass"
        else "each fold's outputs (label probabilities at 0.5, or values)"
    )
    better = "higher" if metric.direction == "max" else "lower"
    return (
        f"The run's metric (train.metric) is {metric.label} ({better} is better). Scores use {what}; "
        "the interval is Student-t over folds."
    )


def render_cv_report(cv_dir: Path) -> str:
    cv_dir = Path(cv_dir)
    files = BlendDir(cv_dir)
    summary = files.read_summary()
    spec = read_json(files.cv_spec)
    classes = files.read_classes()
    folds = spec["fold_dirs"]
    task = summary.get("task", "multiclass")  # label sets or values: their own scores, no confusion matrix
    metric = get_metric(summary.get("metric", "accuracy"), summary.get("metric_k", 5), task=task)
    scored = SCORES[task] if task != "multiclass" else ("accuracy", "macro_f1", "log_loss")
    columns = dict.fromkeys(
        (
            "fold",
            "images",
            metric.name,
            *scored,
            "best_epoch",
            "epochs_run",
            "temperature",
            "train_seconds",
        )
    )
    per_fold = [{k: r.get(k) for k in columns} for r in summary["per_fold"]]
    parts = [
        h.section(
            "Cross-validation",
            h.table(_spread_rows(summary)),
            h.paragraph(_scoring_note(metric, task), "note"),
        ),
        h.section(
            "Per fold",
            h.table(per_fold, highlight={"accuracy": "max", "log_loss": "min", metric.name: metric.direction}),
        ),
        h.section("Learning curves", _curves(cv_dir, folds, metric.column if task != "multiclass" else "val_accuracy")),
        h.section("Out-of-fold confusion matrix", _confusion(cv_dir, classes)) if task == "multiclass" else "",
        h.section("Label-issue candidates", _issues(cv_dir)),
    ]
    recipe = recipe_section(RunDir(cv_dir))  # cv --budget: what the recipe tried and chose
    if recipe:
        parts.insert(1, recipe)
    refit = summary.get("refit")
    if refit:
        parts.append(
            h.section(
                "Refit",
                h.paragraph(
                    f"{cv_dir / refit['run']}: trained on all {refit.get('train_images')} images for {refit['epochs']} epoch(s) "
                    f"({refit['epochs_from']}; fold best epochs {refit['fold_best_epochs']}). It has no validation of its own."
                ),
            )
        )
    subtitle = f"{spec['folds']} folds of {spec['dataset']} · {summary['oof']['images']} out-of-fold images"
    return h.page(f"CV report: {cv_dir.name}", *parts, subtitle=subtitle)


def write_cv_report(cv_dir: Path) -> Path:
    return h.write_page(BlendDir(Path(cv_dir)).report, render_cv_report(cv_dir))
