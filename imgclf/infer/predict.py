"""Predict class probabilities for images with a loaded run (plain or with test-time augmentation)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from imgclf.config import TTAConfig
from imgclf.data.datasets import ImageDataset
from imgclf.data.pipeline import image_loader, make_loader
from imgclf.data.transforms import eval_transform
from imgclf.errors import ConfigError
from imgclf.infer.predictions import CountedModel, Predictions
from imgclf.run.load import LoadedRun
from imgclf.eval.logits import predict_logits
from imgclf.runtime import autocast_dtype, resolve_device


def predict_paths(
    loaded: LoadedRun,
    paths: list[Path],
    *,
    root: Path,
    batch_size: int = 64,
    device: torch.device | str = "auto",
    num_workers: int | None = None,
    tta: TTAConfig | None = None,
    calibrated: bool = True,
    engine: str = "torch",
    on_images: Callable[[int], None] | None = None,
) -> Predictions:
    """Probabilities for ``paths``; unreadable files are skipped and listed in ``bad``.

    ``calibrated`` divides logits by the run's fitted temperature (it changes confidence, not
    the argmax); adaptive TTA's thresholds are meant for calibrated probabilities. ``engine``
    ``onnx`` runs the run's ONNX export with ONNX Runtime (exported on first use) behind the
    same decoding, cache and transforms. ``on_images(n)`` is called after every forward pass of ``n`` images
    (TTA makes several per image), for a progress bar.
    """
    device = resolve_device(device)
    if engine == "onnx":
        from imgclf.infer.export import onnx_engine_for

        loaded = onnx_engine_for(loaded, device)
        device = torch.device("cpu")  # ONNX Runtime takes host arrays and moves them itself
    elif engine != "torch":
        raise ConfigError(f"unknown engine {engine!r}; choose torch or onnx")
    if on_images is not None:
        loaded = dataclasses.replace(loaded, model=CountedModel(loaded.model, on_images))
    temperature = loaded.temperature if calibrated else 1.0
    loader_fn = image_loader(loaded.cfg.data, root, loaded.pre)
    t0 = time.perf_counter()
    if tta is not None and tta.mode != "none" and not loaded.task.multiclass:
        from imgclf.infer.tta_runner import predict_outputs_with_tta

        result = predict_outputs_with_tta(loaded, paths, loader_fn, tta, batch_size, device)
        result.seconds = time.perf_counter() - t0
        return result
    if tta is not None and tta.mode != "none":
        from imgclf.infer.tta_runner import predict_with_tta

        result = predict_with_tta(loaded, paths, loader_fn, tta, batch_size, device, temperature)
        result.seconds = time.perf_counter() - t0
        return result
    data = ImageDataset(paths, None, eval_transform(loaded.pre), loader_fn)
    loader = make_loader(data, batch_size, shuffle=False, num_workers=num_workers, pin_memory=device.type == "cuda")
    logits, _, indices, bad = predict_logits(loaded.model, loader, device, autocast_dtype(device, loaded.cfg.train.amp))
    # class probabilities (softmax of logit / temperature), label probabilities or values: imgclf.task
    probs = loaded.task.outputs(logits.numpy(), temperature) if len(logits) else np.zeros((0, len(loaded.classes)))
    kept = [paths[i] for i in indices.tolist()]
    return Predictions(
        probs, kept, np.ones(len(kept), dtype=int), [paths[i] for i in bad], time.perf_counter() - t0, logits.numpy()
    )
