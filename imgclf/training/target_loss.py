"""The training loss for multilabel and regression targets: rows of floats, not class indices.

- multilabel: ``bce`` (binary cross-entropy with logits, one per label; the default), ``asl`` (timm's
  ``AsymmetricLossMultiLabel``, Ridnik et al. 2021: easy negatives down-weighted, for long tag lists with
  few positives each) or ``focal`` (torchvision's sigmoid focal loss, ``train.focal_gamma``);
- regression: ``mse`` (the default) or ``huber`` (quadratic within one standard deviation, linear beyond: an
  outlier in the targets pulls less), both on the standardised target ``(y - mean) / std`` of :class:`Task`.

Label smoothing (multilabel) moves each 0/1 target towards 0.5 by ``eps / 2``; mixup and cutmix are timm's
``Mixup`` in its multi-label mode, which blends the images and the target rows with one ``lam`` (for
regression: the standardised values, so a blend of two images asks for the blend of their targets).
``train.class_weights=balanced`` gives each label the ``pos_weight`` negatives / positives of the training
split (capped at 100), BCE's standard correction for rare labels.

    crit = TargetCriterion(task, "bce", label_smoothing=0.1, mixup=0.2)
    images, soft = crit.mix(images, targets)
    loss = crit(model(images), targets, soft)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from imgclf.errors import ConfigError
from imgclf.task import Task

LOSSES = {"multilabel": ("bce", "asl", "focal"), "regression": ("mse", "huber")}
DEFAULT_LOSS = {"multilabel": "bce", "regression": "mse"}
MAX_POS_WEIGHT = 100.0


def resolve_loss(task: Task, loss: str) -> str:
    """The loss ``train.loss`` means for ``task``: ``ce`` (the config's default) is the task's default; a loss of
    another task is a one-line ConfigError."""
    if task.multiclass:
        if loss not in ("ce", "focal"):
            raise ConfigError(f"train.loss={loss} is for multilabel or regression targets; this dataset is multiclass")
        return loss
    if loss == "ce":
        return DEFAULT_LOSS[task.kind]
    if loss not in LOSSES[task.kind]:
        raise ConfigError(f"train.loss={loss} does not fit {task.kind} targets; choose {' | '.join(LOSSES[task.kind])}")
    return loss


def label_pos_weight(targets: np.ndarray) -> np.ndarray:
    """Per label: negatives / positives on the training split, capped at :data:`MAX_POS_WEIGHT`.

    >>> label_pos_weight(np.array([[1, 0], [1, 0], [0, 1], [1, 0]])).tolist()
    [0.3333333432674408, 3.0]
    """
    positives = targets.sum(0)
    return np.minimum((len(targets) - positives) / np.maximum(positives, 1), MAX_POS_WEIGHT).astype(np.float32)


class TargetCriterion:
    """The loss of a multilabel or regression run; the same ``mix`` / call protocol as the multiclass Criterion."""

    class_weights = None  # what the run summary reports for multiclass runs

    def __init__(
        self,
        task: Task,
        loss: str,
        label_smoothing: float = 0.0,
        mixup: float = 0.0,
        cutmix: float = 0.0,
        pos_weight: torch.Tensor | None = None,
        focal_gamma: float = 2.0,
    ):
        self.task, self.loss = task, loss
        self.smoothing = label_smoothing if task.kind == "multilabel" else 0.0
        self.pos_weight, self.focal_gamma = pos_weight, focal_gamma
        self.mixup = None
        if mixup > 0 or cutmix > 0:
            from timm.data import Mixup

            self.mixup = Mixup(
                mixup_alpha=mixup,
                cutmix_alpha=cutmix,
                label_smoothing=self.smoothing,
                num_classes=len(task.names),
                multi_label=True,
            )
        self._asl = None
        if loss == "asl":
            from timm.loss import AsymmetricLossMultiLabel

            self._asl = AsymmetricLossMultiLabel(reduction="mean", pos_weight=pos_weight)

    def mix(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mixed images and mixed (smoothed, standardised) target rows, or the batch untouched and None."""
        if self.mixup is None or len(images) % 2:
            return images, None
        return self.mixup(images, self.task.standardise(targets.float()))

    def target(self, targets: torch.Tensor) -> torch.Tensor:
        """What the model is trained to output for unmixed ``targets``: smoothed label sets move towards 0.5, as timm's
        multi-label ``Mixup`` moves the mixed rows."""
        y = self.task.standardise(targets.float())
        return y * (1.0 - self.smoothing) + 0.5 * self.smoothing if self.smoothing else y

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor, soft: torch.Tensor | None) -> torch.Tensor:
        y = soft.float() if soft is not None else self.target(targets)
        x = logits.float()
        if self.loss == "bce":
            pos = self.pos_weight.to(x.device) if self.pos_weight is not None else None
            return F.binary_cross_entropy_with_logits(x, y, pos_weight=pos)
        if self.loss == "asl":
            return self._asl(x, y)
        if self.loss == "focal":
            from torchvision.ops import sigmoid_focal_loss

            return sigmoid_focal_loss(x, y, gamma=self.focal_gamma, reduction="mean")
        if self.loss == "huber":
            return F.huber_loss(x, y, delta=1.0)
        return F.mse_loss(x, y)
