"""Run test-time augmentation for a loaded run over image files.

The pure TTA logic lives in ``imgclf.infer.tta``; this module supplies what it needs from a
run: the decoded images (each file decoded once), the run's views and a forward that moves
a batch to the device under autocast.

Example::

    loaded = load_run(run_dir)
    loader = image_loader(loaded.cfg.data, root, loaded.pre)
    pred = predict_with_tta(loaded, paths, loader, loaded.cfg.tta.model_copy(update={"mode": "adaptive"}),
                            batch_size=64, device=torch.device("cpu"), temperature=loaded.temperature)
    pred.probs.argmax(1), pred.passes
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from imgclf.config import TTAConfig
from imgclf.data.datasets import Loader
from imgclf.data.transforms import AugmentSpec, train_transform
from imgclf.errors import ConfigError
from imgclf.infer.predictions import Predictions
from imgclf.run.load import LoadedRun
from imgclf.infer.tta import Forward, View, run_tta
from imgclf.infer.views import build_views, parse_view
from imgclf.runtime import autocast_dtype, loader_workers, resolve_device

log = logging.getLogger("imgclf")

# Decoded images kept in memory; beyond this they are decoded again on each use (cheap from the
# resize cache). 2 GiB holds ~8,000 cache-sized 224 px photos or any competition test set at 64 px.
MEMORY_BUDGET_BYTES = 2 * 2**30
_UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class DecodedImages(Sequence):
    """The readable images of ``paths``, each decoded once through ``loader``.

    Construction decodes every file (in threads: Pillow releases the GIL while decoding) to
    find the unreadable ones, which go to ``bad``; ``paths`` keeps the rest, in order, and
    ``self[i]`` is the RGB image of ``paths[i]``. Images are kept in memory until
    ``max_bytes`` of pixels are held; later ones are reloaded on access. A fixed set (not an
    LRU) because TTA sweeps the images in order, which an LRU smaller than the set never hits.
    """

    def __init__(
        self, paths: Sequence[Path], loader: Loader, max_bytes: int = MEMORY_BUDGET_BYTES, workers: int | None = None
    ):
        self.loader = loader
        self.paths: list[Path] = []
        self.bad: list[Path] = []
        self._kept: dict[int, Image.Image] = {}
        held = 0
        workers = max(1, loader_workers(workers))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for path, image in zip(paths, pool.map(self._try_load, paths)):
                if image is None:
                    self.bad.append(path)
                    continue
                size = image.width * image.height * 3
                if held + size <= max_bytes:
                    self._kept[len(self.paths)] = image
                    held += size
                self.paths.append(path)
        self.bytes_held = held

    def _try_load(self, path: Path) -> Image.Image | None:
        try:
            return self.loader(path)
        except _UNREADABLE as exc:
            log.warning(
                "skipping unreadable image %s: %s", path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            )
            return None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Image.Image:  # type: ignore[override]
        if not 0 <= index < len(self.paths):
            raise IndexError(index)
        kept = self._kept.get(index)
        return kept if kept is not None else self.loader(self.paths[index])


def run_views(loaded: LoadedRun, names: Sequence[str]) -> list[View]:
    """The run's views for ``names``; ``random`` views reuse the run's training augmentation."""
    needs_train = any(parse_view(n).kind == "random" for n in names)
    augment = train_transform(loaded.pre, AugmentSpec.from_config(loaded.cfg.data)) if needs_train else None
    pre = loaded.pre
    return build_views(list(names), pre.image_size, pre.mean, pre.std, pre.interpolation, pre.crop_pct, augment)


def model_forward(loaded: LoadedRun, device: torch.device | str) -> Forward:
    """``batch -> raw float32 logits on the CPU``, on ``device`` under the run's autocast setting."""
    device = resolve_device(device)
    amp = autocast_dtype(device, loaded.cfg.train.amp)
    model = loaded.model

    def forward(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            return model(batch.to(device, non_blocking=True)).float().cpu()

    return forward


@dataclass
class _FirstViewRecorder:
    """Keeps the raw logits of view 0 per image, as TTA computes them (no extra passes).

    TTA stacks the views it computed since the previous forward into one batch; the tagged
    images and views below note which (image, view) each row is. If that ever stops holding,
    the recorder gives up (``logits`` → None) rather than guess.
    """

    n_images: int
    rows: list[tuple[int, int]] = field(default_factory=list)
    first: dict[int, np.ndarray] = field(default_factory=dict)
    broken: bool = False

    def images(self, images: Sequence[Any]) -> Sequence[Any]:
        return _Tagged(images)

    def views(self, views: Sequence[View]) -> list[Callable]:
        def tagged(v: int, view: View) -> Callable:
            def call(item: tuple[int, Any]) -> torch.Tensor:
                self.rows.append((item[0], v))
                return view(item[1])

            return call

        return [tagged(v, view) for v, view in enumerate(views)]

    def forward(self, inner: Forward) -> Forward:
        def forward(batch: torch.Tensor) -> torch.Tensor:
            out = inner(batch)
            rows, self.rows = self.rows, []
            if len(rows) != len(out):
                self.broken = True
            elif not self.broken:
                for (i, v), row in zip(rows, out):
                    if v == 0:
                        self.first[i] = row.detach().float().numpy()
            return out

        return forward

    def logits(self) -> np.ndarray | None:
        if self.broken or len(self.first) != self.n_images or self.n_images == 0:
            return None
        return np.stack([self.first[i] for i in range(self.n_images)])


class _Tagged(Sequence):
    def __init__(self, images: Sequence[Any]):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[int, Any]:  # type: ignore[override]
        return index, self.images[index]


def predict_with_tta(
    loaded: LoadedRun,
    paths: list[Path],
    loader_fn: Loader,
    tta: TTAConfig,
    batch_size: int,
    device: torch.device | str,
    temperature: float,
) -> Predictions:
    """TTA probabilities for ``paths`` (``tta.mode`` none / fixed / adaptive); unreadable files go to ``bad``.

    ``logits`` holds the raw logits of the first view (the plain prediction when it is
    ``identity``, as by default), recorded during TTA at no extra cost; None otherwise.
    """
    t0 = time.perf_counter()
    images = DecodedImages(paths, loader_fn)
    views = run_views(loaded, tta.views)
    recorder = _FirstViewRecorder(len(images))
    result = run_tta(
        recorder.forward(model_forward(loaded, device)),
        recorder.images(images),
        recorder.views(views),
        tta,
        batch_size,
        temperature,
    )
    first_is_plain = parse_view(tta.views[0]).name == "identity"
    n_classes = len(loaded.classes)
    probs = result.probs if len(images) else np.zeros((0, n_classes))
    return Predictions(
        probs,
        list(images.paths),
        result.passes.astype(int),
        list(images.bad),
        time.perf_counter() - t0,
        recorder.logits() if first_is_plain else None,
    )


def predict_outputs_with_tta(
    loaded: LoadedRun,
    paths: list[Path],
    loader_fn: Loader,
    tta: TTAConfig,
    batch_size: int,
    device: torch.device | str,
) -> Predictions:
    """Fixed TTA for multilabel and regression runs: the mean over the first ``tta.n`` views of the task's outputs
    (label probabilities, or values). Adaptive TTA spends views where class probabilities are unsure, which a label
    set or a value does not have: it is a one-line ConfigError here."""
    if tta.mode != "fixed":
        raise ConfigError(
            f"tta.mode={tta.mode} is for one class per image; this run is {loaded.task.kind}: use a fixed number of views"
        )
    t0 = time.perf_counter()
    images = DecodedImages(paths, loader_fn)
    views = run_views(loaded, tta.views)[: max(1, tta.n)]
    forward = model_forward(loaded, device)
    total = np.zeros((len(images), len(loaded.classes)))
    for view in views:
        for start in range(0, len(images), batch_size):
            batch = torch.stack([view(images[i]) for i in range(start, min(start + batch_size, len(images)))])
            total[start : start + len(batch)] += loaded.task.outputs(forward(batch).numpy())
    passes = np.full(len(images), len(views), dtype=int)
    return Predictions(total / len(views), list(images.paths), passes, list(images.bad), time.perf_counter() - t0, None)
