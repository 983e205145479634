"""One pass over a labelled loader: loss, accuracy, macro-F1 and per-image predictions."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score

from imgclf.task import Task
from imgclf.io import atomic_path


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    macro_f1: float
    logits: np.ndarray  # (n, classes), rows in dataset order of the good items
    labels: np.ndarray
    indices: np.ndarray  # dataset indices of the rows
    bad: list[int] = field(default_factory=list)
    task: Task = field(default_factory=Task)

    @property
    def probs(self) -> np.ndarray:
        """What the outputs mean (:meth:`Task.outputs`): class or label probabilities, or values."""
        return self.task.outputs(self.logits) if len(self.logits) else self.logits


@torch.no_grad()
def predict_logits(model, loader, device, amp_dtype=None):
    """Logits, labels and dataset indices for every decodable item of ``loader``."""
    model.eval()
    all_logits, all_labels, all_idx, bad = [], [], [], []
    for images, labels, indices, bad_idx in loader:
        bad.extend(bad_idx)
        if images is None:
            continue
        images = images.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(images)
        all_logits.append(logits.float().cpu())
        all_labels.append(labels)
        all_idx.append(indices)
    if not all_logits:
        return torch.zeros(0, 0), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), bad
    return torch.cat(all_logits), torch.cat(all_labels), torch.cat(all_idx), bad


def evaluate_loader(model, loader, device, amp_dtype=None, task: Task | None = None) -> EvalResult:
    logits, labels, indices, bad = predict_logits(model, loader, device, amp_dtype)
    return evaluate_logits(logits, labels, indices, bad, task)


def evaluate_logits(
    logits: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor, bad: list[int], task: Task | None = None
) -> EvalResult:
    """Loss, accuracy and macro-F1 of predictions (from one loader, or gathered from several processes); for
    multilabel and regression targets the task's loss, and NaN for the two class scores."""
    task = task or Task()
    if len(labels) == 0:
        nothing = np.zeros((0, 0))
        return EvalResult(float("nan"), float("nan"), float("nan"), nothing, np.zeros(0), np.zeros(0), bad, task)
    if not task.multiclass:
        nan = float("nan")
        return EvalResult(
            task.loss(logits, labels), nan, nan, logits.numpy(), labels.numpy(), indices.numpy(), bad, task
        )
    loss = F.cross_entropy(logits, labels).item()
    preds = logits.argmax(1)
    accuracy = (preds == labels).float().mean().item()
    macro_f1 = float(f1_score(labels.numpy(), preds.numpy(), average="macro", zero_division=0))
    return EvalResult(loss, accuracy, macro_f1, logits.numpy(), labels.numpy(), indices.numpy(), bad, task)


def validation_score(metric, result: EvalResult, decision=None) -> float:
    """``metric`` (an :mod:`imgclf.eval.metrics` entry) of ``result``: from the logits for classes, from the task's
    outputs (label probabilities, values) otherwise, with ``decision`` (thresholds, cut-points) when it reads one."""
    if result.task.multiclass:
        return metric.score(result.labels, logits=result.logits)
    if len(result.labels) == 0:
        return float("nan")  # no validation images (a warm-up, a run on every image)
    return metric.score(result.labels, result.probs, decision=decision)


def write_val_predictions(path: Path, result: EvalResult, data, subset_idx: np.ndarray) -> None:
    """val_predictions.csv: one row per validation image — path, label, pred, confidence, correct, logits.

    The basis for reports (confusion, most confident mistakes), calibration and McNemar tests.
    """
    classes = data.samples.classes
    paths = [data.samples.rel(data.samples.paths[subset_idx[i]]) for i in result.indices]
    if not result.task.multiclass:
        _write_target_predictions(path, result, paths)
        return
    probs = result.probs
    preds = probs.argmax(1) if len(probs) else np.zeros(0, dtype=int)
    frame = pd.DataFrame(
        {
            "path": paths,
            "label": [classes[i] for i in result.labels],
            "pred": [classes[i] for i in preds],
            "confidence": probs.max(1) if len(probs) else [],
            "correct": preds == result.labels,
        }
    )
    for j, _name in enumerate(classes):
        frame[f"logit_{j}"] = result.logits[:, j] if len(probs) else []
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def _write_target_predictions(path: Path, result: EvalResult, paths: list[str]) -> None:
    """val_predictions.csv of a multilabel or regression run: path, the target and the prediction as text (labels
    at probability 0.5, or the value), then the raw outputs ``logit_<j>`` (standardised, for regression)."""
    task, outputs = result.task, result.probs
    frame = pd.DataFrame(
        {
            "path": paths,
            "label": [task.target_text(t) for t in result.labels],
            "pred": [task.target_text(o) for o in outputs],
        }
    )
    for j in range(len(task.names)):
        frame[f"logit_{j}"] = result.logits[:, j] if len(outputs) else []
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")
