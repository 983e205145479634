"""``imgclf evaluate`` for a multilabel or regression run: its metric and the task's standard scores, per label.

The images are the run's validation split (its ``split.csv`` holds each target as text) or every labelled image
of a dataset given. Scores are computed on the outputs the submission is made from: label probabilities turned
into label sets at the run's thresholds (``decisions.json`` when they paid, else 0.5), or values (graded at the
run's cut-points for ``qwk``). ``metrics.json`` holds them; for multilabel ``per_class.csv`` has one row per
label (support, precision, recall, F1 at its threshold, ROC AUC, average precision); ``predictions.csv`` has one
row per image (path, target, prediction, outputs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imgclf.data.samples import load_training_set
from imgclf.data.split import read_split_frame
from imgclf.errors import DataError, RunDirError
from imgclf.eval.metrics import get_metric, metric_of
from imgclf.io import atomic_path, atomic_write_json
from imgclf.run.rundir import EvalDir, RunDir
from imgclf.task import Task

NO_IMAGES_HINT = "pass a labelled dataset folder (e.g. one made by `imgclf prepare --holdout`)"
SCORES = {
    "multilabel": ("f1_micro", "f1_macro", "f1_samples", "f2_samples", "mean_auc", "map", "bce"),
    "regression": ("rmse", "mae", "r2"),
}


def target_images(run_dir: Path, dataset: Path | None, task: Task) -> tuple[list[Path], np.ndarray, Path, str]:
    """Paths, targets, the folder paths are relative to, and what they are, for ``evaluate``."""
    if dataset is not None:
        samples = load_training_set(Path(dataset), task=task.kind)
        if samples.targets is None or list(samples.classes) != list(task.names):
            raise DataError(
                f"{dataset} does not hold the run's {task.kind} targets ({', '.join(task.names[:5])}); "
                f"found {samples.task}: {', '.join(samples.classes[:5])}"
            )
        return list(samples.paths), np.asarray(samples.targets), samples.root, f"all labelled images of {dataset}"
    paths, cells, root = validation_split(Path(run_dir))
    return paths, task.parse_targets(cells, str(RunDir(Path(run_dir)).split)), root, "validation split"


def validation_split(run_dir: Path) -> tuple[list[Path], list[str], Path]:
    """A run's validation images (``split.csv``), their targets as written there, and the dataset folder."""
    run = RunDir(run_dir)
    if not run.config.is_file():
        raise RunDirError(f"{run_dir} has no validation split of its own; {NO_IMAGES_HINT}")
    run.require("split", "info")
    listed = run.read_dataset()
    root = listed.parent if listed.is_file() else listed
    split = read_split_frame(run.split, ("path", "label", "split"), inside=not listed.is_file())
    val = split[split["split"] == "val"]
    if val.empty:
        raise RunDirError(f"{run_dir} has no validation images (it trained on every image): {NO_IMAGES_HINT}")
    paths = [root / p for p in val["path"]]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"validation image {missing[0]} of this run no longer exists; pass a DATASET to evaluate on")
    return paths, [str(c) for c in val["label"]], root


def score_targets(task: Task, metric_name: str, targets: np.ndarray, outputs: np.ndarray, decision) -> dict[str, Any]:
    """The run's metric and the task's standard scores (:data:`SCORES`), each with its decision where it reads one."""
    names = dict.fromkeys(n for n in (metric_name, *SCORES[task.kind]) if n)
    scores: dict[str, Any] = {}
    for name in names:
        metric = get_metric(name, task=task.kind)
        value = metric.score(targets, outputs, decision=decision if metric.thresholded else None)
        scores[name] = float(value) if np.isfinite(value) else None
    return scores


BOOTSTRAP_DRAWS = 200


def bootstrap_se(
    metric, targets: np.ndarray, outputs: np.ndarray, decision, draws: int = BOOTSTRAP_DRAWS
) -> float | None:
    """The standard error of ``metric`` on these images: the spread of its value over ``draws`` resamples of the
    images with replacement (seeded, so two evaluations of the same predictions agree). One rule for every metric,
    means over images (F-scores per image, errors) and ranking scores over a set (AUC, average precision) alike."""
    rng = np.random.default_rng(0)
    n = len(targets)
    if n < 2:
        return None
    values = []
    for _ in range(draws):
        idx = rng.integers(0, n, n)
        value = metric.score(targets[idx], outputs[idx], decision=decision)
        if np.isfinite(value):
            values.append(value)
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def per_label(task: Task, targets: np.ndarray, probs: np.ndarray, thresholds: np.ndarray) -> pd.DataFrame:
    """One row per label: support, precision, recall and F1 at its threshold, ROC AUC, average precision."""
    from sklearn.metrics import average_precision_score, precision_recall_fscore_support, roc_auc_score

    pred = probs >= thresholds
    precision, recall, f1, support = precision_recall_fscore_support(targets, pred, zero_division=0)
    both = [0 < targets[:, j].sum() < len(targets) for j in range(len(task.names))]
    return pd.DataFrame(
        {
            "label": list(task.names),
            "support": support,
            "threshold": thresholds,
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "roc_auc": [roc_auc_score(targets[:, j], probs[:, j]) if ok else np.nan for j, ok in enumerate(both)],
            "average_precision": [
                average_precision_score(targets[:, j], probs[:, j]) if targets[:, j].any() else np.nan
                for j in range(len(task.names))
            ],
        }
    )


def write_target_evaluation(
    out: Path, task: Task, cfg: Any, rel_paths: list[str], targets: np.ndarray, outputs: np.ndarray, decided, extra
) -> dict[str, Any]:
    """metrics.json, per_class.csv (multilabel) and predictions.csv of one evaluation; returns metrics.json's dict."""
    files = EvalDir(out)
    out.mkdir(parents=True, exist_ok=True)
    metric = metric_of(cfg.train, task.kind)
    thresholds = None
    if task.kind == "multilabel":
        thresholds = np.asarray(decided if decided is not None else [0.5] * len(task.names), dtype=float)
    decision = thresholds if task.kind == "multilabel" else decided
    scores = score_targets(task, metric.name, targets, outputs, decision)
    se = bootstrap_se(metric, targets, outputs, decision if metric.thresholded else None)
    report = {
        "task": task.kind,
        "metric": metric.name,
        **scores,
        f"{metric.name}_se": se,
        "images": len(targets),
        **extra,
    }
    if metric.thresholded and decided is not None and extra.get("evaluated_on") == "validation split":
        report["tuned_on_these_images"] = (
            f"the {metric.name} above uses thresholds or cut-points tuned on these very images, so it flatters; "
            "decisions.json's tuned_cross_fitted is the score to trust"
        )
    atomic_write_json(files.metrics, report)
    if thresholds is not None:
        with atomic_path(files.per_class) as tmp:
            per_label(task, targets, outputs, thresholds).to_csv(tmp, index=False, float_format="%.4f")
    frame = pd.DataFrame({"path": rel_paths, "label": [task.target_text(t) for t in targets]})
    if thresholds is not None:
        frame["pred"] = [task.target_text(row) for row in (outputs >= thresholds).astype(float)]
    for j, name in enumerate(task.names):
        frame[f"prob_{name}" if task.kind == "multilabel" else "pred"] = outputs[:, j]
    with atomic_path(files.predictions) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")
    return report
