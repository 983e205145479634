"""Scores of predictions against labels: accuracy, macro-F1, per-class precision/recall, confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support


@dataclass
class Scores:
    accuracy: float
    macro_f1: float
    per_class: pd.DataFrame  # class, precision, recall, f1, support
    confusion: np.ndarray  # rows = true class, columns = predicted class

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "macro_f1": self.macro_f1, "images": int(self.confusion.sum())}


def score(labels: np.ndarray, preds: np.ndarray, classes: list[str]) -> Scores:
    ids = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(labels, preds, labels=ids, zero_division=0)
    per_class = pd.DataFrame({"class": classes, "precision": precision, "recall": recall, "f1": f1, "support": support})
    return Scores(
        accuracy=float((labels == preds).mean()) if len(labels) else float("nan"),
        macro_f1=float(f1_score(labels, preds, labels=ids, average="macro", zero_division=0)),
        per_class=per_class,
        confusion=confusion_matrix(labels, preds, labels=ids),
    )


def most_confused(confusion: np.ndarray, classes: list[str], top: int = 10) -> list[tuple[str, str, int]]:
    """Off-diagonal (true, predicted, count) triples, largest first."""
    pairs = [
        (classes[i], classes[j], int(confusion[i, j]))
        for i in range(len(classes))
        for j in range(len(classes))
        if i != j and confusion[i, j] > 0
    ]
    return sorted(pairs, key=lambda t: -t[2])[:top]
