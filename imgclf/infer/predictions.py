"""What a prediction pass gives back: probabilities per image, with the passes and time it took."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Predictions:
    probs: np.ndarray  # (n, classes) — rows align with ``paths`` minus ``bad``
    paths: list[Path]
    passes: np.ndarray  # forward passes spent per image
    bad: list[Path]
    seconds: float
    logits: np.ndarray | None = None  # plain (no-TTA) logits, before temperature

    @property
    def total_passes(self) -> int:
        return int(self.passes.sum())


class CountedModel:
    """A model (PyTorch or :class:`imgclf.infer.export.OnnxEngine`) that reports how many images each forward
    pass took to ``on_images`` (a progress bar counts them), and otherwise behaves as the model does."""

    def __init__(self, model: Any, on_images: Callable[[int], None]):
        self.model = model
        self.on_images = on_images

    def eval(self) -> "CountedModel":
        self.model.eval()
        return self

    def __call__(self, images: Any) -> Any:
        out = self.model(images)
        self.on_images(int(images.shape[0]))
        return out
