"""Score a run on labelled images: accuracy, macro-F1, per-class precision/recall, confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from imgclf.io import atomic_path, atomic_write_json


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
        for i in range(len(classes)) for j in range(len(classes)) if i != j and confusion[i, j] > 0
    ]
    return sorted(pairs, key=lambda t: -t[2])[:top]


_MAX_ANNOTATED = 30  # above this many classes, cell counts would be unreadable


def confusion_figure(confusion: np.ndarray, classes: Sequence[str]) -> Figure:
    """Rows = true class, columns = predicted; counts written in the cells of small matrices."""
    n = len(classes)
    side = min(3.0 + 0.3 * n, 14.0)
    fig = Figure(figsize=(side + 1.0, side))
    ax = fig.add_subplot()
    shown = ax.imshow(confusion, cmap="Blues", interpolation="nearest")
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    fontsize = 8 if n <= _MAX_ANNOTATED else max(3, int(240 / n))
    ax.set_xticks(range(n), [str(c) for c in classes], rotation=45, ha="right", fontsize=fontsize)
    ax.set_yticks(range(n), [str(c) for c in classes], fontsize=fontsize)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if n <= _MAX_ANNOTATED:
        top = confusion.max() if confusion.size else 0
        for i in range(n):
            for j in range(n):
                if confusion[i, j]:
                    ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if confusion[i, j] > top / 2 else "black")
    fig.tight_layout()
    return fig



def plot_confusion(confusion: np.ndarray, classes: list[str], path: Path) -> None:
    with atomic_path(path) as tmp:
        confusion_figure(confusion, classes).savefig(tmp, format="png", dpi=110)


def write_scores(out: Path, scores: Scores, classes: list[str], extra: dict | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "metrics.json", {**scores.to_dict(), **(extra or {})})
    with atomic_path(out / "per_class.csv") as tmp:
        scores.per_class.to_csv(tmp, index=False, float_format="%.4f")
    with atomic_path(out / "confusion_matrix.csv") as tmp:
        pd.DataFrame(scores.confusion, index=classes, columns=classes).to_csv(tmp)
    plot_confusion(scores.confusion, classes, out / "confusion_matrix.png")
