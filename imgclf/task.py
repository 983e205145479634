"""What a model's outputs mean: the task a run was trained for (``data.task``), one small object.

Three kinds, each with its activation, its validation loss and what a prediction file holds:

- ``multiclass``: one label per image; K logits, softmax (divided by the run's temperature);
- ``multilabel``: any set of K labels per image; K logits, one sigmoid each; targets are 0/1 rows;
- ``regression``: one number per image; one output, trained on the standardised target
  ``(y - mean) / std`` and turned back into the target's units by :meth:`Task.outputs`.

A run stores it in ``task.json`` (a run without one is multiclass: every run before this file existed)::

    task = Task("regression", ("price",), mean=18.2, std=7.9)
    task.outputs(np.array([[0.5]]))     # array([[22.15]])
    task.loss(torch.tensor([[0.5]]), torch.tensor([[22.15]]))   # 0.0: the loss is on the standardised scale
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from imgclf.errors import RunDirError

TASK_KINDS = ("multiclass", "multilabel", "regression")


@dataclass(frozen=True)
class Task:
    kind: str = "multiclass"
    names: tuple[str, ...] = ()  # the outputs: classes, labels, or the target column
    mean: float = 0.0  # regression: the training split's target mean and standard deviation
    std: float = 1.0
    layout: str = "label"  # how the labels came: label | tags | columns | numeric

    @property
    def multiclass(self) -> bool:
        return self.kind == "multiclass"

    def outputs(self, logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        """What a prediction file holds: class probabilities, label probabilities, or values."""
        x = np.asarray(logits, dtype=np.float64)
        if self.kind == "multilabel":
            return 1.0 / (1.0 + np.exp(-x))
        if self.kind == "regression":
            return x * self.std + self.mean
        z = x / temperature
        z = np.exp(z - z.max(axis=1, keepdims=True)) if z.size else z
        return z / z.sum(axis=1, keepdims=True) if z.size else z

    def standardise(self, targets: torch.Tensor) -> torch.Tensor:
        """Regression targets on the scale the model is trained on; other targets unchanged."""
        return (targets - self.mean) / self.std if self.kind == "regression" else targets

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> float:
        """The unweighted validation loss: cross-entropy, mean binary cross-entropy over labels, or the mean
        squared error of the standardised target (1.0 is the error of always predicting the mean)."""
        if self.kind == "multiclass":
            return float(F.cross_entropy(logits, targets))
        if self.kind == "multilabel":
            return float(F.binary_cross_entropy_with_logits(logits, targets.float()))
        return float(F.mse_loss(logits.float(), self.standardise(targets.float())))

    def target_text(self, target: Any) -> str:
        """One target as a CSV cell (split.csv, val_predictions.csv): a class, space-separated labels, or a number."""
        if self.kind == "multilabel":
            return " ".join(n for n, v in zip(self.names, np.asarray(target).ravel()) if v >= 0.5)
        if self.kind == "regression":
            return format(float(np.asarray(target).ravel()[0]), ".9g")
        return self.names[int(target)]

    def parse_targets(self, cells: list[str], where: str) -> np.ndarray:
        """The targets of CSV cells written by :meth:`target_text`: class indices, 0/1 rows, or (n, 1) values."""
        try:
            if self.kind == "regression":
                return np.array([[float(c)] for c in cells], dtype=np.float32)
            index = {n: i for i, n in enumerate(self.names)}
            if self.kind == "multiclass":
                return np.array([index[c] for c in cells], dtype=np.int64)
            rows = np.zeros((len(cells), len(self.names)), dtype=np.float32)
            for i, cell in enumerate(cells):
                rows[i, [index[t] for t in str(cell).split()]] = 1.0
            return rows
        except (KeyError, ValueError) as exc:
            raise RunDirError(f"{where}: a label the run does not know, or not a number: {str(exc)[:60]}") from None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "names": list(self.names)}

    @classmethod
    def from_dict(cls, data: Any, where: str = "task.json") -> Task:
        if not isinstance(data, dict) or data.get("kind") not in TASK_KINDS:
            raise RunDirError(f"{where}: kind must be one of {', '.join(TASK_KINDS)}")
        std = data.get("std", 1.0)
        if not isinstance(std, (int, float)) or not std > 0:
            raise RunDirError(f"{where}: std must be a positive number")
        return cls(
            str(data["kind"]),
            tuple(str(n) for n in data.get("names", ())),
            float(data.get("mean", 0.0)),
            float(std),
            str(data.get("layout", "label")),
        )
