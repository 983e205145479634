"""Benchmark datasets, offline: variants of the embedded demo data (Fashion-MNIST subset) and synthetic defects.

Five kinds, each in the demo's layout (``dataset/train/<class>/``, ``dataset/test/``,
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
  is unchanged (balanced), so accuracy rewards learning the rare classes;
* ``defects`` — not Fashion-MNIST but a synthetic stand-in for industrial inspection: 192 x 192 greyscale crops
  of a texture photo (as ``small``; flipped, turned by 90° multiples, brightness and contrast jittered), and
  four classes (``DEFECT_CLASSES``) told apart only by a thin, small, low-contrast mark on it: ``good`` (none),
  ``scratch`` (one straight line, 1–2 px wide, 25–60 px long), ``crack`` (a 1 px random-walk polyline as long,
  with 1–3 short branches) or ``spots`` (3–6 dots of 1–3 px radius within ~20 px). The mark is lighter or
  darker than the texture by 1.5–2.5 times (the crop's mean neighbouring-pixel difference + 8) grey levels,
  about 16–34 on smooth brick, 25–65 on gravel and 33–85 on busy grass (less where a 1 px line falls between
  pixels): visible but subtle at full size, mostly gone at 64 px. ``--train-per-class`` defaults to 300,
  ``--test-per-class`` to 250; every image is drawn from ``seed`` (``render_defect`` draws one).

``--extra-test N`` adds N more test images (``extra_*.png``, N/10 a class) from the official
Fashion-MNIST test split, none of them among the demo's 1,000, to the test folder and the answers
(the training images are unchanged; for ``defects`` N/4 a class, generated from ``seed`` like the rest).
One accuracy on 1,000 images has a standard error of ~0.9 pp near 91 %; on 6,000 it is ~0.37 pp, so small
differences between systems become readable. It reads Debian's ``dataset-fashion-mnist`` package
(``apt-get install dataset-fashion-mnist``), the demo's source.

A folder holds ``.bench-dataset.json`` with its parameters: asking again for the same ones reuses
it; other parameters rebuild it (only a folder this script wrote, or an empty one, is replaced).

Usage::

    python bench/datasets.py noup bench/.data/noup                       # all 300 per class
    python bench/datasets.py imbalanced bench/.data/imb --imbalance 10
    python bench/datasets.py small bench/.data/small
    python bench/datasets.py demo bench/.data/small --train-per-class 30
    python bench/datasets.py demo bench/.data/demo6k --extra-test 5000   # 6,000 test images
    python bench/datasets.py defects bench/.data/defects                 # 1,200 train, 1,000 test images
"""

from __future__ import annotations

import argparse
import csv
import functools
import gzip
import io
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from imgclf.data.demo import CLASS_NAMES, SORTED_CLASS_NAMES, DemoPaths, demo_npz_bytes, materialise_demo
from imgclf.data.dihedral import dihedral
from imgclf.errors import ConfigError, DataError, ImgclfError

KINDS = ("demo", "noup", "small", "imbalanced", "defects")
SMALL_CANVAS, SMALL_ITEM = 160, 32
TEXTURES = ("brick", "grass", "gravel")
DEFECT_CLASSES = ("good", "scratch", "crack", "spots")
DEFECT_CANVAS, DEFECT_TRAIN, DEFECT_TEST = 192, 300, 250  # image side; default train and test images a class
# A mark's grey-level step: uniform in DEFECT_CONTRAST times (the crop's mean neighbouring-pixel difference
# + DEFECT_FLOOR).
DEFECT_CONTRAST, DEFECT_FLOOR = (1.5, 2.5), 8.0
MARKER = ".bench-dataset.json"
UPSTREAM = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist


def imbalanced_sizes(n: int, imbalance: float, classes: int = len(CLASS_NAMES)) -> list[int]:
    """Training images kept per class: ``n`` for the first, decaying geometrically to ``n / imbalance``."""
    if imbalance < 1:
        raise ConfigError(f"--imbalance must be at least 1, got {imbalance}")
    return [max(1, round(n * imbalance ** (-k / max(1, classes - 1)))) for k in range(classes)]


