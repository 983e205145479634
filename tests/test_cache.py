"""Resize cache: size, keys and invalidation, EXIF, parallel build, and fidelity to the originals."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, UnidentifiedImageError
from torchvision import transforms

from imgclf.data.cache import ResizeCache, cache_short_side
from imgclf.data.images import load_rgb


def photo(path: Path, w: int = 320, h: int = 240, seed: int = 0, **save) -> Path:
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
    arr = np.asarray(coarse, dtype=np.float64) + rng.normal(0, 6, (h, w, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(path, quality=92, **save)
    return path


def _entries(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.rglob("*.jpg"))


def test_cache_short_side_is_115_percent():
    assert cache_short_side(224) == 258 and cache_short_side(100) == 115


def test_load_resizes_shorter_side_and_keeps_aspect(tmp_path):
    src = photo(tmp_path / "a.jpg", 320, 240)
    image = ResizeCache(tmp_path / "cache", 60).load(src)
    assert image.mode == "RGB" and image.size == (80, 60)


def test_small_images_are_not_enlarged(tmp_path):
    src = photo(tmp_path / "a.png", 40, 30)
    assert ResizeCache(tmp_path / "cache", 60).load(src).size == (40, 30)


def test_second_load_reads_the_stored_entry(tmp_path):
    src = photo(tmp_path / "a.jpg")
    cache = ResizeCache(tmp_path / "cache", 60)
    first = cache.load(src)
    entries = _entries(tmp_path / "cache")
    assert len(entries) == 1
    stamp = entries[0].stat().st_mtime_ns
    second = cache.load(src)
    assert entries[0].stat().st_mtime_ns == stamp  # not rebuilt
    assert np.array_equal(np.asarray(first), np.asarray(second))  # epoch 1 sees what epoch 2 sees


def test_changed_source_or_size_gets_a_new_entry(tmp_path):
    src = photo(tmp_path / "a.jpg", seed=0)
    cache = ResizeCache(tmp_path / "cache", 60)
    old = np.asarray(cache.load(src), dtype=np.float64)
    photo(src, seed=1)
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 10**9))  # coarse-mtime filesystems
    new = np.asarray(cache.load(src), dtype=np.float64)
    assert np.abs(old - new).mean() > 5
    assert ResizeCache(tmp_path / "cache", 50).load(src).size == (67, 50)
    assert len(_entries(tmp_path / "cache")) == 3


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    src = photo(tmp_path / "r.jpg", 320, 240, exif=exif)
    assert ResizeCache(tmp_path / "cache", 60).load(src).size == (60, 80)


def test_corrupt_source_raises_pil_error_and_stores_nothing(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not an image at all")
    with pytest.raises(UnidentifiedImageError):
        ResizeCache(tmp_path / "cache", 60).load(tmp_path / "bad.jpg")
    assert _entries(tmp_path / "cache") == []


@pytest.mark.parametrize("workers", [1, 2])
def test_build_counts_built_hits_and_failures(tmp_path, workers):
    paths = [photo(tmp_path / f"{i}.jpg", seed=i) for i in range(5)]
    (tmp_path / "bad.jpg").write_bytes(b"")
    cache = ResizeCache(tmp_path / "cache", 40)
    seen: list[tuple[int, int]] = []
    first = cache.build(
        paths + [tmp_path / "bad.jpg"], workers=workers, progress=lambda done, total: seen.append((done, total))
    )
    assert (first.total, first.built, first.hits, first.failed) == (6, 5, 0, 1)
    assert seen and seen[-1] == (6, 6)  # the caller's progress callback saw every file
    second = cache.build(paths, workers=workers)
    assert (second.built, second.hits) == (0, 5)
    assert len(_entries(tmp_path / "cache")) == 5


def test_cached_validation_tensors_match_originals_within_jpeg_tolerance(tmp_path):
    size = 64
    val = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor()])
    cache = ResizeCache(tmp_path / "cache", cache_short_side(size))
    for seed in range(3):
        src = photo(tmp_path / f"{seed}.jpg", 400, 300, seed=seed)
        original = val(load_rgb(src))
        cached = val(cache.load(src))
        assert original.shape == cached.shape == torch.Size([3, size, size])
        assert (original - cached).abs().mean() < 0.01
        assert (original - cached).abs().max() < 0.15
