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
from imgclf.errors import DataError, RunDirError
from imgclf.eval.metrics import get_metric, metric_of
from imgclf.eval.scores import most_confused, score
from imgclf.infer.evaluate import write_predictions, write_scores
from imgclf.infer.evaluate_targets import NO_IMAGES_HINT, validation_split
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
from imgclf.run.rundir import BlendDir, RunDir, read_run_csv

log = logging.getLogger("imgclf")


def evaluation_images(
    run_dir: Path, dataset: Path | None, classes: list[str]
) -> tuple[list[Path], np.ndarray, Path, str]:
    """The run's own validation images (from split.csv), or every labelled image of ``dataset``.

    A run with no validation image (a run trained on every image) and no ``dataset`` is a one-line RunDirError
    saying what to pass.
    """
    if dataset is None:
        paths, labels, root = validation_split(Path(run_dir))
        what = "validation split"
    else:
        samples = load_training_set(Path(dataset))
        root = samples.root
        paths = samples.paths
        labels = [samples.classes[i] for i in samples.labels]
        what = f"all labelled images of {dataset}"
        if not paths:
            raise DataError(f"{dataset} has no labelled images to evaluate on; {NO_IMAGES_HINT}")
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise DataError(f"the evaluation data has classes the run never saw: {', '.join(unknown[:5])}")
    index = {c: i for i, c in enumerate(classes)}
    return paths, np.array([index[lbl] for lbl in labels]), root, what


def check_held_out(models, run_dir: Path) -> None:
    """Every member of a run's blend (``train --budget``'s ``members/N``) must have held the run's validation
    images out of its training, or the blend's score on them would be inflated."""
    from imgclf.data.split import read_split

    root = Path(run_dir).resolve()
    val = {p for p, s in read_split(RunDir(root).split).items() if s == "val"}
    for member, _ in models.members:
        split = RunDir(Path(member)).split
        if Path(member).resolve() == root:
            continue
        trained = {p for p, s in read_split(split).items() if s != "val"} if split.is_file() else val
        if val & trained:
            raise RunDirError(
                f"member {member} of {run_dir} trained on some of the run's validation images, so they "
                f"cannot score the blend; {NO_IMAGES_HINT}"
            )


def passes_histogram(pred: Predictions) -> dict[str, int]:
    return {str(k): int(v) for k, v in sorted(Counter(pred.passes.tolist()).items())}


