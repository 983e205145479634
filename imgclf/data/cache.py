"""Resize cache: decode each photo once (EXIF applied, RGB), store it small, read the small copy ever after.

Full-size JPEG decoding is what starves a GPU on a 2-4 core machine; a 1600x1200 photo resized so its
shorter side is ~1.15x the training size decodes an order of magnitude faster and still leaves room
for random crops.

Entries are keyed by the source's absolute path, size, mtime_ns and the target short side, so an
edited source or a different training size never reads a stale entry. Entries are quality-95 JPEGs
without chroma subsampling (close to lossless for training purposes, small and fast to decode).

Example::

    cache = ResizeCache(Path("data/cars/.imgclf-cache"), cache_short_side(224))
    cache.build(paths, workers=4)                  # optional warm-up, in parallel
    image = cache.load(paths[0])                   # PIL RGB, shorter side 258
"""

from __future__ import annotations

import hashlib
import logging
import io
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from imgclf.data.images import to_rgb
from imgclf.io import atomic_write_bytes
from imgclf.runtime import usable_cpus

log = logging.getLogger("imgclf")

CACHE_MARGIN = 1.15  # room for RandomResizedCrop / center-crop ratios above 1
_JPEG_OPTIONS = {"format": "JPEG", "quality": 95, "subsampling": 0}


def cache_short_side(image_size: int) -> int:
    """Shorter side stored in the cache for a given training size (``224 -> 258``)."""
    return round(CACHE_MARGIN * image_size)


@dataclass
class CacheStats:
    total: int = 0
    hits: int = 0
    built: int = 0
    failed: int = 0
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.total / self.seconds if self.seconds > 0 else 0.0


def decode_resized(path: Path, short_side: int) -> Image.Image:
    """Decode ``path`` (EXIF orientation, then RGB) with its shorter side reduced to ``short_side``.

    Images already smaller are not enlarged. JPEGs are decoded at a reduced DCT scale first, but never
    below twice the target, so the final Lanczos step still sees enough detail.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            w, h = image.size
            scale = 2 * short_side / min(w, h)
            if scale < 1:
                image.draft(None, (max(1, int(w * scale)), max(1, int(h * scale))))  # type: ignore[arg-type]
            image.load()
            image = to_rgb(ImageOps.exif_transpose(image))
    w, h = image.size
    if min(w, h) > short_side:
        ratio = short_side / min(w, h)
        size = (short_side, round(h * ratio)) if w <= h else (round(w * ratio), short_side)
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return image


class ResizeCache:
    def __init__(self, cache_dir: Path, short_side: int):
        if short_side < 1:
            raise ValueError(f"short_side must be positive, got {short_side}")
        self.cache_dir = Path(cache_dir)
        self.short_side = int(short_side)
        self._write_failed = False

    def entry_path(self, path: Path) -> Path:
        """Where the cached copy of ``path`` lives (whether or not it exists yet)."""
        path = Path(path).absolute()
        st = path.stat()
        key = hashlib.sha256(f"{path}|{st.st_size}|{st.st_mtime_ns}|{self.short_side}".encode()).hexdigest()
        return self.cache_dir / str(self.short_side) / key[:2] / f"{key}.jpg"

    def ensure(self, path: Path) -> bool:
        """Make sure an entry exists; True when it already did. Corrupt sources raise PIL's error."""
        entry = self.entry_path(path)
        if entry.is_file():
            return True
        self._store(path, entry)
        return False

    def load(self, path: Path) -> Image.Image:
        """The cached RGB image for ``path``, building the entry on a miss."""
        entry = self.entry_path(path)
        try:
            with Image.open(entry) as image:
                image.load()
                return image.convert("RGB")
        except OSError:
            pass  # no entry yet, no cache folder, or a damaged entry: decode the source again
        data = self._store(path, entry)
        # Return what later epochs will read (the stored JPEG), so epoch 1 is not subtly different.
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.convert("RGB")

    def _store(self, path: Path, entry: Path) -> bytes:
        buf = io.BytesIO()
        decode_resized(path, self.short_side).save(buf, **_JPEG_OPTIONS)
        data = buf.getvalue()
        try:
            atomic_write_bytes(entry, data)
        except OSError as exc:
            # The cache cannot be written (read-only folder, a file in the way, a full disk): that is
            # no fault of the image, so it is used uncached rather than skipped as unreadable.
            if not self._write_failed:
                log.warning(
                    "cannot write the resize cache in %s (%s); images are decoded without it",
                    self.cache_dir,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                )
            self._write_failed = True
        return data

    def build(
        self, paths: list[Path], workers: int = 1, progress: Callable[[int, int], None] | None = None
    ) -> CacheStats:
        """Fill the cache for ``paths`` across ``workers`` processes; unreadable files are counted, not raised.

        ``progress(done, total)`` is called as chunks finish (the CLI draws a bar with it).
        """
        stats = CacheStats(total=len(paths))
        start = time.perf_counter()
        chunks = _chunks([str(p) for p in paths], max(1, len(paths) // max(1, workers * 8)))
        if workers <= 1 or len(paths) < 2:
            results = (_build_chunk(self.cache_dir, self.short_side, c) for c in chunks)
            _collect(results, stats, progress)
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = pool.map(
                    _build_chunk, [self.cache_dir] * len(chunks), [self.short_side] * len(chunks), chunks
                )
                _collect(futures, stats, progress)
        stats.seconds = time.perf_counter() - start
        return stats


def _chunks(items: list[str], size: int) -> list[list[str]]:
    size = min(size, 64)
    return [items[i : i + size] for i in range(0, len(items), size)]


def _build_chunk(cache_dir: Path, short_side: int, paths: list[str]) -> tuple[int, int, int]:
    cache = ResizeCache(cache_dir, short_side)
    hits = built = failed = 0
    for p in paths:
        try:
            if cache.ensure(Path(p)):
                hits += 1
            else:
                built += 1
        except Exception:  # noqa: BLE001 — the dataset reports unreadable files when it meets them
            failed += 1
    return hits, built, failed


def _collect(results, stats: CacheStats, progress: Callable[[int, int], None] | None) -> None:
    for hits, built, failed in results:
        stats.hits += hits
        stats.built += built
        stats.failed += failed
        if progress:
            progress(stats.hits + stats.built + stats.failed, stats.total)


def default_workers() -> int:
    return max(1, usable_cpus())
