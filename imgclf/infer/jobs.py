"""The two inference jobs the CLI runs: evaluate a run, and predict a folder into a submission."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgclf.config import TTAConfig
from imgclf.data.samples import load_training_set, resolve_test_images
from imgclf.data.split import read_split_frame
from imgclf.errors import DataError
from imgclf.eval.metrics import get_metric, metric_of
from imgclf.eval.scores import most_confused, score
from imgclf.infer.evaluate import write_scores
from imgclf.infer.predict import predict_paths
from imgclf.infer.predictions import Predictions
from imgclf.infer.submission import (
    find_sample_submission,
    match_sample_ids,
    read_format,
    write_probabilities,
    write_submission,
)
from imgclf.run.load import load_run
from imgclf.run.claim import check_distinct, check_file_out
from imgclf.run.rundir import RunDir

log = logging.getLogger("imgclf")


def evaluation_images(run_dir: Path, dataset: Path | None, classes: list[str]) -> tuple[list[Path], np.ndarray, Path, str]:
    """The run's own validation images (from split.csv), or every labelled image of ``dataset``."""
    run = RunDir(Path(run_dir))
    if dataset is None:
        run.require("split", "info")
        listed = run.read_dataset()
        root = listed.parent if listed.is_file() else listed
        split = read_split_frame(run.split, ("path", "label", "split"), inside=not listed.is_file())
        val = split[split["split"] == "val"]
        paths = [root / p for p in val["path"]]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise DataError(f"validation image {missing[0]} of this run no longer exists; pass a DATASET to evaluate on")
        labels = val["label"].tolist()
        what = "validation split"
    else:
        samples = load_training_set(Path(dataset))
        root = samples.root
        paths = samples.paths
        labels = [samples.classes[i] for i in samples.labels]
        what = f"all labelled images of {dataset}"
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise DataError(f"the evaluation data has classes the run never saw: {', '.join(unknown[:5])}")
    index = {c: i for i, c in enumerate(classes)}
    return paths, np.array([index[lbl] for lbl in labels]), root, what


def passes_histogram(pred: Predictions) -> dict[str, int]:
    return {str(k): int(v) for k, v in sorted(Counter(pred.passes.tolist()).items())}


def evaluate_run(
    run_dir: Path, dataset: Path | None = None, out: Path | None = None, *, tta: TTAConfig | None = None,
    batch_size: int = 64, device: str = "cpu",
) -> dict[str, Any]:
    """Score the run; write metrics.json, per_class.csv, confusion_matrix.{csv,png} into ``out``. A ``train --budget``
    run that trained several models (its ``ensemble.json``) is scored as the blend ``predict`` makes of them."""
    from imgclf.infer.model_set import predict_model_set, resolve_model_set

    loaded, models = load_run(run_dir, device), resolve_model_set(run_dir)
    paths, labels, root, what = evaluation_images(run_dir, dataset, loaded.classes)
    kwargs = dict(root=root, batch_size=batch_size, device=device, tta=tta)
    pred = predict_paths(loaded, paths, **kwargs) if models.kind == "run" else predict_model_set(models, paths, **kwargs)
    keep = {p: i for i, p in enumerate(paths)}
    y = labels[[keep[p] for p in pred.paths]]
    scores = score(y, pred.probs.argmax(1), loaded.classes)
    out = Path(out) if out else loaded.run.eval.root
    extra = {
        **_metric_report(loaded, pred, y),
        "evaluated_on": what,
        "models": len(models.members),
        "tta": (tta.mode if tta else "none"),
        "forward_passes": pred.total_passes,
        "passes_per_image": passes_histogram(pred),
        "seconds": pred.seconds,
        "skipped_images": [str(p) for p in pred.bad],
        "most_confused": most_confused(scores.confusion, loaded.classes),
    }
    extra.update(_calibration_report(loaded, pred, y))
    write_scores(out, scores, loaded.classes, extra)
    return {**scores.to_dict(), **extra, "out": str(out), "per_class": scores.per_class}


