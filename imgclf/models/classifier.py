"""The model every stage uses: a timm backbone (pooled features) followed by a head."""

from __future__ import annotations

import torch
from torch import nn


class ImageClassifier(nn.Module):
    """``backbone`` (timm, ``num_classes=0``) → ``head``.

    ``keep_eval`` holds modules that must stay in eval mode even while the model trains
    (BatchNorm layers under a frozen-statistics policy). ``train()`` re-applies it every
    time, so no caller can accidentally switch those layers back to batch statistics.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.keep_eval: tuple[nn.Module, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def train(self, mode: bool = True) -> "ImageClassifier":
        super().train(mode)
        if mode:
            for module in self.keep_eval:
                module.eval()
        return self
