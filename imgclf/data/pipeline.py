"""From a dataset folder and a config to train/validation DataLoaders."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from imgclf.config import DataConfig
from imgclf.data.datasets import ImageDataset, Loader, collate_skip_bad
from imgclf.data.images import load_rgb
from imgclf.data.samples import TrainingSet
from imgclf.runtime import loader_workers
from imgclf.data.split import (
    load_split,
    multilabel_group_split,
    save_split,
    stratified_group_split,
    stratified_subset,
)
from imgclf.task import Task
from imgclf.data.transforms import AugmentSpec, Preprocessing, eval_transform, train_transform

log = logging.getLogger("imgclf")


def cached_side(pre: Preprocessing) -> int:
    """Shorter side of cached images: about 1.15× the training size (the same rule ``prepare`` uses),
    never below what the eval transform resizes to, so nothing is ever upsampled from the cache."""
    from imgclf.data.cache import cache_short_side

    return max(cache_short_side(pre.image_size), pre.resize_short_side)


def image_loader(cfg: DataConfig, root: Path, pre: Preprocessing) -> Loader:
    """The function every dataset uses to turn a path into a decoded RGB image."""
    if not cfg.cache:
        return load_rgb
    from imgclf.data.cache import ResizeCache

    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else root / ".imgclf-cache"
    return ResizeCache(cache_dir, cached_side(pre)).load


@dataclass
class DataBundle:
    samples: TrainingSet
    pre: Preprocessing
    train_idx: np.ndarray
    val_idx: np.ndarray
    train_data: ImageDataset
    val_data: ImageDataset
    loader: Loader

    def rel_paths(self, indices: np.ndarray) -> list[str]:
        return [self.samples.rel(self.samples.paths[i]) for i in indices]


def build_data(
    cfg: DataConfig,
    samples: TrainingSet,
    pre: Preprocessing,
    split_out: Path | None,
    resume_split: dict[str, str] | None = None,
) -> DataBundle:
    """Split ``samples`` (or re-use ``cfg.split_file``) and build the two datasets.

    The split depends on ``cfg.split_seed`` only, never on the training seed, so runs with
    different seeds are compared on the same validation images. A resumed run passes its own
    ``split.csv`` (as read by :func:`read_split`) as ``resume_split``: it is applied exactly, and images added to the dataset since
    are left out (with a warning), so no validation image ever becomes a training image.
    """
    rel = [samples.rel(p) for p in samples.paths]
    used = np.ones(len(rel), dtype=bool)
    if resume_split is not None:
        lookup = resume_split
        used = np.array([p in lookup for p in rel], dtype=bool)
        if not used.all():
            log.warning(
                "%d image(s) were added to the dataset since this run started; the resumed run leaves them out "
                "(it keeps its split.csv), e.g. %s",
                int((~used).sum()),
                rel[int(np.flatnonzero(~used)[0])],
            )
        is_val = np.array([lookup.get(p) == "val" for p in rel], dtype=bool)
    elif cfg.split_file:
        is_val = load_split(Path(cfg.split_file), rel)
    elif samples.task == "multilabel" and samples.targets is not None:
        is_val = multilabel_group_split(samples.targets, samples.groups, cfg.val_fraction, cfg.split_seed)
    else:  # regression: stratified by the binned target (samples.labels)
        is_val = stratified_group_split(
            samples.labels, samples.groups, cfg.val_fraction, cfg.split_seed, samples.classes
        )
    if split_out is not None:
        save_split(split_out, rel, target_cells(samples), is_val)
    train_idx = stratified_subset(samples.labels, np.flatnonzero(~is_val & used), cfg.subset, cfg.split_seed)
    val_idx = np.flatnonzero(is_val & used)
    loader = image_loader(cfg, samples.root, pre)
    paths = samples.paths
    labels = list(samples.targets) if samples.targets is not None else samples.labels  # rows of floats, or classes
    train_data = ImageDataset(
        [paths[i] for i in train_idx],
        [labels[i] for i in train_idx],
        train_transform(pre, AugmentSpec.from_config(cfg)),
        loader,
    )
    val_data = ImageDataset([paths[i] for i in val_idx], [labels[i] for i in val_idx], eval_transform(pre), loader)
    return DataBundle(samples, pre, train_idx, val_idx, train_data, val_data, loader)


def target_cells(samples: TrainingSet) -> list[str]:
    """Each image's target as a split.csv cell: its class, its labels space-separated, or its value."""
    if samples.targets is None:
        return [samples.classes[i] for i in samples.labels]
    task = Task(samples.task, tuple(samples.classes))
    return [task.target_text(row) for row in samples.targets]


def make_loader(
    data: ImageDataset,
    batch_size: int,
    *,
    shuffle: bool,
    num_workers: int | None,
    generator: torch.Generator | None = None,
    sampler: Sampler | None = None,
    pin_memory: bool = False,
    persistent: bool = False,
    drop_last: bool = False,
) -> DataLoader:
    workers = loader_workers(num_workers)
    return DataLoader(
        data,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_skip_bad,
        generator=generator,
        pin_memory=pin_memory,
        persistent_workers=persistent and workers > 0,
        drop_last=drop_last,
    )