def _metric_report(loaded, pred: Predictions, y: np.ndarray) -> dict[str, Any]:
    """The run's ``train.metric`` (name and value, on the calibrated probabilities) and the log-loss."""
    metric = metric_of(loaded.cfg.train)
    report: dict[str, Any] = {"metric": metric.name, **({"metric_k": metric.k} if metric.name == "top_k" else {})}
    report["log_loss"] = _finite(get_metric("log_loss").score(y, pred.probs)) if len(y) else None
    if metric.name not in ("accuracy", "macro_f1", "log_loss"):  # those are in the scores already
        report[metric.name] = _finite(metric.score(y, pred.probs)) if len(y) else None
    return report


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _calibration_report(loaded, pred: Predictions, y: np.ndarray) -> dict[str, Any]:
    """ECE and log-loss before/after temperature scaling, when the run has a fitted temperature."""
    if pred.logits is None or loaded.temperature == 1.0 or not len(y):
        return {}
    from imgclf.eval.calibration import expected_calibration_error

    logits = torch.from_numpy(pred.logits)
    before = torch.softmax(logits, 1).numpy()
    after = torch.softmax(logits / loaded.temperature, 1).numpy()
    log_loss = get_metric("log_loss")
    return {
        "temperature": loaded.temperature,
        "ece_before": float(expected_calibration_error(before, y)),
        "ece_after": float(expected_calibration_error(after, y)),
        "log_loss_before": log_loss.score(y, before),
        "log_loss_after": log_loss.score(y, after),
    }


def expected_passes(images: int, members: int, tta: TTAConfig | None) -> int | None:
    """Forward passes a prediction will make: known ahead except for adaptive TTA."""
    if tta is None or tta.mode == "none":
        return images * members
    return images * members * min(tta.n, len(tta.views)) if tta.mode == "fixed" else None


def _predict_with_progress(models, paths: list[Path], progress: Any, **kwargs: Any):
    from imgclf.infer.model_set import predict_model_set

    if progress is None:
        return predict_model_set(models, paths, **kwargs)
    progress.start(expected_passes(len(paths), len(models.members), kwargs.get("tta")))
    try:
        return predict_model_set(models, paths, on_images=progress.advance, **kwargs)
    finally:
        progress.stop()


def check_outputs(out: Path, probs_out: Path | None, sample: Path | None) -> None:
    """The submission and the probabilities: two different CSV files, neither the sample nor a run's own file."""
    check_distinct({"--out": out, "--probs": probs_out}, inputs={"--sample": sample})
    check_file_out(out, "--out", (".csv",), own=(RunDir(Path(out).parent).submission.name,))
    if probs_out is not None:
        check_file_out(probs_out, "--probs", (".csv",))


def predict_folder(
    run_dir: Path, images: str | Path | Sequence[str | Path], out: Path, *, probs_out: Path | None = None,
    sample: Path | None = None, category: str = "auto", tta: TTAConfig | None = None, batch_size: int = 64,
    device: str = "cpu", engine: str = "torch", progress: Any = None,
) -> dict[str, Any]:
    """Predict the images named by ``images`` (a folder, files or glob patterns) and write a submission.

    ``run_dir`` may be a run, a CV folder or an ensemble folder: the members' calibrated probabilities
    are blended with their weights (see :mod:`imgclf.infer.model_set`). With a sample submission
    (``sample``, or ``sample_submission.csv`` beside an images folder), its ids are matched to files
    first — a missing or ambiguous id fails before any inference — and only the images it lists are
    predicted, in its order. ``progress`` (optional) gets ``start(total)`` with the forward passes to come (None
    when adaptive TTA decides per image), ``advance(n)`` after each pass of ``n`` images, and ``stop()``.
    """
    from imgclf.infer.model_set import resolve_model_set

    paths, base = resolve_test_images(images)
    one_folder = isinstance(images, (str, Path)) or len(images) == 1
    if sample is None and one_folder and Path(images if isinstance(images, (str, Path)) else images[0]).is_dir():
        sample = find_sample_submission(base)  # chosen files or a glob: a sample only when given
    check_outputs(out, probs_out, sample)
    models = resolve_model_set(run_dir)
    classes = models.classes()
    fmt = read_format(sample, classes, category, max_rows=len(paths))
    listed = match_sample_ids(fmt, paths, base)
    if len(listed) < len(paths):
        log.info("predicting the %d image(s) the sample lists; %d other image(s) ignored", len(listed), len(paths) - len(listed))
    pred = _predict_with_progress(models, listed, progress, root=base.parent, batch_size=batch_size, device=device,
                                  tta=tta, engine=engine)
    if pred.bad:
        raise DataError(
            f"{len(pred.bad)} test image(s) could not be decoded, e.g. {pred.bad[0]}; a submission needs every row — "
            "fix or replace them"
        )
    ids = list(fmt.ids) if fmt.ids is not None else [p.relative_to(base).as_posix() for p in pred.paths]
    write_submission(Path(out), ids, pred.probs, classes, fmt)
    if probs_out:
        write_probabilities(Path(probs_out), ids, pred.probs, classes, fmt.id_column)
    return {
        "images": len(ids), "models": len(models.members), "out": str(out), "format": fmt.describe,
        "sample": str(sample) if sample else None, "forward_passes": pred.total_passes,
        "passes_per_image": passes_histogram(pred), "seconds": pred.seconds,
    }
