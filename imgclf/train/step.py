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
