"""Out-of-fold (OOF) predictions: calibrated probabilities for images a model did not train on.

A run's OOF set is its validation predictions (``val_predictions.csv`` logits divided by the
temperature in ``calibration.json``); a CV folder's is ``oof.csv`` (every training image once,
predicted by the fold that held it out); an ensemble folder's is its blended ``oof.csv``.
These are what ensembles are weighted on and label issues are found from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import softmax
from sklearn.metrics import f1_score, log_loss

from imgclf.errors import RunDirError
from imgclf.eval.metrics import Metric
from imgclf.io import atomic_path
from imgclf.run.rundir import BlendDir, RunDir, read_run_csv
from imgclf.task import Task

PROB_PREFIX = "prob_"


@dataclass
class Oof:
    paths: list[str]  # relative to the dataset folder
    labels: np.ndarray  # class indices; for label sets and values the targets (n, K) (imgclf.task)
    probs: np.ndarray  # (n, classes), calibrated; for label sets and values the outputs (n, K)
    classes: list[str]
    folds: np.ndarray | None = None
    task: Task = field(default_factory=Task)

    def sorted(self) -> "Oof":
        order = np.argsort(np.array(self.paths, dtype=object), kind="stable")
        return Oof(
            [self.paths[i] for i in order],
            self.labels[order],
            self.probs[order],
            self.classes,
            None if self.folds is None else self.folds[order],
            self.task,
        )


def temperature_of(run_dir: Path) -> float:
    return RunDir(Path(run_dir)).temperature()


def read_run_oof(run_dir: Path) -> Oof:
    """A run's validation predictions as calibrated probabilities: softmax(logit / temperature)."""
    run_dir = Path(run_dir)
    run = RunDir(run_dir)
    path = run.val_predictions
    if not path.is_file() or not run.classes.is_file():
        raise RunDirError(
            f"{run_dir} has no out-of-fold predictions ({path.name} and {run.classes.name} of a finished run)"
        )
    classes = run.read_classes()
    columns = [f"logit_{j}" for j in range(len(classes))]
    frame = read_run_csv(path, ("path", "label", *columns), dtype={"path": str, "label": str}, keep_default_na=False)
    logits = _numbers(frame, columns, path)
    task = run.read_task()
    if not task.multiclass:  # label sets or values: targets and the task's outputs (no temperature)
        targets = task.parse_targets(frame["label"].tolist(), str(path))
        return Oof(frame["path"].tolist(), targets, task.outputs(logits), classes, task=task)
    labels = _labels(frame, classes, path)
    probs = softmax(logits / temperature_of(run_dir), axis=1) if len(frame) else np.zeros((0, len(classes)))
    return Oof(frame["path"].tolist(), labels, probs, classes)


def _labels(frame: pd.DataFrame, classes: list[str], path: Path) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    unknown = [v for v in frame["label"] if v not in index]
    if unknown:
        raise RunDirError(f"{path} has label {unknown[0][:60]!r}, which is not in the run's classes")
    return np.array([index[v] for v in frame["label"]], dtype=int)


def _numbers(frame: pd.DataFrame, columns: list[str], path: Path) -> np.ndarray:
    """The columns as finite floats; anything else is one line naming the file."""
    values = frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(values).all():
        row, col = np.argwhere(~np.isfinite(values))[0]
        raise RunDirError(
            f"{path} is not a valid predictions file: {columns[col]} of row {row + 2} is "
            f"{str(frame[columns[col]].iloc[row])[:40]!r}, not a finite number"
        )
    return values