def materialise(
    kind: str,
    root: Path,
    *,
    train_per_class: int | None = None,
    seed: int = 0,
    imbalance: float = 10.0,
    extra_test: int = 0,
    upstream: Path = UPSTREAM,
    test_per_class: int | None = None,
) -> DemoPaths:
    """Write dataset ``kind`` under ``root`` (or reuse it); return its paths (``dataset``, ``answers``)."""
    if kind not in KINDS:
        raise ConfigError(f"unknown dataset kind {kind!r}; choose one of {', '.join(KINDS)}")
    classes = len(DEFECT_CLASSES if kind == "defects" else CLASS_NAMES)
    if extra_test < 0 or extra_test % classes:
        raise ConfigError(f"--extra-test must be a multiple of {classes} (the same number a class), got {extra_test}")
    if test_per_class is not None and kind != "defects":
        raise ConfigError(f"--test-per-class applies to the defects kind only (the {kind} test set is the demo's)")
    root = Path(root)
    params = {
        "kind": kind,
        "train_per_class": train_per_class,
        "seed": seed,
        "imbalance": imbalance if kind == "imbalanced" else None,
    }
    if kind == "defects":
        params["test_per_class"] = test_per_class
    if extra_test:
        params["extra_test"] = extra_test
    if _marker(root) == params:
        return DemoPaths.for_root(root)
    if root.exists() and _marker(root) is None and (not root.is_dir() or any(root.iterdir())):
        raise DataError(f"{root} exists and was not written by bench/datasets.py; choose a new or empty folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        if kind == "defects":
            paths = DemoPaths.for_root(staging / "build")
            _write_defects(
                paths,
                DEFECT_TRAIN if train_per_class is None else train_per_class,
                DEFECT_TEST if test_per_class is None else test_per_class,
                seed,
                extra_test,
            )
        else:
            paths = materialise_demo(staging / "build", train_per_class)
            change = {"noup": _turn_every_image, "small": _paste_on_texture}.get(kind)
            if change:
                change(paths.dataset, seed)
            elif kind == "imbalanced":
                _drop_to_sizes(paths.dataset / "train", imbalance)
            if extra_test:  # after the change, so that the training images are those of the plain kind
                _add_extra_test(paths, extra_test, seed, upstream, change)
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


def read_upstream(split: str, upstream: Path = UPSTREAM) -> tuple[np.ndarray, np.ndarray]:
    """An official Fashion-MNIST split, ``train`` (60,000 images) or ``t10k`` (10,000), from its idx files:
    images (N, 28, 28) uint8 and labels (N,) in ``CLASS_NAMES`` order."""
    names = (f"{split}-images-idx3-ubyte.gz", f"{split}-labels-idx1-ubyte.gz")
    if not all((upstream / n).is_file() for n in names):
        raise DataError(
            f"the Fashion-MNIST {split} split is not in {upstream} (as root: apt-get install dataset-fashion-mnist)"
        )
    with gzip.open(upstream / names[0]) as fh:
        images = np.frombuffer(fh.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(upstream / names[1]) as fh:
        labels = np.frombuffer(fh.read(), np.uint8, offset=8)
    return images, labels


def read_upstream_test(upstream: Path = UPSTREAM) -> tuple[np.ndarray, np.ndarray]:
    """The official 10,000-image test split (``--extra-test`` draws from it)."""
    return read_upstream("t10k", upstream)


def _add_extra_test(
    paths: DemoPaths, n: int, seed: int, upstream: Path, change: Callable[[Path, int], None] | None = None
) -> None:
    """Append ``n`` upstream test images (``n / 10`` a class, none of the demo's own) to the test folder and answers,
    each changed like the kind's own images by ``change(folder, seed)`` (with a seed of their own)."""
    images, labels = read_upstream_test(upstream)
    with np.load(io.BytesIO(demo_npz_bytes()), allow_pickle=False) as npz:
        taken = set(npz["test_source_index"].tolist())
    rng = np.random.default_rng(seed + 1_000_003)
    per_class = n // len(CLASS_NAMES)
    chosen: list[int] = []
    for label in range(len(CLASS_NAMES)):
        free = [int(i) for i in np.flatnonzero(labels == label) if int(i) not in taken]
        if len(free) < per_class:
            raise ConfigError(f"--extra-test {n}: only {len(free)} more test images of class {CLASS_NAMES[label]}")
        chosen += rng.choice(free, per_class, replace=False).tolist()
    extra = paths.root / "extra"
    extra.mkdir()
    for row in chosen:
        Image.fromarray(images[row]).save(extra / f"extra_{row + 1:05d}.png", format="PNG")
    if change:
        change(extra, seed + 1)
    index_of = {name: i for i, name in enumerate(SORTED_CLASS_NAMES)}
    with (
        open(paths.answers, "a", newline="", encoding="utf-8") as answers,
        open(paths.dataset / "sample_submission.csv", "a", newline="", encoding="utf-8") as sample,
    ):
        for row in sorted(chosen):
            image_id, name = f"extra_{row + 1:05d}.png", CLASS_NAMES[int(labels[row])]
            (extra / image_id).rename(paths.dataset / "test" / image_id)
            csv.writer(answers).writerow([image_id, index_of[name], name])
            csv.writer(sample).writerow([image_id, 0])
    extra.rmdir()


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
        canvas = texture[y : y + SMALL_CANVAS, x : x + SMALL_CANVAS].copy()
        top, left = (int(rng.integers(SMALL_CANVAS - SMALL_ITEM + 1)) for _ in range(2))
        alpha = item / 255.0
        patch = canvas[top : top + SMALL_ITEM, left : left + SMALL_ITEM]
        canvas[top : top + SMALL_ITEM, left : left + SMALL_ITEM] = patch * (1 - alpha) + item * alpha
        Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "L").save(path, format="PNG")


@functools.lru_cache(maxsize=1)
def _grey_textures() -> tuple[np.ndarray, ...]:
    import skimage.data

    return tuple(np.asarray(getattr(skimage.data, name)(), np.float32) for name in TEXTURES)


def defect_background(rng: np.random.Generator, size: int = DEFECT_CANVAS) -> np.ndarray:
    """A random ``size`` px crop of one of the ``TEXTURES``, flipped and turned at random, its mean grey moved to
    60–190 and its contrast scaled by 0.6–1.3 (float32, not clipped)."""
    textures = _grey_textures()
    texture = textures[int(rng.integers(len(textures)))]
    y, x = (int(rng.integers(n - size + 1)) for n in texture.shape[:2])
    crop = np.rot90(texture[y : y + size, x : x + size], int(rng.integers(4)))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return (crop - crop.mean()) * rng.uniform(0.6, 1.3) + rng.uniform(60, 190)


def _walk(rng: np.random.Generator, start: np.ndarray, heading: float, length: float, step: float = 3.0) -> np.ndarray:
    """A random-walk polyline from ``start``: steps of ``step`` px, the heading wandering by ~0.35 rad a step."""
    points = [start]
    for _ in range(max(2, round(length / step))):
        heading += rng.normal(0.0, 0.35)
        points.append(points[-1] + step * np.array([np.cos(heading), np.sin(heading)]))
    return np.array(points)


def _defect_strokes(name: str, rng: np.random.Generator) -> list[tuple[np.ndarray, float]]:
    """The mark of class ``name`` around the origin, as strokes ``(points (n, 2) in px, width in px)``; a stroke of
    one point is a dot of that diameter."""
    if name == "good":
        return []
    if name == "scratch":
        angle, half = rng.uniform(0, np.pi), rng.uniform(25, 60) / 2
        end = half * np.array([np.cos(angle), np.sin(angle)])
        return [(np.array([-end, end]), float(rng.integers(1, 3)))]
    if name == "crack":
        trunk = _walk(rng, np.zeros(2), rng.uniform(0, 2 * np.pi), rng.uniform(25, 60))
        strokes = [(trunk, 1.0)]
        for _ in range(int(rng.integers(1, 4))):
            at = int(rng.integers(1, len(trunk) - 1))
            dx, dy = trunk[at + 1] - trunk[at]
            heading = np.arctan2(dy, dx) + rng.choice([-1, 1]) * rng.uniform(0.5, 1.2)
            strokes.append((_walk(rng, trunk[at], heading, rng.uniform(6, 15)), 1.0))
        return strokes
    if name == "spots":
        count = int(rng.integers(3, 7))
        centres, radii = rng.uniform(-10, 10, (count, 2)), rng.uniform(1, 3, count)
        return [(c[None], 2 * r) for c, r in zip(centres, radii)]
    raise ConfigError(f"unknown defect class {name!r}; choose one of {', '.join(DEFECT_CLASSES)}")


def defect_mask(name: str, rng: np.random.Generator, size: int = DEFECT_CANVAS, scale: int = 2) -> np.ndarray:
    """The mark of class ``name`` at a random place wholly inside a ``size`` px square: coverage 0..1 (float32),
    drawn ``scale`` times larger and averaged down (anti-aliased); all zero for ``good``."""
    strokes = _defect_strokes(name, rng)
    canvas = Image.new("L", (size * scale, size * scale))
    if strokes:
        low = np.min([p.min(0) - w for p, w in strokes], 0)
        high = np.max([p.max(0) + w for p, w in strokes], 0)
        offset = np.array([rng.uniform(2 - lo, size - 2 - hi) for lo, hi in zip(low, high)])
        draw = ImageDraw.Draw(canvas)
        for points, width in strokes:
            xy = [tuple(float(v) for v in (p + offset) * scale) for p in points]
            if len(xy) == 1:
                r = width * scale / 2
                draw.ellipse([xy[0][0] - r, xy[0][1] - r, xy[0][0] + r, xy[0][1] + r], fill=255)
            else:
                draw.line(xy, fill=255, width=round(width * scale), joint="curve")
    small = canvas.resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, np.float32) / 255.0


