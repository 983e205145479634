"""Synthetic corpora for near-duplicate detection (used by ``bench/dedup.py`` and ``tests/test_dedup.py``).

* :func:`lookalike_corpus` — distinct images that look alike: crops of one micrograph-like texture taken
  at least 25 % of a side apart, under the same illumination, each with its own small mark at a random
  place. Their perceptual hashes are close (that is the trap); none is a copy of another.
* :func:`copies_corpus` — originals, each with altered copies: JPEG quality 40, resized x0.5, a 5 % crop,
  brightness +10 % and -10 %, and a PNG of the decoded JPEG. One copy of every fourth original sits in
  ``test/``: a train/test leak.

Both write ``train/<class>/*`` and ``test/*`` under ``root`` and return ``{path: origin}`` (origin = the
index of the source photo, or of the crop for the look-alike set).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

COPY_KINDS = ("jpeg40", "half", "crop5", "bright", "dark", "png")


def _texture(seed: int, size: int) -> np.ndarray:
    """Cells on a background with fine grain: a stand-in for a micrograph (float, 0..1)."""
    rng = np.random.default_rng(seed)
    canvas = Image.new("L", (size, size), 110)
    draw = ImageDraw.Draw(canvas)
    for _ in range(size * size // 120):
        x, y, r = rng.integers(0, size), rng.integers(0, size), rng.integers(2, 5)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=int(rng.integers(118, 135)), outline=100)
    canvas = canvas.filter(ImageFilter.GaussianBlur(0.8))
    return np.asarray(canvas, dtype=np.float64) / 255 + rng.normal(0, 0.02, (size, size))


def lookalike_images(n: int, side: int = 128, seed: int = 0) -> list[Image.Image]:
    """``n`` distinct look-alike RGB images (see the module docstring)."""
    step = side // 4
    grid = int(np.ceil(np.sqrt(n)))
    texture = _texture(seed, step * (grid - 1) + side)
    yy, xx = np.mgrid[0:side, 0:side] / side - 0.5
    light = 0.55 + 0.9 * np.exp(-(xx**2 + yy**2) / 0.08)  # the same vignette on every image: close hashes
    rng = np.random.default_rng(seed + 1)
    out = []
    for k in range(n):
        y, x = divmod(k, grid)
        crop = texture[y * step : y * step + side, x * step : x * step + side] * light
        image = Image.fromarray((crop.clip(0, 1) * 255).astype(np.uint8)).convert("RGB")
        draw = ImageDraw.Draw(image)
        mx, my, r = rng.integers(8, side - 8), rng.integers(8, side - 8), rng.integers(3, 6)
        draw.ellipse((mx - r, my - r, mx + r, my + r), fill=(30, 30, 160))
        out.append(image)
    return out


def photo(seed: int, size: tuple[int, int] = (192, 144)) -> Image.Image:
    """A photo-like image: smooth colour field, blurred shapes, fine noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    field = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(field)
    for _ in range(int(rng.integers(4, 9))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    field = field.filter(ImageFilter.GaussianBlur(1.5))
    arr = np.asarray(field, dtype=np.int16) + rng.integers(-10, 11, (h, w, 3), dtype=np.int16)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def altered(image: Image.Image, kind: str, rng: np.random.Generator) -> tuple[Image.Image, str, dict]:
    """One altered copy: ``(image, file suffix, save kwargs)``."""
    w, h = image.size
    if kind == "jpeg40":
        return image, ".jpg", {"quality": 40}
    if kind == "half":
        return image.resize((w // 2, h // 2), Image.Resampling.BILINEAR), ".jpg", {"quality": 90}
    if kind == "crop5":
        cw, ch = round(w * 0.95), round(h * 0.95)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        return image.crop((x, y, x + cw, y + ch)), ".jpg", {"quality": 90}
    if kind in ("bright", "dark"):
        factor = 1.1 if kind == "bright" else 0.9
        arr = np.asarray(image, dtype=np.float64) * factor
        return Image.fromarray(arr.clip(0, 255).astype(np.uint8)), ".jpg", {"quality": 90}
    if kind == "png":
        return image, ".png", {}
    raise ValueError(kind)


def _save(root: Path, rel: str, image: Image.Image, **kw) -> str:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kw)
    return rel


def lookalike_corpus(
    root: Path, n: int = 500, classes: int = 4, test_every: int = 5, side: int = 128
) -> dict[str, int]:
    """``n`` look-alike distinct images; every ``test_every``-th goes to ``test/``."""
    origin = {}
    for k, image in enumerate(lookalike_images(n, side)):
        rel = f"test/la{k:05d}.jpg" if k % test_every == test_every - 1 else f"train/c{k % classes}/la{k:05d}.jpg"
        origin[_save(root, rel, image, quality=90)] = k
    return origin


def copies_corpus(
    root: Path, n: int = 200, classes: int = 4, seed: int = 0, size: tuple[int, int] = (192, 144)
) -> dict[str, int]:
    """``n`` originals (JPEG q90) plus six altered copies each; one copy of every fourth original in ``test/``."""
    rng = np.random.default_rng(seed)
    origin = {}
    for k in range(n):
        label = f"c{k % classes}"
        source = photo(seed * 1_000_003 + k, size)
        rel = _save(root, f"train/{label}/p{k:05d}.jpg", source, quality=90)
        origin[rel] = k
        decoded = Image.open(root / rel).convert("RGB")
        leak = COPY_KINDS[k % len(COPY_KINDS)] if k % 4 == 0 else None
        for kind in COPY_KINDS:
            image, suffix, kw = altered(decoded, kind, rng)
            folder = "test" if kind == leak else f"train/{label}"
            origin[_save(root, f"{folder}/p{k:05d}_{kind}{suffix}", image, **kw)] = k
    return origin
