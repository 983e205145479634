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


# --------------------------------------------------------------------------- look-alikes from real pixels

#: scikit-image's bundled photographs and textures (all offline), cut into neighbouring tiles.
REAL_SOURCES = (
    "retina",
    "hubble_deep_field",
    "brick",
    "grass",
    "gravel",
    "camera",
    "moon",
    "astronaut",
    "coffee",
    "rocket",
    "immunohistochemistry",
    "cell",
    "chelsea",
    "coins",
)
RANGE_KINDS = ("jpeg", "scale", "crop", "bright", "png")


def real_lookalikes(tile: int = 112, frames: int = 40, boots: int = 60) -> list[tuple[str, Image.Image]]:
    """``(class, image)`` of distinct captures that look alike, from real pixels.

    * neighbouring, non-overlapping ``tile`` px tiles of scikit-image's photographs and textures (tiles
      that are mostly blank, like the black around the retina, are left out: they show no subject);
    * frames of a slowly moving crop of the retina photograph, 25 % of a side apart, each with its own
      sensor noise (sigma 3 grey levels): the next frame of one scene;
    * ``boots`` ankle boots of the embedded Fashion-MNIST subset, upscaled to ``tile`` px.
    """
    import skimage.data

    out = []
    for name in REAL_SOURCES:
        arr = getattr(skimage.data, name)()
        for y in range(0, arr.shape[0] - tile + 1, tile):
            for x in range(0, arr.shape[1] - tile + 1, tile):
                image = Image.fromarray(arr[y : y + tile, x : x + tile]).convert("RGB")
                grey = np.asarray(image.convert("L"), dtype=np.float64)
                if grey.std() >= 8 and (grey < 16).mean() < 0.25:
                    out.append((name, image))
    rng = np.random.default_rng(0)
    retina = skimage.data.retina().astype(np.float64)
    step = tile // 4
    for k in range(frames):
        y, x = 200 + k * step // 3, 100 + k * step
        crop = retina[y : y + tile, x : x + tile] + rng.normal(0, 3, (tile, tile, 3))
        out.append(("frames", Image.fromarray(crop.clip(0, 255).astype(np.uint8))))
    demo = np.load(Path(__file__).resolve().parents[1] / "imgclf/data/demo_data/fashion_mnist_subset.npz")
    for item in demo["x_train"][demo["y_train"] == 9][:boots]:
        out.append(("boots", Image.fromarray(item).resize((tile, tile), Image.Resampling.BICUBIC).convert("RGB")))
    return out


def over_range(image: Image.Image, kind: str, t: float, rng: np.random.Generator) -> tuple[Image.Image, str, dict, str]:
    """A copy with its setting at ``t`` (0..1) of the kind's range: ``(image, suffix, save kwargs, setting)``."""
    w, h = image.size
    if kind == "jpeg":
        q = round(30 + 65 * t)
        return image, ".jpg", {"quality": q}, f"q{q}"
    if kind == "scale":
        s = 0.4 + 0.6 * t
        return (
            image.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR),
            ".jpg",
            {"quality": 90},
            f"x{s:.2f}",
        )
    if kind == "crop":
        left, right, top, bottom = rng.uniform(0, 0.10, 4)
        box = (round(left * w), round(top * h), w - round(right * w), h - round(bottom * h))
        return (
            image.crop(box),
            ".jpg",
            {"quality": 90},
            "crop " + "/".join(f"{v:.0%}" for v in (left, right, top, bottom)),
        )
    if kind == "bright":
        f = 0.85 + 0.30 * t
        return (
            Image.fromarray((np.asarray(image, dtype=np.float64) * f).clip(0, 255).astype(np.uint8)),
            ".jpg",
            {"quality": 90},
            f"x{f:.2f}",
        )
    if kind == "png":
        return image, ".png", {}, "png"
    raise ValueError(kind)


def real_corpus(root: Path, plant_every: int = 3, leak_every: int = 4) -> dict[str, int]:
    """The look-alikes of :func:`real_lookalikes` (JPEG q95) under ``train/<source>/``, and for every
    ``plant_every``-th one a copy of each of :data:`RANGE_KINDS`, its setting stepped over the kind's
    range (golden-ratio steps); one copy of every ``leak_every``-th planted original goes to ``test/``."""
    rng = np.random.default_rng(0)
    origin = {}
    for k, (label, image) in enumerate(real_lookalikes()):
        rel = _save(root, f"train/{label}/la{k:05d}.jpg", image, quality=95)
        origin[rel] = k
        if k % plant_every:
            continue
        planted = k // plant_every
        decoded = Image.open(root / rel).convert("RGB")
        leak = RANGE_KINDS[planted % len(RANGE_KINDS)] if planted % leak_every == 0 else None
        for kind in RANGE_KINDS:
            copy, suffix, kw, _ = over_range(decoded, kind, (planted * 0.618034) % 1.0, rng)
            folder = "test" if kind == leak else f"train/{label}"
            origin[_save(root, f"{folder}/la{k:05d}_{kind}{suffix}", copy, **kw)] = k
    return origin