def _folds(frame: pd.DataFrame, path: Path) -> np.ndarray | None:
    if "fold" not in frame.columns:
        return None
    folds = pd.to_numeric(frame["fold"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(folds) | (folds != np.round(folds)) | (folds < 1)
    if bad.any():
        raise RunDirError(
            f"{path} is not a valid predictions file: fold {str(frame['fold'].iloc[int(np.argmax(bad))])[:40]!r} is not a fold number"
        )
    return folds.astype(int)


def write_oof(path: Path, oof: Oof) -> None:
    """oof.csv: path, fold, label, pred, then one ``prob_<class>`` column per class (label probabilities, or the
    value, for label sets and values; their label and pred are text, as :meth:`imgclf.task.Task.target_text`)."""
    frame = pd.DataFrame({"path": oof.paths})
    if oof.folds is not None:
        frame["fold"] = oof.folds
    if not oof.task.multiclass:
        frame["label"] = [oof.task.target_text(t) for t in oof.labels]
        frame["pred"] = [oof.task.target_text(o) for o in oof.probs]
        for j, name in enumerate(oof.classes):
            frame[f"{PROB_PREFIX}{name}"] = oof.probs[:, j]
        with atomic_path(Path(path)) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")
        return
    frame["label"] = [oof.classes[i] for i in oof.labels]
    frame["pred"] = [oof.classes[i] for i in oof.probs.argmax(1)] if len(oof.probs) else []
    for j, name in enumerate(oof.classes):
        frame[f"{PROB_PREFIX}{name}"] = oof.probs[:, j]
    with atomic_path(Path(path)) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def read_oof_csv(path: Path, classes: list[str], task: Task | None = None) -> Oof:
    """oof.csv, checked: a path and a known label per row, finite probabilities per class, integer folds; for label
    sets and values (``task``) the targets as written by :func:`write_oof`."""
    frame = read_run_csv(
        path, ("path", "label"), dtype={"path": str, "label": str, "pred": str, "fold": str}, keep_default_na=False
    )
    columns = [f"{PROB_PREFIX}{c}" for c in classes]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise RunDirError(f"{path} does not match classes.json: column {missing[0]} is missing")
    if task is not None and not task.multiclass:
        targets = task.parse_targets(frame["label"].tolist(), str(path))
        outputs = _numbers(frame, columns, path)
        return Oof(frame["path"].tolist(), targets, outputs, classes, _folds(frame, path), task)
    return Oof(
        frame["path"].tolist(),
        _labels(frame, classes, path),
        _numbers(frame, columns, path),
        classes,
        _folds(frame, path),
    )


def read_oof(member: Path) -> Oof:
    """The OOF predictions of a run, a CV folder or an ensemble folder (anything with oof.csv + classes.json)."""
    member = Path(member)
    if not member.is_dir():
        raise RunDirError(f"run directory not found: {member}")
    blend = BlendDir(member)
    if blend.oof.is_file():
        if not blend.classes.is_file():
            raise RunDirError(f"{member} has {blend.oof.name} but no {blend.classes.name}")
        return read_oof_csv(blend.oof, blend.read_classes(), blend.read_task())
    return read_run_oof(member)


def scores(
    labels: np.ndarray, probs: np.ndarray, metric: Metric | None = None, task: Task | None = None
) -> dict[str, Any]:
    """Accuracy, macro-F1 and log-loss (natural log) of probabilities against labels, and ``metric``
    (the run's ``train.metric``) under its own name when it is another one. For label sets and values (``task``):
    the metric and the task's standard scores (:data:`imgclf.infer.evaluate_targets.SCORES`), at 0.5 per label."""
    if task is not None and not task.multiclass:
        from imgclf.infer.evaluate_targets import score_targets

        name = metric.name if metric is not None else None
        return {"images": int(len(labels)), **score_targets(task, name, labels, probs, None)}
    n_classes = probs.shape[1]
    probs = np.clip(probs, 1e-15, None)
    probs = probs / probs.sum(1, keepdims=True)  # rows read back from CSV are rounded
    preds = probs.argmax(1)
    extra = {metric.name: metric.score(labels, probs)} if metric is not None and metric.name not in _BASIC else {}
    return {
        "images": int(len(labels)),
        "accuracy": float((preds == labels).mean()) if len(labels) else float("nan"),
        "macro_f1": float(f1_score(labels, preds, labels=list(range(n_classes)), average="macro", zero_division=0)),
        "log_loss": float(log_loss(labels, probs, labels=list(range(n_classes)))) if len(labels) else float("nan"),
        **extra,
    }


_BASIC = ("accuracy", "macro_f1", "log_loss")  # what scores() always gives
