"""Frozen-feature probes: what the pretrained backbone, left as it is, can already tell apart in the data.

The budget recipe asks the data two questions before it spends the budget — does it have an "up"
(:mod:`imgclf.budget.orientation`) and what image size do its pixels need
(:mod:`imgclf.budget.resolution`). Both answer them the same cheap way, with no training step:

1. :func:`probe_set`: up to ``PROBE_IMAGES`` training images (stratified), decoded once;
2. :func:`embed`: one feature vector per image (the backbone's pooled features, frozen) at a size, for each view;
3. :func:`held_out_correct`: scikit-learn's logistic regression on the identity features, cross-validated
   (``FOLDS`` stratified folds), so each image is scored by a model that never saw it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgclf.config import Config
from imgclf.runtime import use_channels_last

PROBE_IMAGES = 320  # images a probe embeds
FOLDS = 4


@dataclass
class ProbeSet:
    """The probe's images (decoded RGB), their labels and the model whose frozen backbone embeds them."""

    model: torch.nn.Module
    data_config: dict[str, Any]
    images: list[Any]
    labels: np.ndarray


ProbeSource = Callable[[], "ProbeSet | None"]  # the probe images, decoded on the first call


def shared_probe(cfg: Config, dataset: Path, size: int) -> ProbeSource:
    """:func:`probe_set` at ``size`` (the largest size any probe will embed), decoded once, on the first probe that
    runs, and handed to the others."""
    kept: list[ProbeSet | None] = []

    def source() -> ProbeSet | None:
        if not kept:
            kept.append(probe_set(cfg, dataset, size))
        return kept[0]

    return source


def _enough(labels: np.ndarray, classes: int) -> bool:
    return classes >= 2 and len(labels) >= 2 * classes and np.bincount(labels, minlength=classes).min() >= 2


def _bounded(image: Any, side: int) -> Any:
    """``image`` with its shorter side at most ``side`` (the probe keeps its images in memory: with
    ``data.cache=false`` they would be the full-size originals)."""
    short = min(image.size)
    if short <= side:
        return image
    from PIL import Image

    scale = side / short
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BICUBIC)


def probe_set(cfg: Config, dataset: Path, size: int) -> ProbeSet | None:
    """The stratified probe subset, decoded for sizes up to ``size`` (through the resize cache when it is on,
    shrunk to the cache's side when it is off); None when some class has fewer than two readable images."""
    from imgclf.data.pipeline import cached_side, image_loader
    from imgclf.data.samples import load_training_set
    from imgclf.data.split import stratified_subset
    from imgclf.data.transforms import Preprocessing
    from imgclf.models.backbones import create_model, data_config

    samples = load_training_set(Path(dataset), Path(cfg.data.blocklist) if cfg.data.blocklist else None)
    labels, classes = np.asarray(samples.labels), len(samples.classes)
    if not _enough(labels, classes):
        return None
    chosen = stratified_subset(
        labels, np.arange(len(labels)), min(1.0, PROBE_IMAGES / len(labels)), cfg.data.split_seed
    )
    model, _ = create_model(cfg.model, classes)
    if use_channels_last(torch.device("cpu"), cfg.train.channels_last):
        model.to(memory_format=torch.channels_last)
    pre = Preprocessing.from_model(data_config(model), size, 1.0)
    load, side = image_loader(cfg.data, samples.root, pre), cached_side(pre)
    images, kept = [], []
    for i in chosen:
        try:
            images.append(_bounded(load(samples.paths[i]), side))
            kept.append(int(i))
        except Exception:  # noqa: BLE001 — an unreadable image: training reports it; the probe skips it
            continue
    if not _enough(labels[kept], classes):
        return None
    return ProbeSet(model, data_config(model), images, labels[kept])


def identity(batch: torch.Tensor, name: str) -> torch.Tensor:
    return batch


def embed(
    probe: ProbeSet,
    size: int,
    views: Sequence[str] = ("identity",),
    view: Callable[[torch.Tensor, str], torch.Tensor] = identity,
) -> dict[str, np.ndarray]:
    """Per view name, the frozen backbone's features of every probe image at ``size`` px (the eval transform with no
    border cut), ``view(batch, name)`` applied to the transformed batch."""
    from imgclf.data.transforms import Preprocessing, eval_transform

    transform = eval_transform(Preprocessing.from_model(probe.data_config, size, 1.0))
    backbone = probe.model.backbone.eval()
    features: dict[str, list[np.ndarray]] = {name: [] for name in views}
    with torch.inference_mode():
        for start in range(0, len(probe.images), 64):
            batch = torch.stack([transform(image) for image in probe.images[start : start + 64]])
            for name in views:
                features[name].append(backbone(view(batch, name)).float().numpy())
    return {name: np.concatenate(parts) for name, parts in features.items()}


def held_out_correct(features: dict[str, np.ndarray], labels: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Per image and view: was it classified right by a logistic regression trained, in cross-validation, on the
    identity features of the other images?"""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = min(FOLDS, int(np.bincount(labels).min()))
    correct = {name: np.zeros(len(labels), dtype=bool) for name in features}
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(features["identity"], labels):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=500))
        model.fit(features["identity"][train], labels[train])
        for name, feats in features.items():
            correct[name][test] = model.predict(feats[test]) == labels[test]
    return correct
