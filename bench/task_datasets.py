"""Benchmark datasets for the other task formats (issue 33): multi-label and regression, built from Fashion-MNIST.

Every image is a 2 x 2 mosaic (56 x 56 px, greyscale PNG) of Fashion-MNIST items; each cell is empty (black) with
probability ``EMPTY`` (0.3). Training images take their items from the upstream *train* split, test images from the
upstream *test* split, so no item is in both (an item may appear in several images of one side: the test side needs
~17,000 items from a split of 10,000). It reads Debian's ``dataset-fashion-mnist`` package, the demo's source.

* ``multilabel`` — the label set is the set of classes present (every image holds at least one item). A cell's class
  is drawn with p_c ∝ 1 / (c + 1) ** ``SKEW`` (c in ``CLASS_NAMES`` order), skewed like real tag sets: an image
  holds ``T-shirt_top`` ~74 % of the time and ``Ankle_boot`` ~7 %. Writes Planet's layout,
  ``dataset/train.csv`` (``image_name,tags``, tags space-separated), RANZCR's one 0/1 column per class,
  ``dataset/train_columns.csv`` (``image_id,<class>...``), ``dataset/sample_submission.csv`` (``image_name,tags``, a
  placeholder tag) and ``answers/test_labels.csv`` (``image_name,tags``).
* ``regression`` — the target is the summed "price" of the items present, class c costing c + 1, so 0..40 (an all
  empty mosaic is allowed and costs 0). Classes are drawn uniformly. Writes ``dataset/train.csv`` (``Id,price``,
  PetFinder's layout), ``dataset/sample_submission.csv`` (``Id,price``, 0) and ``answers/test_labels.csv``.

Images are ``dataset/train/train_<i>.png`` and ``dataset/test/test_<i>.png``; the CSVs name them without the extension,
as Kaggle does (``train_17``). Train and test images are drawn from their own streams of ``seed``, so ``--test`` does
not depend on ``--train``. A folder holds ``.bench-dataset.json`` with its parameters: asking again for the same ones
reuses it; other parameters rebuild it (only a folder this script wrote, or an empty one, is replaced).

Usage::

    python bench/task_datasets.py multilabel bench/.data/multilabel       # 3,000 train, 6,000 test images
    python bench/task_datasets.py regression bench/.data/regression
    python bench/task_datasets.py multilabel /tmp/ml --train 60 --test 30  # a smoke-test size
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from imgclf.data.demo import CLASS_NAMES
from imgclf.errors import ConfigError, DataError, ImgclfError

KINDS = ("multilabel", "regression")
EMPTY, SKEW, CELL = 0.3, 1.2, 28
MARKER = ".bench-dataset.json"
HERE = Path(__file__).resolve().parent

# bench/ holds scripts, not a package: load bench/datasets.py (the owner of the upstream reader) by path.
_spec = importlib.util.spec_from_file_location("bench_datasets_for_tasks", HERE / "datasets.py")
_datasets = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_datasets)
UPSTREAM = _datasets.UPSTREAM


def class_weights(kind: str) -> np.ndarray:
    """A cell's class probabilities: skewed (1 / (c + 1) ** SKEW) for multilabel, uniform for regression."""
    w = 1.0 / np.arange(1, len(CLASS_NAMES) + 1) ** SKEW if kind == "multilabel" else np.ones(len(CLASS_NAMES))
    return w / w.sum()


