"""Class-weighted and focal losses on soft targets: one formula for hard labels, label smoothing and mixup.

With ``q`` the target distribution of a sample (one-hot, smoothed, or timm Mixup's blend), ``p``
the softmax of its logits, ``w`` the class weights and ``gamma`` the focal exponent:

    loss_i   = -sum_c q_ic * (1 - p_ic) ** gamma * log p_ic      (Lin et al. 2017 focal loss, softmax form)
    weight_i =  sum_c q_ic * w_c                                  (the sample's class weight under its target)
    loss     =  sum_i weight_i * loss_i / sum_i weight_i

At ``gamma = 0`` and without weights this is exactly ``F.cross_entropy(..., label_smoothing=eps)``
(and timm's ``SoftTargetCrossEntropy`` for mixup targets); with one-hot targets and weights it is
``F.cross_entropy(..., weight=w)`` (a weighted mean). So label smoothing and mixup compose with both.

torchvision's ``sigmoid_focal_loss`` is the binary (sigmoid) form and timm has no softmax focal loss,
hence this short hand-written function.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_targets(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """One-hot targets with label smoothing, as ``F.cross_entropy(label_smoothing=...)`` defines it."""
    one_hot = F.one_hot(labels, num_classes).float()
    return one_hot * (1.0 - smoothing) + smoothing / num_classes


def weighted_focal_loss(
    logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None = None, gamma: float = 0.0
) -> torch.Tensor:
    """The mean (class-weighted) focal loss of ``logits`` against target distributions ``target`` (N, C)."""
    log_p = F.log_softmax(logits.float(), dim=1)
    per_class = -log_p if gamma == 0 else -((1.0 - log_p.exp()).clamp_min(0.0) ** gamma) * log_p
    per_sample = (target * per_class).sum(1)
    if class_weights is None:
        return per_sample.mean()
    sample_weight = (target * class_weights.to(target.device, target.dtype)).sum(
        1
    )  # not a matmul: autocast leaves it fp32
    # clamp: a batch of zero-weight classes only contributes nothing (instead of 0 / 0)
    return (sample_weight * per_sample).sum() / sample_weight.sum().clamp_min(1e-12)
