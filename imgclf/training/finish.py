"""The end of a run: restore the best weights, score them once more, calibrate, write summary.json."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from imgclf.eval.calibration import expected_calibration_error, fit_temperature, reliability_curve
from imgclf.eval.logits import EvalResult, validation_score, write_val_predictions
from imgclf.eval.metrics import metric_of
from imgclf.io import atomic_write_json
from imgclf.run.checkpoint import load_weights
from imgclf.run.rundir import RunDir
from imgclf.training.decision import decide

if TYPE_CHECKING:
    from imgclf.training.setup import Training


def finish(t: Training) -> dict[str, Any]:
    """Rank 0: best weights back in the model, validation predictions, calibration and the summary."""
    from imgclf.training.setup import score_validation

    if t.run.best.exists():
        t.model.load_state_dict(load_weights(t.run.best))
    summary = _summary(t)
    if t.has_validation:
        val = score_validation(t, alone=True, model=t.model)
        write_val_predictions(t.run.val_predictions, val, t.data, t.data.val_idx)
        t.skipped.update(t.data.samples.rel(t.data.val_data.paths[i]) for i in val.bad)
        if t.task.multiclass:
            summary.update(
                val_accuracy=val.accuracy, val_loss=val.loss, val_macro_f1=val.macro_f1, **calibrate(val, t.run)
            )
        else:
            summary.update(val_loss=val.loss, **_decided(t, val))
        metric = metric_of(t.cfg.train, t.task.kind)
        if metric.name != "accuracy" or not t.task.multiclass:
            summary[metric.column] = _finite(validation_score(metric, val, t.run.decision()))
        decision = summary.get("decision") or {}
        if decision.get("used"):  # tuned on these very images: the cross-fitted score is the one to trust
            summary[metric.column] = decision["tuned_cross_fitted"]
    else:
        summary[metric_of(t.cfg.train, t.task.kind).column] = None
        summary.update(
            val_accuracy=None,
            val_loss=None,
            val_macro_f1=None,
            validation="none: every training image was used for training, so this run has no validation score",
        )
    summary["skipped_images"] = sorted(t.skipped)
    atomic_write_json(t.run.summary, summary)
    return summary


def _decided(t: Training, val: EvalResult) -> dict[str, Any]:
    """A multilabel or regression run: its task, and the decision its metric reads (imgclf.training.decision)."""
    metric = metric_of(t.cfg.train, t.task.kind)
    record = decide(metric, t.task, val.labels, val.probs, t.run, seed=t.cfg.data.split_seed)
    task = {"task": t.task.kind, "labels": list(t.task.names), "layout": t.task.layout}
    if t.task.kind == "regression":
        task.update(target_mean=t.task.mean, target_std=t.task.std)
    return {**task, **({"decision": record} if record else {})}


def _summary(t: Training) -> dict[str, Any]:
    rows, cfg, stopper = t.rows, t.cfg, t.stopper
    best = rows[stopper.best_epoch - (rows[0]["epoch"] - 1)] if rows and stopper.best_epoch >= 0 else {}
    train_seconds = sum(float(r["epoch_seconds"]) for r in rows)
    return {
        "best_epoch": stopper.best_epoch + 1,
        "epochs_run": len(rows),
        "stopped_early": bool(stopper.should_stop and len(rows) < cfg.train.epochs),
        "train_seconds": train_seconds,
        "train_cpu_seconds": sum(float(r.get("epoch_cpu_seconds") or 0.0) for r in rows),
        "mean_epoch_seconds": train_seconds / max(len(rows), 1),
        "mean_images_per_second": float(np.mean([r["images_per_second"] for r in rows])) if rows else None,
        "backbone": cfg.model.backbone,
        "weights": t.weights_info.get("weights"),
        "pretrained": t.weights_info.get("pretrained"),
        "weights_note": t.weights_info.get("note"),
        "head": cfg.model.head,
        "strategy": cfg.finetune.strategy,
        "bn_policy": cfg.finetune.bn,
        "image_size": t.data.pre.image_size,
        "num_classes": len(t.data.samples.classes),
        "train_images": len(t.data.train_data),
        "val_images": len(t.data.val_data),
        "total_params": sum(p.numel() for p in t.model.parameters()),
        "trainable_params": max((r["trainable_params"] for r in rows), default=t.finetuner.trainable_parameters()),
        "best_epoch_val_accuracy": _finite(best.get("val_accuracy")),
        "metric": cfg.train.metric,
        **({"metric_k": cfg.train.metric_k} if cfg.train.metric == "top_k" else {}),
        "monitor": cfg.train.monitored,
        "keep": cfg.train.keep,
        "best_value": _finite(best.get(cfg.train.monitored, float("nan")))
        if t.has_validation
        else None,  # the kept epoch's
        "excluded_images": t.data.samples.excluded,
        "device": str(t.ctx.device),
        "seed": cfg.train.seed,
        **_imbalance(t),
    }


def _imbalance(t: Training) -> dict[str, Any]:
    """What the run did about class imbalance: the loss, the sampler and the class weights it used."""
    weights = t.criterion.class_weights if t.criterion is not None else None
    return {
        "loss": t.cfg.train.loss if t.cfg.train.loss != "focal" else f"focal(gamma={t.cfg.train.focal_gamma:g})",
        "sampler": t.cfg.data.sampler,
        "class_weights": dict(zip(t.data.samples.classes, weights.tolist())) if weights is not None else None,
    }


def calibrate(val: EvalResult, run: RunDir) -> dict[str, Any]:
    """Fit temperature scaling on the validation logits and store it in the run (calibration.json).

    Uncertainty thresholds (adaptive TTA) then mean the same thing for every model.
    """
    if len(val.labels) < 2:
        return {}
    logits, labels = torch.from_numpy(val.logits), torch.from_numpy(val.labels)
    temperature = fit_temperature(logits, labels)
    before = torch.softmax(logits, 1).numpy()
    after = torch.softmax(logits / temperature, 1).numpy()
    conf, acc, count = reliability_curve(after, val.labels)
    result = {
        "temperature": temperature,
        "ece_before": float(expected_calibration_error(before, val.labels)),
        "ece_after": float(expected_calibration_error(after, val.labels)),
    }
    atomic_write_json(
        run.calibration,
        {
            **result,
            "reliability": {
                "confidence": _nan_none(conf),
                "accuracy": _nan_none(acc),
                "count": [int(c) for c in count],
            },
        },
    )
    return result


def _finite(value: float | None) -> float | None:
    """JSON has no NaN: an undefined score is written as null."""
    return float(value) if value is not None and np.isfinite(value) else None


def _nan_none(values) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in values]
