"""Train and eval transforms, built on timm's factory with the model's own preprocessing.

Augmentation exists only in the train transform; eval (validation, test, prediction) is
resize + centre crop + normalise, deterministic by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from timm.data import create_transform

from imgclf.config import AUGMENT_PRESETS

PRESETS = AUGMENT_PRESETS  # the names config.py declares

# What each preset adds, on top of the model's own size/interpolation/mean/std.
_PRESET_KWARGS: dict[str, dict[str, Any]] = {
    "light": dict(scale=(0.6, 1.0), hflip=0.5, color_jitter=None),
    "medium": dict(scale=(0.35, 1.0), hflip=0.5, color_jitter=0.3),
    "strong": dict(scale=(0.25, 1.0), hflip=0.5, color_jitter=0.4, auto_augment="rand-m9-mstd0.5-inc1", re_prob=0.25, re_mode="pixel"),
}


@dataclass(frozen=True)
class Preprocessing:
    """The numbers that define how pixels become a model input; saved in every run."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    crop_pct: float = 0.875

    @classmethod
    def from_model(cls, data_config: dict[str, Any], image_size: int | None = None) -> "Preprocessing":
        """Take mean/std/interpolation/crop from the model's timm data config; override the size only."""
        size = image_size or int(data_config["input_size"][-1])
        return cls(
            image_size=size,
            mean=tuple(float(v) for v in data_config["mean"]),
            std=tuple(float(v) for v in data_config["std"]),
            interpolation=str(data_config.get("interpolation", "bicubic")),
            crop_pct=float(data_config.get("crop_pct", 0.875)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessing":
        return cls(d["image_size"], tuple(d["mean"]), tuple(d["std"]), d["interpolation"], d["crop_pct"])

    @property
    def resize_short_side(self) -> int:
        """The shorter side the eval transform resizes to before its centre crop."""
        return int(math.floor(self.image_size / self.crop_pct))  # timm floors too


def _model_kwargs(pre: Preprocessing) -> dict[str, Any]:
    """What every transform takes from the model: size, interpolation, mean and std."""
    return dict(input_size=pre.image_size, interpolation=pre.interpolation, mean=pre.mean, std=pre.std)


def eval_transform(pre: Preprocessing) -> Callable:
    """Deterministic: resize shorter side, centre crop, to tensor, normalise."""
    return create_transform(is_training=False, crop_pct=pre.crop_pct, **_model_kwargs(pre))


def train_transform(pre: Preprocessing, preset: str) -> Callable:
    """The training augmentation for ``preset`` (none | light | medium | strong)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown augmentation preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if preset == "none":
        return eval_transform(pre)
    return create_transform(is_training=True, **_model_kwargs(pre), **_PRESET_KWARGS[preset])


def denormalize(batch: torch.Tensor, pre: Preprocessing) -> torch.Tensor:
    """Undo Normalize for display: returns values in [0, 1]."""
    mean = torch.tensor(pre.mean, dtype=batch.dtype).view(-1, 1, 1)
    std = torch.tensor(pre.std, dtype=batch.dtype).view(-1, 1, 1)
    return (batch * std + mean).clamp(0.0, 1.0)