def render_defect(name: str, rng: np.random.Generator, size: int = DEFECT_CANVAS) -> Image.Image:
    """One ``defects`` image of class ``name`` ("L", ``size`` px): ``defect_background(rng)`` and then, drawn from
    the same ``rng``, the class's mark, lighter or darker than the texture by ``DEFECT_CONTRAST`` times (the crop's
    mean neighbouring-pixel difference + ``DEFECT_FLOOR``): a busy texture hides a mark that a smooth one would show."""
    background = defect_background(rng, size)
    roughness = float(np.abs(np.diff(background, axis=1)).mean() + np.abs(np.diff(background, axis=0)).mean()) / 2
    step = rng.choice([-1.0, 1.0]) * rng.uniform(*DEFECT_CONTRAST) * (roughness + DEFECT_FLOOR)
    image = background + step * defect_mask(name, rng, size)
    return Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8), "L")


def _write_defects(paths: DemoPaths, train_per_class: int, test_per_class: int, seed: int, extra_test: int = 0) -> None:
    """Write the ``defects`` kind under ``paths``: ``train/<class>/<class>_NNNNN.png`` and a shuffled test set,
    ``test_NNNNN.png`` and then ``extra_NNNNN.png`` (``extra_test / 4`` a class). Every image is drawn from a
    generator of its own, seeded by (``seed``, part, [class,] number), so none depends on the other sizes: a
    smaller training set is the first images of a larger one, and ``--extra-test`` leaves the rest unchanged."""
    if train_per_class < 1 or test_per_class < 1 or seed < 0:
        raise ConfigError(
            f"defects needs at least one image a class and a seed >= 0, got {train_per_class} train, "
            f"{test_per_class} test, seed {seed}"
        )
    for label, name in enumerate(DEFECT_CLASSES):
        folder = paths.dataset / "train" / name
        folder.mkdir(parents=True)
        for i in range(train_per_class):
            image = render_defect(name, np.random.default_rng([seed, 0, label, i]))
            image.save(folder / f"{name}_{i + 1:05d}.png", format="PNG")
    (paths.dataset / "test").mkdir(parents=True)
    paths.answers.parent.mkdir(parents=True)
    index_of = {name: i for i, name in enumerate(sorted(DEFECT_CLASSES))}
    with (
        open(paths.answers, "w", newline="", encoding="utf-8") as answers,
        open(paths.dataset / "sample_submission.csv", "w", newline="", encoding="utf-8") as sample,
    ):
        csv.writer(answers).writerow(["Id", "Category", "label"])
        csv.writer(sample).writerow(["Id", "Category"])
        for part, prefix, per_class in ((1, "test", test_per_class), (2, "extra", extra_test // len(DEFECT_CLASSES))):
            labels = np.repeat(np.arange(len(DEFECT_CLASSES)), per_class)
            for i, label in enumerate(np.random.default_rng([seed, part]).permutation(labels).tolist()):
                image_id, name = f"{prefix}_{i + 1:05d}.png", DEFECT_CLASSES[label]
                image = render_defect(name, np.random.default_rng([seed, part, i]))
                image.save(paths.dataset / "test" / image_id, format="PNG")
                csv.writer(answers).writerow([image_id, index_of[name], name])
                csv.writer(sample).writerow([image_id, 0])


def _drop_to_sizes(train: Path, imbalance: float) -> None:
    """Keep the first ``imbalanced_sizes`` images (by name) of each class folder; delete the rest."""
    folders = [train / name for name in CLASS_NAMES]
    n = min(sum(1 for _ in f.iterdir()) for f in folders)
    for folder, keep in zip(folders, imbalanced_sizes(n, imbalance)):
        for path in sorted(folder.iterdir())[keep:]:
            path.unlink()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("kind", choices=KINDS)
    ap.add_argument("out", type=Path, help="folder to write (new, empty, or one this script wrote)")
    ap.add_argument(
        "--train-per-class",
        type=int,
        default=None,
        help="training images per class before any imbalance (default: all 300; defects: 300)",
    )
    ap.add_argument(
        "--test-per-class", type=int, default=None, help=f"defects: test images per class (default {DEFECT_TEST})"
    )
    ap.add_argument(
        "--seed", type=int, default=0, help="noup, small: seed of the per-image change; defects: seed of every image"
    )
    ap.add_argument("--imbalance", type=float, default=10.0, help="imbalanced: largest / smallest class size")
    ap.add_argument(
        "--extra-test",
        type=int,
        default=0,
        help="add this many more test images (a multiple of 10) from the official test split "
        "(defects: a multiple of 4, generated)",
    )
    a = ap.parse_args(argv)
    try:
        paths = materialise(
            a.kind,
            a.out,
            train_per_class=a.train_per_class,
            seed=a.seed,
            imbalance=a.imbalance,
            extra_test=a.extra_test,
            test_per_class=a.test_per_class,
        )
    except ImgclfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = {d.name: sum(1 for _ in d.iterdir()) for d in sorted((paths.dataset / "train").iterdir())}
    print(f"{a.kind}: dataset {paths.dataset}  labels {paths.answers}  train images {sum(counts.values())} {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
