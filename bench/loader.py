"""Loader benchmark: images/second delivered to the model, naive originals vs imgclf's resize cache.

Generates (once; reused under ``bench/.data/``, git-ignored) ``--n`` synthetic photo-sized JPEGs
(~1600x1200, smooth structure + shapes + sensor-like noise, so they decode like photos, not like flat
colour), then reports in one run:

* (a) torchvision ``ImageFolder`` + PIL on the originals,
* ``imgclf prepare`` throughput (analysis + manifest + report + resize cache build, cold),
* (b) the cached pipeline: manifest → ``ResizeCache.load`` → the same augmentation,

both loaders with the same ``medium``-style augmentation at ``--size`` px and ``num_workers`` = CPU count.

Usage::

    .venv/bin/python bench/loader.py            # the real run: 2,000 images
    .venv/bin/python bench/loader.py --n 100    # a quick check
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets, transforms

from imgclf.data.cache import ResizeCache, cache_short_side
from imgclf.data.manifest import read_manifest
from imgclf.data.prepare import CACHE_DIR, PrepareOptions, prepare
from imgclf.report.cleaning import write_cleaning_report

HERE = Path(__file__).resolve().parent
N_CLASSES = 10
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def synthetic_photo(seed: int, size: tuple[int, int] = (1600, 1200)) -> Image.Image:
    """A photo-like image: low-frequency colour field, blurred shapes, fine noise (defeats JPEG's easy cases)."""
    rng = np.random.default_rng(seed)
    w, h = size
    field = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(field)
    for _ in range(rng.integers(8, 20)):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(40, w // 2)), y0 + int(rng.integers(40, h // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    field = field.filter(ImageFilter.GaussianBlur(3))
    arr = np.asarray(field, dtype=np.int16) + rng.integers(-12, 13, (h, w, 3), dtype=np.int16)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def _make_one(args: tuple[Path, int]) -> None:
    path, seed = args
    if not path.is_file():
        tmp = path.with_suffix(".tmp")
        synthetic_photo(seed).save(tmp, format="JPEG", quality=90)
        os.replace(tmp, path)


def generate(root: Path, n: int, workers: int) -> Path:
    """``root/train/class_k/img_i.jpg`` for i < n; existing files are reused."""
    jobs = []
    for i in range(n):
        path = root / "train" / f"class_{i % N_CLASSES}" / f"img_{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        jobs.append((path, i))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_make_one, jobs, chunksize=8))
    return root


def medium_augmentation(size: int) -> transforms.Compose:
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(size),
            transforms.RandomHorizontalFlip(),
            transforms.ColorJitter(0.2, 0.2, 0.2),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


class CachedImages(Dataset):
    """The kept training rows of a prepared dataset, read through the resize cache."""

    def __init__(self, dataset_dir: Path, cache: ResizeCache, transform):
        table = read_manifest(dataset_dir)
        table = table[(table["split"] == "train") & table["keep"]]
        classes = sorted(table["label"].unique())
        self.items = [(dataset_dir / p, classes.index(lbl)) for p, lbl in zip(table["path"], table["label"])]
        self.cache, self.transform = cache, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, label = self.items[i]
        return self.transform(self.cache.load(path)), label


def images_per_second(dataset: Dataset, workers: int, batch_size: int) -> tuple[float, float]:
    """One full epoch, as a training loop would consume it; returns (images/s, seconds)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, persistent_workers=False)
    start, seen = time.perf_counter(), 0
    for images, _ in loader:
        seen += images.shape[0]
    seconds = time.perf_counter() - start
    return seen / seconds, seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="number of synthetic images")
    parser.add_argument("--size", type=int, default=224, help="training image size")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="DataLoader / prepare processes")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--data", type=Path, default=HERE / ".data", help="where images are generated and reused")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    originals = args.data / f"originals-{args.n}"
    t0 = time.perf_counter()
    generate(originals, args.n, args.workers)
    print(f"synthetic originals ready in {time.perf_counter() - t0:.1f} s: {originals}")

    naive = datasets.ImageFolder(str(originals / "train"), transform=medium_augmentation(args.size))
    naive_ips, naive_s = images_per_second(naive, args.workers, args.batch_size)

    prepared = args.data / f"prepared-{args.n}"
    shutil.rmtree(prepared, ignore_errors=True)  # prepare is measured cold
    result = prepare(
        originals,
        prepared,
        PrepareOptions(workers=args.workers, cache_image_size=args.size),
        write_report=write_cleaning_report,
    )
    cache = ResizeCache(prepared / CACHE_DIR, cache_short_side(args.size))
    cached_ips, cached_s = images_per_second(
        CachedImages(prepared, cache, medium_augmentation(args.size)), args.workers, args.batch_size
    )

    cache_s = result.cache.seconds if result.cache else 0.0
    rows = [
        ("(a) naive ImageFolder + PIL, originals", f"{naive_ips:.1f}", f"{naive_s:.1f}"),
        ("(b) imgclf resize cache", f"{cached_ips:.1f}", f"{cached_s:.1f}"),
        ("prepare (analyse + report + cache build), cold", f"{result.images_per_second:.1f}", f"{result.seconds:.1f}"),
        ("  of which: resize cache build", f"{args.n / cache_s if cache_s else 0:.1f}", f"{cache_s:.1f}"),
    ]
    print()
    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}; command: python bench/loader.py --n {args.n} --size {args.size} "
        f"--workers {args.workers} --batch-size {args.batch_size}"
    )
    print(f"{args.n} JPEGs ~1600x1200, {args.size} px, medium augmentation, num_workers={args.workers}")
    print()
    print("| pipeline | images/s | seconds |")
    print("|---|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    print(f"speed-up (b)/(a): {cached_ips / naive_ips:.1f}x (goal: at least 5x)")


if __name__ == "__main__":
    main()
