"""What a run's task changes at set-up: the :class:`Task` (with a regression target's mean and standard deviation
from the training split), the config keys that follow it, and the loss.

The config of a multilabel or regression run is resolved once, before ``config.yaml`` is written, so every later
stage reads concrete values (a multiclass run's config stays as written): ``data.task`` becomes the task found; ``train.metric`` left at its default (``accuracy``) becomes the task's
default metric (``map`` for multilabel, ``rmse`` for regression: accuracy would mean an exact match of every
label, or nothing at all); ``train.loss`` left at ``ce`` becomes the task's default loss (``bce`` / ``mse``).
A setting that cannot apply to the task is a one-line ConfigError, before anything is written.

``data.augment=auto`` is resolved before the transforms are built (:func:`resolve_augment`): the medium preset for
classes (left as ``auto`` in the config), the whole image mirrored left-right for label sets and values.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from imgclf.config import Config, with_overrides
from imgclf.data.samples import TrainingSet
from imgclf.errors import ConfigError, DataError
from imgclf.eval.metrics import default_metric, get_metric
from imgclf.task import Task
from imgclf.training.target_loss import TargetCriterion, label_pos_weight, resolve_loss

log = logging.getLogger("imgclf")


#: What ``data.augment=auto`` trains label sets and values with: the whole image, mirrored left-right, and the whole
#: image at evaluation. Their target is the whole image's (every label present, a count, a sum): a random crop of 35 %
#: of the area cuts items away and changes it, and the eval crop cuts the border. On the mosaic sets (9 epochs, the
#: same seed, paired on 6,000 test images) this beat the medium preset by +0.020 ± 0.002 F2 (multilabel) and by
#: 0.23 ± 0.02 RMSE (regression) (BENCHMARKS.md "Multi-label and regression targets").
WHOLE_IMAGE: dict[str, object] = {"data.augment": "none", "data.flips": "h", "data.eval_crop_pct": 1.0}


def resolve_augment(cfg: Config, kind: str) -> Config:
    """``cfg`` with ``data.augment=auto`` resolved for a ``kind`` of target: classes keep ``auto`` (the medium preset);
    label sets and values get :data:`WHOLE_IMAGE` on the keys ``auto`` leaves open (``data.flips`` and
    ``data.eval_crop_pct`` when unset; a ``data.crop_scale`` the user gave still applies)."""
    if kind == "multiclass" or cfg.data.augment != "auto":
        return cfg
    updates = {
        key: value
        for key, value in WHOLE_IMAGE.items()
        if key == "data.augment" or getattr(cfg.data, key.split(".")[1]) is None
    }
    return with_overrides(cfg, updates)


def task_for(samples: TrainingSet, train_idx: np.ndarray) -> Task:
    """The task of ``samples``; a regression target is standardised with its training split's mean and std."""
    names = tuple(samples.classes)
    if samples.task == "multiclass" or samples.targets is None:
        return Task("multiclass", names)
    layout = getattr(samples, "layout", "") or ("numeric" if samples.task == "regression" else "columns")
    if samples.task == "multilabel":
        return Task("multilabel", names, layout=layout)
    values = np.asarray(samples.targets, dtype=np.float64)[train_idx].ravel()
    std = float(values.std()) if len(values) > 1 else 1.0
    return Task("regression", names, float(values.mean()) if len(values) else 0.0, std if std > 0 else 1.0, layout)


def resolve_for_task(cfg: Config, task: Task) -> Config:
    """``cfg`` with ``data.task``, ``train.metric`` and ``train.loss`` made concrete for ``task`` (module docstring)."""
    if task.multiclass:  # the config stays as written: a rerun of an ablation or sweep compares it as it was
        resolve_loss(task, cfg.train.loss)  # a multilabel or regression loss on class labels stops here
        return cfg
    updates: dict[str, object] = {}
    if cfg.data.task != task.kind:
        updates["data.task"] = task.kind
    metric = cfg.train.metric
    if metric == "accuracy":
        metric = default_metric(task.kind)
        updates["train.metric"] = metric
        log.info("train.metric: %s, the %s default (set train.metric to score otherwise)", metric, task.kind)
    get_metric(metric, cfg.train.metric_k, task=task.kind)  # a metric of another task is a one-line error
    loss = resolve_loss(task, cfg.train.loss)
    if loss != cfg.train.loss:
        updates["train.loss"] = loss
    if cfg.train.label_smoothing is None:  # None: the task's default (0 for label sets), written down
        updates["train.label_smoothing"] = cfg.train.smoothing(task.kind)
    _refuse_class_settings(cfg, task)
    return with_overrides(cfg, updates) if updates else cfg


def _refuse_class_settings(cfg: Config, task: Task) -> None:
    if cfg.train.monitor == "val_accuracy":
        raise ConfigError(f"train.monitor=val_accuracy needs one class per image; this dataset is {task.kind}")
    if cfg.data.sampler == "balanced":
        raise ConfigError(f"data.sampler=balanced needs one class per image; this dataset is {task.kind}")
    if cfg.train.class_weights not in ("none", "balanced") or (
        task.kind == "regression" and cfg.train.class_weights != "none"
    ):
        raise ConfigError(
            f"train.class_weights={cfg.train.class_weights} does not apply to {task.kind} targets"
            + (" (multilabel takes balanced: a pos_weight per label)" if task.kind == "multilabel" else "")
        )


def target_criterion(cfg: Config, task: Task, targets: np.ndarray, is_main: bool) -> TargetCriterion:
    """The loss of a multilabel or regression run; ``targets`` are the training split's rows."""
    pos_weight = None
    if task.kind == "multilabel" and cfg.train.class_weights == "balanced":
        weights = label_pos_weight(np.asarray(targets, dtype=np.float32))
        pos_weight = torch.from_numpy(weights)
        if is_main:
            log.info("label pos_weight (balanced): %s", ", ".join(f"{n}={w:.3g}" for n, w in zip(task.names, weights)))
    return TargetCriterion(
        task,
        cfg.train.loss,
        cfg.train.smoothing(task.kind),
        cfg.train.mixup,
        cfg.train.cutmix,
        pos_weight=pos_weight,
        focal_gamma=cfg.train.focal_gamma,
    )


def dataset_task(cfg: Config, dataset: Path) -> str:
    """The task of ``dataset`` as ``cfg`` reads it (``data.task``, ``data.target_column``); ``multiclass`` when the data
    cannot be read here (what is wrong with it is the command's own first error)."""
    from imgclf.data.samples import load_training_set

    try:
        return load_training_set(Path(dataset), task=cfg.data.task, target_column=cfg.data.target_column).task
    except DataError:
        return "multiclass"
