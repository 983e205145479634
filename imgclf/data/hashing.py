"""Perceptual hashes of one image: the whole picture, plus crops of it, so that cropped copies still match.

The hash is imagehash's pHash algorithm (32x32 greyscale, 2-D DCT, the 8x8 lowest frequencies against
their median), computed for a stack of crops at once from one 64 px greyscale thumbnail, each crop
brought to 32x32 by an antialiasing (triangle-filter) resize written as two small matrix products
(101 crops per image through imagehash itself would cost more than decoding the image). A copy cropped by 5 % can be 20 bits away from
its original's pHash, but only a few bits from the original's hash of the matching crop, so the
candidate search compares whole-image hashes against crop hashes as well. Crop positions step by a
quarter of the slack (5 per axis): with 3 per axis one 5 % crop in 1,429 was 8 bits from its
original's nearest crop hash (bench/dedup.py, 10k set); with 5 it is 4.

Example::

    full, crops = perceptual_hashes(Image.open("a.jpg"))   # "c3a1...", [int, ...] (100 crop hashes)
"""

from __future__ import annotations

import numpy as np
from PIL import Image

HASH_BITS = 64
#: Crops hashed besides the whole image: scales x positions (0 = left/top, 0.5 = centre, 1 = right/bottom).
CROP_SCALES = (0.95, 0.90, 0.85, 0.80)
CROP_POSITIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
_THUMB = 64  # hash from a small greyscale copy: pHash only looks at 32x32 anyway
_SIDE = 32


def _resize_matrix(n_in: int, n_out: int = _SIDE) -> np.ndarray:
    """``(n_out, n_in)`` weights of an antialiasing linear (triangle) resize, rows summing to 1."""
    scale = n_in / n_out
    support = max(1.0, scale)
    centre = (np.arange(n_out) + 0.5) * scale
    weights = np.maximum(0.0, 1.0 - np.abs((np.arange(n_in) + 0.5)[None, :] - centre[:, None]) / support)
    return weights / weights.sum(axis=1, keepdims=True)


def crop_stack(grey: np.ndarray) -> np.ndarray:
    """``(1 + 4 * 25, 32, 32)``: the whole image, then each crop scale at 5 x 5 positions, resized to 32x32."""
    h, w = grey.shape
    out = [(_resize_matrix(h) @ grey @ _resize_matrix(w).T)[None]]
    for scale in CROP_SCALES:
        ch, cw = max(1, round(h * scale)), max(1, round(w * scale))
        windows = np.stack([
            grey[round((h - ch) * fy) : round((h - ch) * fy) + ch, round((w - cw) * fx) : round((w - cw) * fx) + cw]
            for fy in CROP_POSITIONS
            for fx in CROP_POSITIONS
        ])  # fmt: skip
        # batched small products: one big reshaped product would hand the work to threaded BLAS, slower here
        out.append(_resize_matrix(ch) @ windows @ _resize_matrix(cw).T)
    return np.concatenate(out)


def _dct_basis(n: int = _SIDE, k: int = 8) -> np.ndarray:
    """The first ``k`` rows of the (unnormalised) DCT-II matrix: only the 8x8 lowest frequencies are hashed."""
    return np.cos(np.pi * np.arange(k)[:, None] * (2 * np.arange(n)[None, :] + 1) / (2 * n))


def dct_hashes(stack: np.ndarray) -> list[int]:
    """pHash bits (as ints, imagehash's bit order) of a ``(n, 32, 32)`` greyscale stack."""
    basis = _dct_basis()
    low = (basis @ stack @ basis.T).reshape(len(stack), 64)  # = scipy's 2-D DCT-II [:8, :8] / 4
    bits = low > np.median(low, axis=1, keepdims=True)
    weights = np.left_shift(np.uint64(1), np.arange(63, -1, -1, dtype=np.uint64))
    return [int(v) for v in (bits.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)]


def perceptual_hashes(image: Image.Image) -> tuple[str, list[int]]:
    """``(pHash of the whole image as 16 hex digits, pHashes of its crops)`` for an RGB or L image."""
    grey = image.convert("L")
    grey.thumbnail((_THUMB, _THUMB), Image.Resampling.LANCZOS)
    hashes = dct_hashes(crop_stack(np.asarray(grey, dtype=np.float64)))
    return f"{hashes[0]:016x}", hashes[1:]


def pack_hashes(hashes: list[int]) -> str:
    return " ".join(f"{h:016x}" for h in hashes)


def unpack_hashes(text: str) -> list[int]:
    return [int(h, 16) for h in text.split()]
