"""Pixel-level check that two images are the same capture (a copy), not two captures that look alike.

A perceptual-hash match only says two images have similar coarse structure; in a set of look-alike
photos (neighbouring cells of one panel, frames of one scene) most images match some other, and their
correlation can be 0.96-0.98. What tells a copy from a look-alike is what is *left* once everything a
copy may have undergone is undone:

1. **Align.** Both images are 64x64 greyscale thumbnails. The second is mapped onto the first by a
   scale and shift per axis (a resize, or a crop of up to 10 % per side, either way round), found by
   template matching of fine detail over the crop scales 0.95-0.8 and refined to sub-pixel accuracy by
   Gauss-Newton (Lucas-Kanade) together with a brightness gain and offset. An alignment counts only
   when one image's frame lies inside the other's (a crop), never a shift of the scene.
2. **Bound the residual.** In each 8x8 block of the aligned overlap, the residual energy is divided by
   the block's own detail energy (image minus a 3 px blur, the mean of both images) plus 2 grey levels
   of noise. Re-encoding, resizing and brightness changes *lose* detail: a copy's ratio stays near or
   below 1 in every block. A different capture brings its own detail (independent content: about 2),
   and a local difference such as a defect drives its block far above. The largest block ratio is the
   evidence; a copy needs it at most :data:`~imgclf.data.near_copy.COPY_RESIDUAL_BOUND`.

Example::

    a, b = thumbnail(Path("x.jpg")), thumbnail(Path("x_small.jpg"))
    compare(a, b).copy        # True: no block keeps more than 0.2 of its detail energy as residual
    compare(a, b).evidence()  # "aligned residual 0.20 x detail, copy bound 1.75"
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from imgclf.data.images import load_rgb, to_rgb
from imgclf.data.near_copy import COPY_RESIDUAL_BOUND

SIDE = 64
_MARGIN = 4  # pixels at the frame's edge: blur and resampling see the border there
_SCALES = (0.95, 0.90, 0.85, 0.80)  # crop scales searched (per side up to 10 %)
_MIN_SCALE = 0.78  # the smallest scale an alignment may end at (0.8 less rounding)
_SUB_PIXEL = 0.9  # straight detail correlation from which the in-place refinement is tried first
_GATE = 0.5  # detail correlation below which an alignment is not refined: no copy scores that low
_SIGMA = 3.0  # the blur whose removal leaves "detail"
_BLOCK = 8
_NOISE = 2.0 / 255  # grey levels a block may differ by whatever its detail
_CLIP = 3.0 / 255  # a channel this close to white may be clipped: such pixels are left out of the residual
_EDGE_TOLERANCE = 1.5  # pixels a crop's frame may overhang the other's (resampling at the border)
_DAMPING = 0.1  # Levenberg-Marquardt: short steps along directions the image barely constrains (a lone edge)


@dataclass(frozen=True)
class Comparison:
    """What the pixel check found for one pair: the largest block residual ratio and the alignment's correlation.

    ``residual`` is ``inf`` when no crop-or-resize alignment fits (the scenes are shifted or unrelated).
    """

    residual: float
    correlation: float
    bound: float = COPY_RESIDUAL_BOUND

    @property
    def copy(self) -> bool:
        return self.residual <= self.bound

    def evidence(self) -> str:
        if math.isinf(self.residual):
            return f"no crop or resize aligns them, detail correlation {self.correlation:.2f}"
        return f"aligned residual {self.residual:.2f} x detail, copy bound {self.bound:g}"


def thumbnail(path: Path) -> np.ndarray:
    """64x64x3 uint8 RGB copy of ``path`` (EXIF applied), aspect squeezed: alignment is searched later.

    Colour is kept for the residual: a brightened copy clips each channel on its own, which no single
    grey-level gain can explain; per channel, the clipped pixels are left out.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as image:
            image.draft("RGB", (2 * SIDE, 2 * SIDE))  # type: ignore[arg-type]  # JPEG: decode at reduced scale
            image.load()
            rgb = to_rgb(ImageOps.exif_transpose(image))
    return np.asarray(rgb.resize((SIDE, SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0), dtype=np.uint8)


def _channels(image: np.ndarray) -> np.ndarray:
    """``(channels, 64, 64)`` floats in 0..1 from a thumbnail (RGB uint8, or one float channel)."""
    if image.dtype == np.uint8:
        image = image.astype(np.float64) / 255.0
    image = image.astype(np.float64)
    return image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter  # 0.2 s to import: not on the path of `imgclf prepare --help`

    return gaussian_filter(image, sigma, mode="reflect")


def _detail(image: np.ndarray) -> np.ndarray:
    return image - _blur(image, _SIGMA)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 1e-12 else 0.0


def _window_sums(integral: np.ndarray, h: int, w: int) -> np.ndarray:
    return integral[h:, w:] - integral[:-h, w:] - integral[h:, :-w] + integral[:-h, :-w]


def _best_window(big: np.ndarray, small: np.ndarray) -> tuple[float, float, int, int]:
    """``(correlation, scale, x, y)``: ``small``'s detail resized by a crop scale, at its best place in ``big``.

    Only the template's interior is compared: near an edge the blur sees the crop's border instead of
    the neighbouring pixels the original has there.
    """
    m = _MARGIN
    detail_big = _detail(big)
    spectrum = np.fft.rfft2(detail_big)
    integral = np.pad(detail_big, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    integral_sq = np.pad(detail_big**2, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    best = (-1.0, 1.0, 0, 0)
    for scale in _SCALES:
        side = round(SIDE * scale)
        resized = np.asarray(
            Image.fromarray(small.astype(np.float32)).resize((side, side), Image.Resampling.BILINEAR), dtype=np.float64
        )
        tmpl = _detail(resized)[m : side - m, m : side - m]
        tmpl = tmpl - tmpl.mean()
        n = tmpl.shape[0]
        # correlation = convolution with the flipped template; keep the fully overlapping ("valid") part
        full = np.fft.irfft2(spectrum * np.fft.rfft2(tmpl[::-1, ::-1], s=detail_big.shape), s=detail_big.shape)
        sums = _window_sums(integral, n, n)
        energy = _window_sums(integral_sq, n, n) - sums * sums / (n * n)
        score = full[n - 1 :, n - 1 :] / np.maximum(
            np.sqrt(np.maximum(energy, 0.0)) * np.sqrt((tmpl * tmpl).sum()), 1e-12
        )
        score = score[m : SIDE - side + m + 1, m : SIDE - side + m + 1]  # the whole template inside ``big``
        y, x = np.unravel_index(int(np.argmax(score)), score.shape)
        if score[y, x] > best[0]:
            best = (float(score[y, x]), side / SIDE, int(x), int(y))
    return best


def _grid(shape: int = SIDE) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:shape, 0:shape].astype(np.float64)
    return xx, yy


def _overlap(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where ``b`` is sampled for each pixel of ``a`` (``x_b = p0 x + p1``, ``y_b = p2 y + p3``) and the interior both see."""
    xx, yy = _grid()
    xb, yb = p[0] * xx + p[1], p[2] * yy + p[3]
    lo, hi = _MARGIN, SIDE - 1 - _MARGIN
    inside = (xb >= lo) & (xb <= hi) & (yb >= lo) & (yb <= hi) & (xx >= lo) & (xx <= hi) & (yy >= lo) & (yy <= hi)
    return xb, yb, inside


def _refine(a: np.ndarray, b: np.ndarray, p: np.ndarray, coarse: bool = True) -> np.ndarray:
    """Gauss-Newton on scale and shift per axis with a brightness gain and offset, coarse (3 px blur) to fine (1 px).

    The coarse pass pulls in a start that is a few pixels off (a square crop scale where one axis was
    cropped less); the fine pass settles the sub-pixel alignment the residual bound needs.
    """
    p = p.astype(np.float64).copy()
    for sigma in (3.0, 1.0) if coarse else (1.0,):
        p = _gauss_newton(_blur(a, sigma), _blur(b, sigma), p)
    return p


def _gauss_newton(sa: np.ndarray, sb: np.ndarray, p: np.ndarray, iterations: int = 10) -> np.ndarray:
    from scipy.ndimage import map_coordinates

    xx, yy = _grid()
    for _ in range(iterations):
        xb, yb, inside = _overlap(p)
        if inside.sum() < SIDE * SIDE // 4:
            break
        warped = map_coordinates(sb, [yb, xb], order=1, mode="nearest")
        gy, gx = np.gradient(warped)  # in a's pixels: divide by the scale for b's
        v = warped[inside]
        gain, offset = _fit_gain(v, sa[inside])
        e = sa[inside] - gain * v - offset
        wx, wy = gain * gx[inside] / p[0], gain * gy[inside] / p[2]
        jac = np.stack([wx * xx[inside], wx, wy * yy[inside], wy, v, np.ones_like(v)], axis=1)
        normal = jac.T @ jac
        step = np.linalg.solve(normal + _DAMPING * np.diag(np.diag(normal)) + 1e-9 * np.eye(6), jac.T @ e)
        p += np.clip(step[:4], [-0.05, -3, -0.05, -3], [0.05, 3, 0.05, 3])
        p[[0, 2]] = np.clip(p[[0, 2]], _MIN_SCALE, 1 / _MIN_SCALE)  # a copy's scale: stay where one can be
        if np.abs(step[[1, 3]]).max() < 0.01 and np.abs(step[[0, 2]]).max() < 1e-4:
            break
    return p


def _fit_gain(v: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """Least-squares ``t ~ gain * v + offset`` (a brightness change)."""
    var = float(((v - v.mean()) ** 2).sum())
    gain = float(((v - v.mean()) * (t - t.mean())).sum() / var) if var > 1e-12 else 1.0
    return gain, float(t.mean() - gain * v.mean())


def _is_crop_or_resize(p: np.ndarray) -> bool:
    """Per axis, one frame lies inside the other (a crop of up to 10 % a side), at a plausible scale."""
    for scale, shift in ((p[0], p[1]), (p[2], p[3])):
        if not _MIN_SCALE <= scale <= 1 / _MIN_SCALE:
            return False
        last, tol = SIDE - 1, _EDGE_TOLERANCE
        b_in_a = -shift / scale >= -tol and (last - shift) / scale <= last + tol
        a_in_b = shift >= -tol and scale * last + shift <= last + tol
        if not (b_in_a or a_in_b):
            return False
    return True


def block_residual(a: np.ndarray, b: np.ndarray, p: np.ndarray) -> float:
    """Largest ratio, over 8x8 blocks of the overlap, of residual energy to the block's detail energy plus noise.

    ``a`` and ``b`` are ``(channels, 64, 64)``. Each channel gets its own gain and offset and leaves out the
    pixels where it is at white in either image (a brightened copy clips each channel on its own); the
    residual is that of the mean over the channels left, so JPEG's coarse colour cancels as in grey.
    """
    from scipy.ndimage import map_coordinates

    xb, yb, inside = _overlap(p)
    same_grid = np.array_equal(p, [1.0, 0.0, 1.0, 0.0])
    diff, detail, used = (np.zeros((SIDE, SIDE)) for _ in range(3))
    for ac, bc in zip(a, b):
        warped = bc if same_grid else map_coordinates(bc, [yb, xb], order=1, mode="nearest")
        valid = inside & (np.maximum(ac, warped) < 1 - _CLIP)
        if valid.sum() < 16:
            continue
        gain, offset = _fit_gain(warped[valid], ac[valid])
        diff += np.where(valid, ac - gain * warped - offset, 0.0)
        # detail is linear and blind to an offset: the fitted image's detail is gain x the warped one's
        detail += np.where(valid, _detail(ac) ** 2 + (gain * _detail(warped)) ** 2, 0.0)
        used += valid
    seen = used > 0
    residual = np.where(seen, (diff / np.maximum(used, 1)) ** 2, 0.0)
    detail = np.where(seen, detail / np.maximum(2 * used, 1), 0.0)
    n = SIDE // _BLOCK

    def per_block(x: np.ndarray) -> np.ndarray:
        return x.reshape(n, _BLOCK, n, _BLOCK).sum(axis=(1, 3))

    count = per_block(seen.astype(np.float64))
    full = count >= _BLOCK * _BLOCK // 2  # blocks mostly inside the overlap
    if full.sum() < 4:
        return math.inf
    ratio = per_block(residual)[full] / (per_block(detail)[full] + _NOISE**2 * count[full])
    return float(ratio.max())


def compare(a: np.ndarray, b: np.ndarray, bound: float = COPY_RESIDUAL_BOUND) -> Comparison:
    """The pixel check of one pair of :func:`thumbnail` arrays (see the module docstring)."""
    ca, cb = _channels(a), _channels(b)
    a, b = ca.mean(axis=0), cb.mean(axis=0)  # grey for the alignment; the channels for the residual
    colour = (ca, cb)
    m = _MARGIN
    straight = _ncc(_detail(a)[m:-m, m:-m], _detail(b)[m:-m, m:-m])
    identity = np.array([1.0, 0.0, 1.0, 0.0])
    if straight >= _GATE:  # most copies (re-encoded, resized, brightened) need no alignment at all
        best = Comparison(block_residual(*colour, identity), straight, bound)
        if best.copy:
            return best
    best = Comparison(math.inf, straight, bound)
    if straight >= _SUB_PIXEL:  # aligned but for a fraction of a pixel: refine in place before searching crops
        best = _try(a, b, straight, identity, best, colour, coarse=False)
        if best.copy:
            return best
    # template matching: ``b`` as a crop of ``a``, or ``a`` as a crop of ``b``; the better one is refined
    corr, s, x, y = _best_window(a, b)
    corr2, s2, x2, y2 = _best_window(b, a)
    if corr >= corr2:
        return _try(a, b, corr, np.array([1 / s, -x / s, 1 / s, -y / s]), best, colour)
    return _try(a, b, corr2, np.array([s2, x2, s2, y2]), best, colour)


def _try(
    a: np.ndarray, b: np.ndarray, corr: float, start: np.ndarray, best: Comparison, colour: tuple, coarse: bool = True
) -> Comparison:
    """``best``, or the alignment refined from ``start`` when it is a crop or resize with a smaller residual."""
    best = Comparison(best.residual, max(best.correlation, corr), best.bound)
    if corr < _GATE:
        return best
    p = _refine(a, b, start, coarse)
    if not _is_crop_or_resize(p):
        return best
    residual = block_residual(*colour, p)
    return Comparison(residual, best.correlation, best.bound) if residual < best.residual else best


def pixels_equal(a: Path, b: Path) -> bool:
    """True when both files decode (EXIF applied, RGB) to exactly the same pixels."""
    try:
        x, y = load_rgb(a), load_rgb(b)
    except Exception:  # noqa: BLE001 — an unreadable file is not pixel-equal to anything
        return False
    return x.size == y.size and np.array_equal(np.asarray(x), np.asarray(y))
