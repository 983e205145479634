"""The run report's validation section for a multilabel or regression run (``task.json``).

Multilabel: per label its support, ROC AUC, average precision and F1 at the threshold the run uses, with the
precision-recall curves of the labels and F1 against the threshold; regression: RMSE, MAE and R², predicted
against true values and the residuals. Both show the decision record (thresholds or cut-points: untuned,
cross-fitted and in-sample scores, and whether the tuned values are used).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from imgclf.report import html as h
from imgclf.report.plots import fig_to_base64
from imgclf.run.rundir import RunDir
from imgclf.task import Task


def _outputs(task: Task, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(targets, outputs) of val_predictions.csv: 0/1 rows and label probabilities, or values."""
    targets = task.parse_targets([str(c) for c in frame["label"]], "the validation predictions")
    logits = frame[[f"logit_{j}" for j in range(len(task.names))]].to_numpy(dtype=float)
    return targets, task.outputs(logits)


def target_sections(run: RunDir, frame: pd.DataFrame | None) -> str | None:
    """The validation section of a multilabel or regression run; None for a multiclass one."""
    task = run.read_task()
    if task.multiclass:
        return None
    if frame is None or frame.empty:
        return h.section("Validation results", h.paragraph("No val_predictions.csv.", "note"))
    targets, outputs = _outputs(task, frame)
    decision = run.read_decisions()
    parts = [_decision_table(decision)] if decision else []
    if task.kind == "multilabel":
        thresholds = np.asarray(run.decision() or [0.5] * len(task.names))
        parts += [_label_table(task, targets, outputs, thresholds), _label_figure(task, targets, outputs)]
    else:
        parts += [_regression_table(targets, outputs), _regression_figure(targets, outputs)]
    return h.section(f"Validation results ({task.kind}, {len(frame)} images)", *parts)


def _decision_table(record: dict) -> str:
    rows = [{"": k, "value": record.get(k)} for k in ("kind", "metric", "untuned", "tuned_cross_fitted",
                                                        "tuned_in_sample", "se", "used", "why")]  # fmt: skip
    return h.table(rows, ["", "value"], text_columns=["", "value"])


def _label_table(task: Task, targets: np.ndarray, probs: np.ndarray, thresholds: np.ndarray) -> str:
    from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

    rows = []
    for j, name in enumerate(task.names):
        y, p = targets[:, j], probs[:, j]
        both = 0 < y.sum() < len(y)
        rows.append(
            {
                "label": name,
                "support": int(y.sum()),
                "roc_auc": float(roc_auc_score(y, p)) if both else None,
                "average_precision": float(average_precision_score(y, p)) if y.any() else None,
                "threshold": float(thresholds[j]),
                "f1": float(f1_score(y, p >= thresholds[j], zero_division=0)),
            }
        )
    return h.table(rows, list(rows[0]), text_columns=["label"])


def _label_figure(task: Task, targets: np.ndarray, probs: np.ndarray) -> str:
    from sklearn.metrics import f1_score, precision_recall_curve

    fig = Figure(figsize=(10, 4))
    pr, f1 = fig.subplots(1, 2)
    grid = np.linspace(0.05, 0.95, 19)
    for j, name in enumerate(task.names[:20]):
        y, p = targets[:, j], probs[:, j]
        if not y.any():
            continue
        precision, recall, _ = precision_recall_curve(y, p)
        pr.plot(recall, precision, lw=1, label=name)
        f1.plot(grid, [f1_score(y, p >= t, zero_division=0) for t in grid], lw=1)
    pr.set(xlabel="recall", ylabel="precision", title="precision-recall per label")
    f1.set(xlabel="threshold", ylabel="F1", title="F1 against the threshold")
    pr.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return h.image(fig_to_base64(fig), "per-label precision-recall and threshold curves")


def _regression_table(targets: np.ndarray, values: np.ndarray) -> str:
    y, v = targets.ravel(), values.ravel()
    errors = v - y
    r2 = 1 - float((errors**2).sum()) / max(float(((y - y.mean()) ** 2).sum()), 1e-12)
    rows = [
        {"": "RMSE", "value": float(np.sqrt((errors**2).mean()))},
        {"": "MAE", "value": float(np.abs(errors).mean())},
        {"": "R²", "value": r2},
        {"": "mean residual (bias)", "value": float(errors.mean())},
    ]
    return h.table(rows, ["", "value"], text_columns=[""])


def _regression_figure(targets: np.ndarray, values: np.ndarray) -> str:
    y, v = targets.ravel(), values.ravel()
    fig = Figure(figsize=(10, 4))
    scatter, hist = fig.subplots(1, 2)
    scatter.scatter(y, v, s=6, alpha=0.5)
    low, high = float(min(y.min(), v.min())), float(max(y.max(), v.max()))
    scatter.plot([low, high], [low, high], color="grey", lw=1)
    scatter.set(xlabel="true", ylabel="predicted", title="predicted against true")
    hist.hist(v - y, bins=40)
    hist.set(xlabel="residual (predicted - true)", ylabel="images", title="residuals")
    fig.tight_layout()
    return h.image(fig_to_base64(fig), "predicted against true values, and residuals")