def evaluate_run(
    run_dir: Path,
    dataset: Path | None = None,
    out: Path | None = None,
    *,
    tta: TTAConfig | None = None,
    batch_size: int = 64,
    device: str = "auto",
) -> dict[str, Any]:
    """Score ``run_dir`` on ``dataset`` (default: what it holds out); write metrics.json, per_class.csv and
    confusion_matrix.{csv,png} into ``out`` (default ``run_dir/eval``).

    ``run_dir`` may be any model set (:mod:`imgclf.infer.model_set`): a run, a ``train --budget`` run with
    members (scored as the blend ``predict`` makes, on the validation split they share), a CV folder or an
    ensemble folder. Without ``dataset`` a CV or ensemble folder is scored on its out-of-fold predictions
    (``oof.csv``: each image predicted by models that never trained on it), and a run on its validation split;
    a run with neither is a one-line RunDirError saying what to pass.
    """
    from imgclf.infer.model_set import predict_model_set, resolve_model_set

    models = resolve_model_set(run_dir)
    own = RunDir(Path(run_dir))
    if dataset is None and not own.config.is_file():
        return _evaluate_oof(models, out)
    loaded = load_run(run_dir if own.config.is_file() else models.members[0][0], device)
    if not loaded.task.multiclass:
        return _evaluate_targets(
            models, loaded, Path(run_dir), dataset, out, tta=tta, batch_size=batch_size, device=device
        )
    paths, labels, root, what = evaluation_images(run_dir, dataset, models.classes())
    if dataset is None and models.kind != "run":
        check_held_out(models, run_dir)
    kwargs = dict(root=root, batch_size=batch_size, device=device, tta=tta)
    pred = (
        predict_paths(loaded, paths, **kwargs) if models.kind == "run" else predict_model_set(models, paths, **kwargs)
    )
    keep = {p: i for i, p in enumerate(paths)}
    y = labels[[keep[p] for p in pred.paths]]
    scores = score(y, pred.probs.argmax(1), loaded.classes)
    out = Path(out) if out else (own.eval if own.config.is_file() else BlendDir(Path(run_dir)).eval).root
    extra = {
        **_metric_report(loaded.cfg, pred.probs, y),
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
    write_predictions(out, [_relative(p, root) for p in pred.paths], y, pred.probs, loaded.classes)
    return {**scores.to_dict(), **extra, "out": str(out), "per_class": scores.per_class}


def _evaluate_targets(
    models, loaded, run_dir: Path, dataset: Path | None, out: Path | None, **kwargs
) -> dict[str, Any]:
    """:func:`evaluate_run` for a multilabel or regression run (:mod:`imgclf.infer.evaluate_targets`)."""
    from imgclf.infer.evaluate_targets import target_images, write_target_evaluation
    from imgclf.infer.model_set import predict_model_set

    task = loaded.task
    paths, targets, root, what = target_images(run_dir, dataset, task)
    if dataset is None and models.kind != "run":
        check_held_out(models, run_dir)
    pred = predict_model_set(models, paths, root=root, **kwargs)
    keep = {p: i for i, p in enumerate(paths)}
    y = targets[[keep[p] for p in pred.paths]]
    own = RunDir(run_dir)
    out = Path(out) if out else (own.eval if own.config.is_file() else BlendDir(run_dir).eval).root
    tta = kwargs.get("tta")
    extra = {
        "evaluated_on": what,
        "models": len(models.members),
        "tta": tta.mode if tta else "none",
        "forward_passes": pred.total_passes,
        "seconds": pred.seconds,
        "skipped_images": [str(p) for p in pred.bad],
    }
    decided = loaded.decision if len(models.members) == 1 else None
    rel = [_relative(p, root) for p in pred.paths]
    report = write_target_evaluation(out, task, loaded.cfg, rel, y, pred.probs, decided, extra)
    return {**report, "out": str(out)}


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()


def _evaluate_oof(models, out: Path | None) -> dict[str, Any]:
    """A CV or ensemble folder scored on its ``oof.csv`` (no forward pass: the folds made those predictions)."""
    from imgclf.config import build_config, read_yaml

    blend = BlendDir(models.root)
    if not blend.oof.is_file():
        raise RunDirError(f"{models.root} has no out-of-fold predictions ({blend.oof.name}); {NO_IMAGES_HINT}")
    task = RunDir(Path(models.members[0][0])).read_task()
    if not task.multiclass:
        return _evaluate_target_oof(models, task, out)
    classes = models.classes()
    columns = [f"prob_{c}" for c in classes]
    frame = read_run_csv(
        blend.oof, ("path", "label", *columns), dtype={"path": str, "label": str}, keep_default_na=False
    )
    unknown = sorted(set(frame["label"]) - set(classes))
    if unknown or frame.empty:
        raise RunDirError(
            f"{blend.oof} has no usable rows (labels {', '.join(unknown[:3]) or 'none'}); {NO_IMAGES_HINT}"
        )
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[v] for v in frame["label"]])
    probs = frame[columns].to_numpy(dtype=float)
    scores = score(y, probs.argmax(1), classes)
    cfg = build_config(read_yaml(RunDir(models.members[0][0]).config))
    out = Path(out) if out else blend.eval.root
    extra = {
        **_metric_report(cfg, probs, y),
        **_oof_record(blend, len(y), len(models.members)),
        "passes_per_image": {},
        "most_confused": most_confused(scores.confusion, classes),
    }
    write_scores(out, scores, classes, extra)
    return {**scores.to_dict(), **extra, "out": str(out), "per_class": scores.per_class}


def _oof_record(blend: BlendDir, images: int, members: int) -> dict[str, Any]:
    """What metrics.json says of an evaluation on out-of-fold predictions (no forward pass, no TTA)."""
    return {
        "evaluated_on": f"its out-of-fold predictions ({blend.oof.name}: each of {images} images predicted by "
        "models that never trained on it)",
        "models": members,
        "tta": "none",
        "forward_passes": 0,
        "seconds": 0.0,
        "skipped_images": [],
        "source": "oof",
    }


