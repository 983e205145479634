"""What a prediction pass gives back: probabilities per image, with the passes and time it took."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
