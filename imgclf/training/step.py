"""One optimiser step under mixed precision, like timm's ``NativeScaler``: autocast, scaled
backward, optional gradient clipping, step, and the scaler's state for resume.

    amp = AmpStep(device, enabled=True, grad_clip=1.0)
    with amp.autocast():
        loss = criterion(model(x), y)
    amp.backward(loss, optimizer)  # scaled backward, unscale + clip, step, update
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch

from imgclf.runtime import autocast_dtype


class AmpStep:
    """Holds the autocast dtype and the GradScaler (fp16 only: bf16 and fp32 need no scaling)."""

    def __init__(self, device: torch.device, enabled: bool, grad_clip: float | None = None):
        self.device = device
        self.dtype = autocast_dtype(device, enabled)
        self.grad_clip = grad_clip
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)

    def autocast(self) -> AbstractContextManager:
        return torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None)

    def backward(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, *, step: bool = True) -> None:
        """Scaled backward; with ``step`` also unscale, clip, step the optimiser and clear gradients
        (``step=False`` accumulates gradients for a later step)."""
        self.scaler.scale(loss).backward()
        if not step:
            return
        if self.grad_clip:
            self.scaler.unscale_(optimizer)
            params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        self.scaler.step(optimizer)
        self.scaler.update()
        optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scaler.load_state_dict(state)


class Criterion:
    """The training loss: cross-entropy with label smoothing, or — when mixup/cutmix is on — timm's
    ``Mixup`` (smoothing folded into its soft targets) with soft-target cross-entropy.

    It is only ever called on training batches: validation and prediction never see mixed images.
    With ``class_weights`` (one per class) or ``focal_gamma`` (focal loss), both kinds of target go
    through :func:`imgclf.training.losses.weighted_focal_loss`, which acts on the target distribution.
    """

    def __init__(
        self,
        num_classes: int,
        label_smoothing: float,
        mixup: float = 0.0,
        cutmix: float = 0.0,
        class_weights: torch.Tensor | None = None,
        focal_gamma: float | None = None,
    ):
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.class_weights = class_weights
        self.focal_gamma = focal_gamma  # None: cross-entropy
        self.mixup = None
        if mixup > 0 or cutmix > 0:
            from timm.data import Mixup
            from timm.loss import SoftTargetCrossEntropy

            self.mixup = Mixup(
                mixup_alpha=mixup, cutmix_alpha=cutmix, label_smoothing=label_smoothing, num_classes=num_classes
            )
            self.soft_ce = SoftTargetCrossEntropy()

    def mix(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mixed images and soft targets, or the batch untouched and None (mixup off, or an odd batch)."""
        if self.mixup is None or len(images) % 2:
            return images, None
        return self.mixup(images, labels)

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, soft: torch.Tensor | None) -> torch.Tensor:
        if self.class_weights is not None or self.focal_gamma is not None:
            from imgclf.training.losses import soft_targets, weighted_focal_loss

            target = soft if soft is not None else soft_targets(labels, self.num_classes, self.label_smoothing)
            return weighted_focal_loss(logits, target.float(), self.class_weights, self.focal_gamma or 0.0)
        if soft is not None:
            return self.soft_ce(logits, soft)
        return torch.nn.functional.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)


def make_ema(model: torch.nn.Module, decay: float) -> Any:
    """timm's ModelEmaV3 with warm-up: the average starts short and lengthens towards ``decay``,
    so a fine-tune of a few hundred steps is not dominated by the initial weights."""
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=decay, use_warmup=True)