def draw_cells(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 4) class index per cell, -1 for an empty one; multilabel redraws a mosaic until it holds an item."""
    p = class_weights(kind)
    cells = np.where(rng.random((n, 4)) < EMPTY, -1, rng.choice(len(p), (n, 4), p=p))
    while kind == "multilabel" and (empty := np.flatnonzero((cells < 0).all(1))).size:
        cells[empty] = np.where(rng.random((empty.size, 4)) < EMPTY, -1, rng.choice(len(p), (empty.size, 4), p=p))
    return cells


def mosaic(cells: np.ndarray, images: np.ndarray, pools: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """One 56 x 56 image: cell k (row-major) holds a random item of class ``cells[k]`` from ``pools``, or black."""
    out = np.zeros((2 * CELL, 2 * CELL), np.uint8)
    for k, c in enumerate(cells):
        if c >= 0:
            r, q = divmod(k, 2)
            out[r * CELL : (r + 1) * CELL, q * CELL : (q + 1) * CELL] = images[rng.choice(pools[c])]
    return out


def _write_side(kind: str, side: str, n: int, split: str, seed: int, dataset: Path, upstream: Path) -> list[tuple]:
    """Write ``n`` mosaics to ``dataset/side``; return (id, sorted class indices present, price) per image."""
    images, labels = _datasets.read_upstream(split, upstream)
    pools = [np.flatnonzero(labels == c) for c in range(len(CLASS_NAMES))]
    rng = np.random.default_rng([seed, 0 if side == "train" else 1])
    cells = draw_cells(kind, n, rng)
    (dataset / side).mkdir(parents=True)
    rows = []
    for i, row in enumerate(cells):
        image_id = f"{side}_{i}"
        Image.fromarray(mosaic(row, images, pools, rng)).save(dataset / side / f"{image_id}.png", format="PNG")
        present = row[row >= 0]
        rows.append((image_id, sorted(set(present.tolist())), int((present + 1).sum())))
    return rows


def _write_csv(path: Path, header: list[str], rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def _tags(classes: list[int]) -> str:
    return " ".join(CLASS_NAMES[c] for c in classes)


def _write_kind(kind: str, root: Path, n_train: int, n_test: int, seed: int, upstream: Path) -> None:
    dataset, answers = root / "dataset", root / "answers" / "test_labels.csv"
    train = _write_side(kind, "train", n_train, "train", seed, dataset, upstream)
    test = _write_side(kind, "test", n_test, "t10k", seed, dataset, upstream)
    if kind == "multilabel":
        _write_csv(dataset / "train.csv", ["image_name", "tags"], [(i, _tags(cs)) for i, cs, _ in train])
        _write_csv(
            dataset / "train_columns.csv",
            ["image_id", *CLASS_NAMES],
            [(i, *(int(c in cs) for c in range(len(CLASS_NAMES)))) for i, cs, _ in train],
        )
        _write_csv(dataset / "sample_submission.csv", ["image_name", "tags"], [(i, CLASS_NAMES[0]) for i, _, _ in test])
        _write_csv(answers, ["image_name", "tags"], [(i, _tags(cs)) for i, cs, _ in test])
    else:
        _write_csv(dataset / "train.csv", ["Id", "price"], [(i, p) for i, _, p in train])
        _write_csv(dataset / "sample_submission.csv", ["Id", "price"], [(i, 0) for i, _, _ in test])
        _write_csv(answers, ["Id", "price"], [(i, p) for i, _, p in test])


def materialise(
    kind: str, root: Path, *, n_train: int = 3000, n_test: int = 6000, seed: int = 0, upstream: Path = UPSTREAM
) -> Path:
    """Write dataset ``kind`` under ``root`` (or reuse it, same parameters); return ``root``."""
    if kind not in KINDS:
        raise ConfigError(f"unknown dataset kind {kind!r}; choose one of {', '.join(KINDS)}")
    if n_train < 1 or n_test < 1:
        raise ConfigError(f"--train and --test must be at least 1, got {n_train} and {n_test}")
    root = Path(root)
    params = {"kind": kind, "train": n_train, "test": n_test, "seed": seed}
    marker = _datasets._marker(root)
    if marker == params:
        return root
    if root.exists() and marker is None and (not root.is_dir() or any(root.iterdir())):
        raise DataError(f"{root} exists and was not written by bench/task_datasets.py; choose a new or empty folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        _write_kind(kind, staging / "build", n_train, n_test, seed, upstream)
        (staging / "build" / MARKER).write_text(json.dumps(params))
        if root.exists():
            shutil.rmtree(root)
        (staging / "build").rename(root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=KINDS)
    ap.add_argument("out", type=Path, help="folder to write dataset/ and answers/ into")
    ap.add_argument("--train", type=int, default=3000, help="training images (default 3000)")
    ap.add_argument("--test", type=int, default=6000, help="test images (default 6000)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        root = materialise(args.kind, args.out, n_train=args.train, n_test=args.test, seed=args.seed)
    except ImgclfError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"{args.kind}: {args.train} train, {args.test} test images in {root / 'dataset'}; answers in {root / 'answers'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
