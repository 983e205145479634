"""Write the scores of an evaluation: metrics.json, per_class.csv, confusion_matrix.{csv,png}."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from imgclf.eval.scores import Scores
from imgclf.io import atomic_path, atomic_write_json
from imgclf.report.figures import confusion_figure
from imgclf.report.plots import save_png
from imgclf.run.rundir import EvalDir


def write_scores(out: Path, scores: Scores, classes: list[str], extra: dict | None = None) -> None:
    files = EvalDir(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(files.metrics, {**scores.to_dict(), **(extra or {})})
    with atomic_path(files.per_class) as tmp:
        scores.per_class.to_csv(tmp, index=False, float_format="%.4f")
    with atomic_path(files.confusion_csv) as tmp:
        pd.DataFrame(scores.confusion, index=classes, columns=classes).to_csv(tmp)
    save_png(confusion_figure(scores.confusion, classes), files.confusion_png, dpi=110)


def write_predictions(out: Path, paths: list[str], labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> None:
    """``predictions.csv``: one row per scored image (its path relative to the data, label, prediction, confidence,
    correct), the per-image record that paired comparisons of two evaluations read."""
    preds = probs.argmax(1)
    frame = pd.DataFrame(
        {
            "path": paths,
            "label": [classes[i] for i in labels],
            "pred": [classes[i] for i in preds],
            "confidence": probs.max(1),
            "correct": preds == labels,
        }
    )
    with atomic_path(EvalDir(out).predictions) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")
