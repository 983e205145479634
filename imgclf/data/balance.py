"""Class imbalance on the data side: per-class loss weights and a class-balanced sampler.

``train.class_weights`` is ``none``, ``balanced`` (scikit-learn's ``compute_class_weight``, i.e.
``n_samples / (n_classes * count)``, over the training split's labels) or a file mapping class name
to weight: YAML / JSON (``{"cat": 2.0, "dog": 1.0}``) or CSV (``class,weight`` rows, header
optional). Classes the file does not list weigh 1.0; a class the dataset does not have, a weight
that is negative or not a number, or a file whose weights are all zero is one ConfigError line.

``data.sampler=balanced`` draws each epoch's indices with torch's ``WeightedRandomSampler``
(with replacement, inverse class frequency, as many draws as training images), seeded from
(seed, epoch) like the ``DistributedSampler`` it replaces, and sharded across DDP ranks the same
way (process r takes draws r, r+N, ...).

Example::

    weights = class_weights("balanced", train_labels, classes)   # np.ndarray, one weight per class
    sampler = BalancedSampler(train_labels, len(classes), seed=0)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

from imgclf.data.csvlist import read_rows
from imgclf.errors import ConfigError
from imgclf.safe_yaml import MAX_BYTES, read_yaml_file

WEIGHT_FILE_SUFFIXES = (".yaml", ".yml", ".json", ".csv")


def is_weight_file(spec: str) -> bool:
    """Whether ``train.class_weights`` names a file (anything but ``none`` and ``balanced``)."""
    return spec not in ("none", "balanced")


def read_class_weight_file(path: str | Path) -> dict[str, float]:
    """``{class name: weight}`` from a YAML, JSON or CSV file; every problem is one ConfigError line."""
    path = Path(path)
    what = f"train.class_weights: {path}"
    suffix = path.suffix.lower()
    if suffix not in WEIGHT_FILE_SUFFIXES:
        raise ConfigError(
            f"train.class_weights must be none, balanced or a {'/'.join(WEIGHT_FILE_SUFFIXES)} file, got {str(path)[:120]!r}"
        )
    if not path.is_file():
        raise ConfigError(f"{what}: file not found")
    if suffix == ".csv":
        mapping = _csv_mapping(path)
    elif suffix == ".json":
        mapping = _json_mapping(path)
    else:
        mapping = read_yaml_file(path, what="train.class_weights file")
    if not isinstance(mapping, dict) or not mapping:
        raise ConfigError(f"{what}: expected a non-empty mapping of class name to weight")
    out: dict[str, float] = {}
    for name, value in mapping.items():
        weight = _number(value)
        if weight is None or weight < 0:
            raise ConfigError(
                f"{what}: the weight of class {str(name)[:60]!r} must be a finite number >= 0, got {str(value)[:40]!r}"
            )
        out[str(name)] = weight
    if not any(out.values()):
        raise ConfigError(f"{what}: every weight is 0; at least one class must count")
    return out


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _json_mapping(path: Path) -> object:
    if path.stat().st_size > MAX_BYTES:
        raise ConfigError(f"train.class_weights: {path} is over {MAX_BYTES:,} bytes")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"train.class_weights: {path} is not a UTF-8 text file") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"train.class_weights: {path} is not valid JSON at line {exc.lineno}") from None


def _csv_mapping(path: Path) -> dict[str, str]:
    rows = read_rows(path)
    if rows and _number(rows[0][1][1] if len(rows[0][1]) > 1 else "") is None:
        rows = rows[1:]  # a header row: its weight column is not a number
    mapping: dict[str, str] = {}
    for line, row in rows:
        if len(row) != 2 or not row[0].strip():
            raise ConfigError(
                f"train.class_weights: {path} row {line}: expected class,weight, got {','.join(row)[:80]!r}"
            )
        if row[0].strip() in mapping:
            raise ConfigError(f"train.class_weights: {path} row {line}: class {row[0].strip()[:60]!r} is listed twice")
        mapping[row[0].strip()] = row[1].strip()
    return mapping


def weights_for_classes(mapping: dict[str, float], classes: Sequence[str], source: str) -> np.ndarray:
    """One weight per class in ``classes`` order (1.0 where ``mapping`` is silent)."""
    unknown = sorted(set(mapping) - set(classes))
    if unknown:
        raise ConfigError(
            f"train.class_weights: {source} names class(es) the dataset does not have: "
            f"{', '.join(repr(u[:40]) for u in unknown[:5])}{' ...' if len(unknown) > 5 else ''}"
        )
    return np.array([mapping.get(name, 1.0) for name in classes], dtype=np.float64)


def balanced_weights(labels: Sequence[int], num_classes: int) -> np.ndarray:
    """scikit-learn's ``compute_class_weight("balanced")`` for the classes present in ``labels``;
    a class absent from them (all its images went to validation) weighs 1.0."""
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.asarray(labels, dtype=np.int64)
    present = np.unique(labels)
    weights = np.ones(num_classes, dtype=np.float64)
    if len(present):
        weights[present] = compute_class_weight("balanced", classes=present, y=labels)
    return weights


def class_weights(spec: str, labels: Sequence[int], classes: Sequence[str]) -> np.ndarray | None:
    """The loss weights ``train.class_weights`` asks for (None: unweighted)."""
    if spec == "none":
        return None
    if spec == "balanced":
        return balanced_weights(labels, len(classes))
    return weights_for_classes(read_class_weight_file(spec), classes, spec)


class BalancedSampler(WeightedRandomSampler):
    """Inverse-class-frequency draws with replacement; ``set_epoch`` re-seeds, ranks shard the draws.

    Every rank draws the same global sequence (same seed) of ``len(labels)`` trimmed to a multiple
    of ``world_size`` and keeps items ``rank, rank + world_size, ...``, so N processes see the same
    images per epoch as one.
    """

    def __init__(self, labels: Sequence[int], num_classes: int, seed: int, rank: int = 0, world_size: int = 1):
        labels = np.asarray(labels, dtype=np.int64)
        counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
        per_item = 1.0 / counts[labels]
        super().__init__(torch.as_tensor(per_item, dtype=torch.double), len(labels), replacement=True)
        self.total = len(labels) - len(labels) % world_size  # trimmed, like DistributedSampler(drop_last=True)
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        # A fresh generator per pass: the draws are a function of (seed, epoch) alone, as after a resume.
        self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        draws = list(super().__iter__())[: self.total]
        return iter(draws[self.rank :: self.world_size])

    def __len__(self) -> int:
        return self.total // self.world_size
