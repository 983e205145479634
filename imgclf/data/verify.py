"""Pixel-level check that two images are the same photo: aligned at 64x64, compared on fine detail.

A perceptual-hash match only says two images have similar coarse structure; in a set of look-alike
photos (one kind of object, same lighting) most images match some other. The check here compares
*detail*: both images go to 64x64 greyscale, a Gaussian blur (sigma 3 px) is subtracted so shared
lighting and layout drop out, and what remains is compared by normalised correlation. Cropped
copies (up to 10 % per side) are aligned first by trying the crop scales 1, 0.95 and 0.9 per axis at
every offset, in both directions; the best alignment counts.

Example::

    a, b = thumbnail(Path("x.jpg")), thumbnail(Path("x_small.jpg"))
    detail_correlation(a, b) >= NEAR_COPY_THRESHOLD
"""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from imgclf.data.images import load_rgb, to_rgb

SIDE = 64
_SCALES = (1.0, 0.95, 0.90)
_MARGIN = 4
_SURE = 0.97
_SIGMA = 3.0


def thumbnail(path: Path) -> np.ndarray:
    """64x64 greyscale float32 copy of ``path`` (EXIF applied), aspect squeezed: alignment is searched later."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as image:
            image.draft("RGB", (2 * SIDE, 2 * SIDE))  # type: ignore[arg-type]  # JPEG: decode at reduced scale
            image.load()
            grey = to_rgb(ImageOps.exif_transpose(image)).convert("L")
    grey = grey.resize((SIDE, SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(grey, dtype=np.float32) / 255.0


def _detail(image: np.ndarray) -> np.ndarray:
    from scipy.ndimage import gaussian_filter  # 0.2 s to import: not on the path of `imgclf prepare --help`

    return image - gaussian_filter(image, _SIGMA, mode="reflect")


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 1e-9 else 0.0


def _best_window(big: np.ndarray, small: np.ndarray) -> float:
    """Best correlation of ``small``'s detail (rescaled to each crop size) with windows of ``big``'s detail.

    Only the template's interior (``_MARGIN`` from its edges) is compared: near an edge the filter sees
    the crop's border instead of the neighbouring pixels the original has there.
    """
    m = _MARGIN
    detail_big = _detail(big.astype(np.float64))
    spectrum = np.fft.rfft2(detail_big)
    integral = np.pad(detail_big, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    integral_sq = np.pad(detail_big**2, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    best = -1.0
    for sx, sy in itertools.product(_SCALES, _SCALES):
        w, h = round(SIDE * sx), round(SIDE * sy)
        if w == h == SIDE:
            continue
        resized = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR), dtype=np.float64)
        tmpl = _detail(resized)[m : h - m, m : w - m]
        tmpl = tmpl - tmpl.mean()
        th, tw = tmpl.shape
        # correlation = convolution with the flipped template; keep the fully overlapping ("valid") part
        full = np.fft.irfft2(spectrum * np.fft.rfft2(tmpl[::-1, ::-1], s=detail_big.shape), s=detail_big.shape)
        cross = full[th - 1 :, tw - 1 :]
        sums = _window_sums(integral, th, tw)
        energy = _window_sums(integral_sq, th, tw) - sums * sums / (tw * th)
        score = cross / np.maximum(np.sqrt(np.maximum(energy, 0.0)) * np.sqrt((tmpl * tmpl).sum()), 1e-9)
        # interior positions whose full template (margin included) lies inside ``big``
        best = max(best, float(score[m : SIDE - h + m + 1, m : SIDE - w + m + 1].max()))
    return best


def _window_sums(integral: np.ndarray, h: int, w: int) -> np.ndarray:
    return integral[h:, w:] - integral[:-h, w:] - integral[h:, :-w] + integral[:-h, :-w]


def detail_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised correlation of fine detail at the best alignment (1.0 = same pixels up to brightness).

    The straight alignment is tried first; the crop search only runs when it scores below
    ``_SURE`` (a straight score that high leaves nothing for a crop to explain).
    """
    m = _MARGIN
    straight = _ncc(_detail(a.astype(np.float64))[m:-m, m:-m], _detail(b.astype(np.float64))[m:-m, m:-m])
    if straight >= _SURE:
        return straight
    return max(straight, _best_window(a, b), _best_window(b, a))


def pixels_equal(a: Path, b: Path) -> bool:
    """True when both files decode (EXIF applied, RGB) to exactly the same pixels."""
    try:
        x, y = load_rgb(a), load_rgb(b)
    except Exception:  # noqa: BLE001 — an unreadable file is not pixel-equal to anything
        return False
    return x.size == y.size and np.array_equal(np.asarray(x), np.asarray(y))