def _evaluate_target_oof(models, task, out: Path | None) -> dict[str, Any]:
    """:func:`_evaluate_oof` for label sets and values: ``oof.csv``'s targets and outputs, the task's scores."""
    from imgclf.config import build_config, read_yaml
    from imgclf.infer.evaluate_targets import write_target_evaluation

    blend = BlendDir(models.root)
    columns = [f"prob_{c}" for c in task.names]
    frame = read_run_csv(
        blend.oof, ("path", "label", *columns), dtype={"path": str, "label": str}, keep_default_na=False
    )
    if frame.empty:
        raise RunDirError(f"{blend.oof} has no rows; {NO_IMAGES_HINT}")
    targets = task.parse_targets(frame["label"].tolist(), str(blend.oof))
    outputs = frame[columns].to_numpy(dtype=float)
    cfg = build_config(read_yaml(RunDir(models.members[0][0]).config))
    out = Path(out) if out else blend.eval.root
    extra = _oof_record(blend, len(frame), len(models.members))
    report = write_target_evaluation(out, task, cfg, frame["path"].tolist(), targets, outputs, None, extra)
    return {**report, "out": str(out)}


def _metric_report(cfg, probs: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """The run's ``train.metric`` (name and value, on the calibrated probabilities) and the log-loss."""
    metric = metric_of(cfg.train)
    report: dict[str, Any] = {"metric": metric.name, **({"metric_k": metric.k} if metric.name == "top_k" else {})}
    report["log_loss"] = _finite(get_metric("log_loss").score(y, probs)) if len(y) else None
    if metric.name not in ("accuracy", "macro_f1", "log_loss"):  # those are in the scores already
        report[metric.name] = _finite(metric.score(y, probs)) if len(y) else None
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


def decider(run: RunDir, task, members: int = 1):
    """What turns a multilabel or regression run's outputs into its submission (None: multiclass, or plain values):
    per-label thresholds (the tuned ones of ``decisions.json`` when they paid, else 0.5), or for a ``qwk`` run
    grades cut at its cut-points (tuned, else the midpoints), clipped to the grades it trained on. A blend of
    several models uses the defaults: its members' decisions were tuned for each member alone."""
    from imgclf.eval.decisions import apply_cutpoints

    record = run.read_decisions()
    tuned = run.decision() if members == 1 else None
    if task.kind == "multilabel":
        thresholds = np.asarray(tuned if tuned is not None else [0.5] * len(task.names))
        return lambda probs: np.asarray(probs) >= thresholds
    if task.kind == "regression" and record.get("kind") == "cutpoints" and record.get("grades"):
        grades = np.asarray(record["grades"], dtype=int)
        cuts = np.asarray(tuned) if tuned is not None else (grades[:-1] + grades[1:]) / 2.0
        return lambda values: apply_cutpoints(np.asarray(values).ravel(), cuts, grades)
    return None


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
    run_dir: Path,
    images: str | Path | Sequence[str | Path],
    out: Path,
    *,
    probs_out: Path | None = None,
    sample: Path | None = None,
    category: str = "auto",
    tta: TTAConfig | None = None,
    batch_size: int = 64,
    device: str = "auto",
    engine: str = "torch",
    progress: Any = None,
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

    models = resolve_model_set(run_dir)  # a run that is not there is the first thing to say
    classes = models.classes()
    paths, base = resolve_test_images(images)
    one_folder = isinstance(images, (str, Path)) or len(images) == 1
    if sample is None and one_folder and Path(images if isinstance(images, (str, Path)) else images[0]).is_dir():
        sample = find_sample_submission(base)  # chosen files or a glob: a sample only when given
    check_outputs(out, probs_out, sample)
    first = RunDir(Path(models.members[0][0]))
    task = first.read_task()
    fmt = read_format(sample, classes, category, max_rows=len(paths), task=task.kind)
    listed = match_sample_ids(fmt, paths, base)
    if len(listed) < len(paths):
        log.info(
            "predicting the %d image(s) the sample lists; %d other image(s) ignored",
            len(listed),
            len(paths) - len(listed),
        )
    pred = _predict_with_progress(
        models, listed, progress, root=base.parent, batch_size=batch_size, device=device, tta=tta, engine=engine
    )
    if pred.bad:
        raise DataError(
            f"{len(pred.bad)} test image(s) could not be decoded, e.g. {pred.bad[0]}; a submission needs every row — "
            "fix or replace them"
        )
    ids = list(fmt.ids) if fmt.ids is not None else [p.relative_to(base).as_posix() for p in pred.paths]
    write_submission(Path(out), ids, pred.probs, classes, fmt, decider(first, task, len(models.members)))
    if probs_out:
        write_probabilities(Path(probs_out), ids, pred.probs, classes, fmt.id_column)
    return {
        "images": len(ids),
        "models": len(models.members),
        "out": str(out),
        "format": fmt.describe,
        "sample": str(sample) if sample else None,
        "forward_passes": pred.total_passes,
        "passes_per_image": passes_histogram(pred),
        "seconds": pred.seconds,
    }
