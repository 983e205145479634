"""Torch datasets over image paths; decoding failures are skipped, not fatal."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from imgclf.data.images import load_rgb

log = logging.getLogger("imgclf")

Loader = Callable[[Path], Image.Image]


class ImageDataset(Dataset):
    """``(tensor, label, index, ok)`` per item; ``ok`` is False when the file would not decode.

    A broken file must never stop a run: the item comes back as a zero tensor with
    ``ok=False`` and :func:`collate_skip_bad` drops it from the batch, reporting its index.
    Only decoding counts: an error in ``transform`` on a decoded image propagates.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        labels: Sequence[int] | Sequence[np.ndarray] | None,
        transform: Callable,
        loader: Loader = load_rgb,
    ):
        self.paths = list(paths)
        self.labels = list(labels) if labels is not None else [-1] * len(self.paths)
        self.transform = transform
        self.loader = loader
        self._shape: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def load_image(self, index: int) -> Image.Image:
        return self.loader(self.paths[index])

    def __getitem__(self, index: int):
        try:
            image = self.load_image(index)  # fully decoded: a file's problems all surface here
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            log.warning(
                "skipping unreadable image %s: %s",
                self.paths[index],
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            )
            return torch.zeros(self._shape or (3, 1, 1)), self.labels[index], index, False
        # Outside the try: an augmentation that fails on a decoded image is a bug to see, never an unreadable file.
        tensor = self.transform(image)
        self._shape = tuple(tensor.shape)
        return tensor, self.labels[index], index, True


def collate_skip_bad(items):
    """Stack the good items; return ``(images, labels, indices, bad_indices)``: labels int64 class indices, or
    float32 rows when the items' labels are numpy arrays (multilabel 0/1 vectors, regression targets)."""
    good = [it for it in items if it[3]]
    bad = [int(it[2]) for it in items if not it[3]]
    if not good:
        return None, None, None, bad
    images = torch.stack([it[0] for it in good])
    if isinstance(good[0][1], np.ndarray):  # multilabel or regression targets: float rows
        labels = torch.as_tensor(np.stack([it[1] for it in good]), dtype=torch.float32)
    else:
        labels = torch.tensor([it[1] for it in good], dtype=torch.long)
    indices = torch.tensor([it[2] for it in good], dtype=torch.long)
    return images, labels, indices, bad
