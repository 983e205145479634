"""Perceptual hashes of one image: the whole picture, plus crops of it, so that cropped copies still match.

The hash is imagehash's pHash algorithm (32x32 greyscale, 2-D DCT, the 8x8 lowest frequencies against
their median), computed for a stack of crops at once from one 64 px greyscale thumbnail (19 crops per
image through imagehash itself would cost more than decoding the image). A copy cropped by 5 % can be 20 bits away from
its original's pHash; it is at most 6 bits away from the original's matching crop hash (measured on
``bench/dedup_corpus.py``'s copies), so the candidate search compares whole-image hashes against
crop hashes as well.

Example::

    full, crops = perceptual_hashes(Image.open("a.jpg"))   # "c3a1...", [int, ...] (18 crop hashes)
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from PIL import Image

HASH_BITS = 64
#: Crops hashed besides the whole image: scales x positions (0 = left/top, 0.5 = centre, 1 = right/bottom).
CROP_SCALES = (0.95, 0.90)
CROP_POSITIONS = (0.0, 0.5, 1.0)
_THUMB = 64  # hash from a small greyscale copy: pHash only looks at 32x32 anyway
_SIDE = 32


def _crop_boxes(w: int, h: int) -> list[tuple[int, int, int, int]]:
    boxes = [(0, 0, w, h)]
    for scale in CROP_SCALES:
        cw, ch = max(1, round(w * scale)), max(1, round(h * scale))
        for fy in CROP_POSITIONS:
            for fx in CROP_POSITIONS:
                x, y = round((w - cw) * fx), round((h - ch) * fy)
                boxes.append((x, y, x + cw, y + ch))
    return boxes


def dct_hashes(stack: np.ndarray) -> list[int]:
    """pHash bits (as ints, imagehash's bit order) of a ``(n, 32, 32)`` greyscale stack."""
    dct = scipy.fft.dctn(stack, axes=(1, 2))[:, :8, :8].reshape(len(stack), 64)
    bits = dct > np.median(dct, axis=1, keepdims=True)
    weights = np.left_shift(np.uint64(1), np.arange(63, -1, -1, dtype=np.uint64))
    return [int(v) for v in (bits.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)]


def perceptual_hashes(image: Image.Image) -> tuple[str, list[int]]:
    """``(pHash of the whole image as 16 hex digits, pHashes of its crops)`` for an RGB or L image."""
    grey = image.convert("L")
    grey.thumbnail((_THUMB, _THUMB), Image.Resampling.LANCZOS)
    stack = np.stack([
        np.asarray(grey.resize((_SIDE, _SIDE), Image.Resampling.BILINEAR, box=box), dtype=np.float64)
        for box in _crop_boxes(*grey.size)
    ])  # fmt: skip
    hashes = dct_hashes(stack)
    return f"{hashes[0]:016x}", hashes[1:]


def pack_hashes(hashes: list[int]) -> str:
    return " ".join(f"{h:016x}" for h in hashes)


def unpack_hashes(text: str) -> list[int]:
    return [int(h, 16) for h in text.split()]
