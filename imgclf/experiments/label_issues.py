"""Label-error candidates from out-of-fold probabilities (cleanlab's confident learning).

The list is written in the blocklist format that ``prepare``'s review already uses
(:mod:`imgclf.data.blocklist`: ``key,reason``, ``#`` comments), most suspicious first, so
reviewing it is the same job: look at the images, delete the lines whose label is right,
append the rest to the dataset's ``blocklist.csv``.

Example::

    issues = rank_label_issues(oof.labels, oof.probs)        # row indices, most suspicious first
    write_label_issues(Path("cv/label_issues.csv"), oof, issues)
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from imgclf.experiments.oof import Oof
from imgclf.io import atomic_write_text


def rank_label_issues(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Indices of likely mislabelled rows, ranked by cleanlab's self-confidence (lowest first).

    Classes with fewer than two examples, or no rows at all, give an empty list (cleanlab needs
    per-class statistics).
    """
    labels = np.asarray(labels, dtype=int)
    probs = np.asarray(probs, dtype=float)
    if len(labels) == 0 or np.bincount(labels, minlength=probs.shape[1]).min() < 2:
        return np.zeros(0, dtype=int)
    from cleanlab.filter import find_label_issues

    probs = np.clip(probs, 1e-12, None)
    probs = probs / probs.sum(1, keepdims=True)
    # n_jobs=1: cleanlab otherwise forks a multiprocessing pool from this process, which already runs torch's and
    # the loaders' threads; a fork taken while one of them holds a lock deadlocks the pool's workers (seen in a
    # test run that hung for 20 minutes in Pool.terminate). The work is a few array passes: one process is fast.
    return np.asarray(find_label_issues(labels, probs, return_indices_ranked_by="self_confidence", n_jobs=1), dtype=int)


def rank_multilabel_issues(targets: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Indices of rows whose label set looks wrong, ranked by cleanlab's multi-label self-confidence (lowest first):
    ``cleanlab.multilabel_classification.filter.find_label_issues`` on the out-of-fold label probabilities. A label
    with fewer than two positives gives an empty list (cleanlab needs per-label statistics)."""
    targets = np.asarray(targets) >= 0.5
    if len(targets) == 0 or targets.sum(0).min() < 2:
        return np.zeros(0, dtype=int)
    from cleanlab.multilabel_classification.filter import find_label_issues

    labels = [list(np.flatnonzero(row)) for row in targets]
    probs = np.clip(np.asarray(probs, dtype=float), 1e-6, 1 - 1e-6)
    ranked = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence", n_jobs=1)  # n_jobs: above
    return np.asarray(ranked, dtype=int)


#: Iglewicz and Hoaglin's cut on the modified z-score, 0.6745 (r - median) / MAD: beyond 3.5 a residual is an outlier.
OUTLIER_Z = 3.5


def rank_value_issues(targets: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Indices of rows whose value looks wrong, ranked by cleanlab's regression label quality (lowest first):
    ``cleanlab.regression.rank.get_label_quality_scores`` on the out-of-fold predictions ranks, and only rows whose
    out-of-fold residual is an outlier (modified z-score beyond :data:`OUTLIER_Z`) are listed. cleanlab's own count
    (``CleanLearning``) refits the model once per share it tries; a CNN cannot afford that, so the cut is the
    residuals' own robust outlier rule: no list is a fixed share of the data."""
    y = np.asarray(targets, dtype=float).reshape(-1)
    pred = np.asarray(predictions, dtype=float).reshape(-1)
    if len(y) < 3:
        return np.zeros(0, dtype=int)
    residual = pred - y
    mad = float(np.median(np.abs(residual - np.median(residual))))
    if mad <= 0:
        return np.zeros(0, dtype=int)
    outlier = np.abs(0.6745 * (residual - np.median(residual)) / mad) > OUTLIER_Z
    from cleanlab.regression.rank import get_label_quality_scores

    quality = get_label_quality_scores(y, pred)
    return np.asarray([i for i in np.argsort(quality, kind="stable") if outlier[i]], dtype=int)


def render_label_issues(oof: Oof, ranked: np.ndarray) -> str:
    """Blocklist text: one ``path,reason`` line per candidate, in rank order."""
    buf = io.StringIO()
    buf.write(
        "# Label-error candidates found by `imgclf cv` (cleanlab confident learning on out-of-fold probabilities),\n"
        "# most suspicious first. Review the images: delete the lines whose label is right, then append the rest\n"
        "# to the dataset's blocklist.csv (or fix the labels) and train again.\n"
    )
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["key", "reason"])
    for rank, i in enumerate(ranked, start=1):
        if oof.task.kind == "regression":
            given, said = float(oof.labels[i].ravel()[0]), float(oof.probs[i].ravel()[0])
            writer.writerow(
                [oof.paths[i], f"label issue #{rank}: labelled {given:.6g}, out-of-fold model says {said:.6g}"]
            )
            continue
        if not oof.task.multiclass:  # a label set: what it says and what the out-of-fold model says
            given, said = (
                oof.task.target_text(oof.labels[i]) or "(none)",
                oof.task.target_text(oof.probs[i]) or "(none)",
            )
            writer.writerow([oof.paths[i], f"label issue #{rank}: labelled {given}, out-of-fold model says {said}"])
            continue
        given, predicted = int(oof.labels[i]), int(oof.probs[i].argmax())
        writer.writerow(
            [
                oof.paths[i],
                f"label issue #{rank}: labelled {oof.classes[given]} (p={oof.probs[i, given]:.3f}), "
                f"out-of-fold model says {oof.classes[predicted]} (p={oof.probs[i, predicted]:.3f})",
            ]
        )
    return buf.getvalue()


def write_label_issues(path: Path, oof: Oof, ranked: np.ndarray) -> Path:
    atomic_write_text(Path(path), render_label_issues(oof, ranked))
    return Path(path)


def precision_recall(found: set[str], truth: set[str]) -> dict[str, float]:
    """How well a candidate list finds known label errors (the benchmark's flipped labels)."""
    hits = len(found & truth)
    return {
        "candidates": len(found),
        "flipped": len(truth),
        "precision": hits / len(found) if found else float("nan"),
        "recall": hits / len(truth) if truth else float("nan"),
    }
