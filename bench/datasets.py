"""Benchmark datasets built from the embedded demo data (Fashion-MNIST subset), offline.

Three kinds, each in the demo's layout (``dataset/train/<class>/``, ``dataset/test/``,
``dataset/sample_submission.csv``) with the held-back answers in ``answers/test_labels.csv``
(``Id,Category,label``: the baselines read its ``Id`` and ``label`` columns, ``score_submission``
reads ``Id`` and ``Category``):

* ``demo`` — the demo data as ``imgclf demo`` writes it;
* ``noup`` — every image, train and test, turned by a random multiple of 90° and flipped left-right
  with probability 1/2 (a uniform element of the dihedral group D4, drawn per image from ``seed``):
  the data no longer has an "up", unlike Fashion-MNIST;
* ``small`` — every 28 px item, upscaled to 32 px, pasted at a random place on a random 160 x 160 crop of
  one of scikit-image's grey texture photos (brick, grass, gravel; dimmed): a small object in clutter,
  whose class is in details a low training size blurs away — like a small defect on a part, and unlike
  Fashion-MNIST, where 64 px already holds every pixel there is;
* ``imbalanced`` — class ``k`` (in ``CLASS_NAMES`` order) keeps ``round(n * r ** (-k / (K - 1)))``
  training images, a geometric decay from ``n`` to ``n / r`` (``r`` = ``imbalance``); the test set
  is unchanged (balanced), so accuracy rewards learning the rare classes.

A folder holds ``.bench-dataset.json`` with its parameters: asking again for the same ones reuses
it; other parameters rebuild it (only a folder this script wrote, or an empty one, is replaced).

Usage::

    python bench/datasets.py noup bench/.data/noup                       # all 300 per class
    python bench/datasets.py imbalanced bench/.data/imb --imbalance 10
    python bench/datasets.py small bench/.data/small
    python bench/datasets.py demo bench/.data/small --train-per-class 30
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from imgclf.data.demo import CLASS_NAMES, DemoPaths, materialise_demo
from imgclf.data.dihedral import dihedral
from imgclf.errors import ConfigError, DataError, ImgclfError

KINDS = ("demo", "noup", "small", "imbalanced")
SMALL_CANVAS, SMALL_ITEM = 160, 32
TEXTURES = ("brick", "grass", "gravel")
MARKER = ".bench-dataset.json"


def imbalanced_sizes(n: int, imbalance: float, classes: int = len(CLASS_NAMES)) -> list[int]:
    """Training images kept per class: ``n`` for the first, decaying geometrically to ``n / imbalance``."""
    if imbalance < 1:
        raise ConfigError(f"--imbalance must be at least 1, got {imbalance}")
    return [max(1, round(n * imbalance ** (-k / max(1, classes - 1)))) for k in range(classes)]


def materialise(kind: str, root: Path, *, train_per_class: int | None = None, seed: int = 0,
                imbalance: float = 10.0) -> DemoPaths:
    """Write dataset ``kind`` under ``root`` (or reuse it); return its paths (``dataset``, ``answers``)."""
    if kind not in KINDS:
        raise ConfigError(f"unknown dataset kind {kind!r}; choose one of {', '.join(KINDS)}")
    root = Path(root)
    params = {"kind": kind, "train_per_class": train_per_class, "seed": seed,
              "imbalance": imbalance if kind == "imbalanced" else None}
    if _marker(root) == params:
        return DemoPaths.for_root(root)
    if root.exists() and _marker(root) is None and (not root.is_dir() or any(root.iterdir())):
        raise DataError(f"{root} exists and was not written by bench/datasets.py; choose a new or empty folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        paths = materialise_demo(staging / "build", train_per_class)
        if kind == "noup":
            _turn_every_image(paths.dataset, seed)
        elif kind == "small":
            _paste_on_texture(paths.dataset, seed)
        elif kind == "imbalanced":
            _drop_to_sizes(paths.dataset / "train", imbalance)
        (paths.root / ".complete").unlink()  # not the plain demo any more: materialise_demo must not reuse it
        (paths.root / MARKER).write_text(json.dumps(params, sort_keys=True) + "\n")
        if root.exists():
            shutil.rmtree(root)
        paths.root.rename(root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return DemoPaths.for_root(root)


def _marker(root: Path) -> dict | None:
    try:
        return json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _turn_every_image(dataset: Path, seed: int) -> None:
    """Replace each image by a random element of D4 of itself (file names and labels unchanged)."""
    rng = np.random.default_rng(seed)
    for path in sorted(dataset.rglob("*.png")):
        with Image.open(path) as image:
            turned = dihedral(image.copy(), int(rng.integers(8)))
        turned.save(path, format="PNG")


def _paste_on_texture(dataset: Path, seed: int) -> None:
    """Replace each image by its item, upscaled to ``SMALL_ITEM`` px, on a ``SMALL_CANVAS`` px crop of a texture
    (the item's own grey level is its opacity, so its black surround shows the texture)."""
    import skimage.data

    textures = [np.asarray(getattr(skimage.data, name)(), np.float32) * 0.6 for name in TEXTURES]
    rng = np.random.default_rng(seed)
    for path in sorted(dataset.rglob("*.png")):
        with Image.open(path) as image:
            item = np.asarray(image.convert("L").resize((SMALL_ITEM, SMALL_ITEM), Image.Resampling.BICUBIC), np.float32)
        texture = textures[int(rng.integers(len(textures)))]
        y, x = (int(rng.integers(n - SMALL_CANVAS + 1)) for n in texture.shape[:2])
        canvas = texture[y:y + SMALL_CANVAS, x:x + SMALL_CANVAS].copy()
        top, left = (int(rng.integers(SMALL_CANVAS - SMALL_ITEM + 1)) for _ in range(2))
        alpha = item / 255.0
        patch = canvas[top:top + SMALL_ITEM, left:left + SMALL_ITEM]
        canvas[top:top + SMALL_ITEM, left:left + SMALL_ITEM] = patch * (1 - alpha) + item * alpha
        Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "L").save(path, format="PNG")


def _drop_to_sizes(train: Path, imbalance: float) -> None:
    """Keep the first ``imbalanced_sizes`` images (by name) of each class folder; delete the rest."""
    folders = [train / name for name in CLASS_NAMES]
    n = min(sum(1 for _ in f.iterdir()) for f in folders)
    for folder, keep in zip(folders, imbalanced_sizes(n, imbalance)):
        for path in sorted(folder.iterdir())[keep:]:
            path.unlink()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=KINDS)
    ap.add_argument("out", type=Path, help="folder to write (new, empty, or one this script wrote)")
    ap.add_argument("--train-per-class", type=int, default=None, help="training images per class before any imbalance (default: all 300)")
    ap.add_argument("--seed", type=int, default=0, help="noup: seed of the per-image orientation")
    ap.add_argument("--imbalance", type=float, default=10.0, help="imbalanced: largest / smallest class size")
    a = ap.parse_args(argv)
    try:
        paths = materialise(a.kind, a.out, train_per_class=a.train_per_class, seed=a.seed, imbalance=a.imbalance)
    except ImgclfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = {d.name: sum(1 for _ in d.iterdir()) for d in sorted((paths.dataset / "train").iterdir())}
    print(f"{a.kind}: dataset {paths.dataset}  labels {paths.answers}  train images {sum(counts.values())} {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
