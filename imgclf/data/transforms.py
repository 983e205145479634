"""Train and eval transforms, built on timm's factory with the model's own preprocessing.

Augmentation exists only in the train transform; eval (validation, test, prediction) is
resize + centre crop + normalise, deterministic by construction, whatever the augmentation keys.
The eval crop is ``Preprocessing.crop_pct`` (data.eval_crop_pct, else the model's), saved with the run.

Example::

    spec = AugmentSpec("medium", crop_scale=(0.8, 1.0), flips="d4")
    spec.describe()  # 'medium: crop scale 0.8-1, ratio 0.75-1.33, flips d4, colour jitter 0.3'
    train_transform(pre, spec)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from PIL import Image
from timm.data import create_transform
from timm.data.auto_augment import AugmentOp, posterize
from torchvision import transforms

from imgclf.data.dihedral import RandomDihedral
from imgclf.errors import ConfigError

from imgclf.config import AUGMENT_PRESETS, FLIP_GROUPS

PRESETS = AUGMENT_PRESETS  # the names config.py declares
FLIPS = FLIP_GROUPS  # the names config.py declares
DEFAULT_RATIO = (3 / 4, 4 / 3)  # timm's RandomResizedCrop default aspect-ratio range

# What each preset does, on top of the model's own size/interpolation/mean/std. Each of
# scale / flips / color_jitter can be overridden by its own data.* key (see AugmentSpec).
# strong: timm turns colour jitter off under RandAugment (which changes colour itself), so
# it is listed as None here: the table says what really happens.
_PRESETS: dict[str, dict[str, Any]] = {
    "auto": dict(scale=(0.35, 1.0), flips="h", color_jitter=0.3),  # medium; label sets and values resolve it first
    "none": dict(scale=None, flips="none", color_jitter=None),
    "light": dict(scale=(0.6, 1.0), flips="h", color_jitter=None),
    "medium": dict(scale=(0.35, 1.0), flips="h", color_jitter=0.3),
    "strong": dict(
        scale=(0.25, 1.0),
        flips="h",
        color_jitter=None,
        extra=dict(auto_augment="rand-m9-mstd0.5-inc1", re_prob=0.25, re_mode="pixel"),
    ),
}
_FLIP_PROBS = {"none": (0.0, 0.0), "h": (0.5, 0.0), "hv": (0.5, 0.5), "d4": (0.0, 0.0)}


@dataclass(frozen=True)
class AugmentSpec:
    """The training augmentation: a preset, and the keys that override its parts (None = the preset's).

    ``crop_scale``/``crop_ratio``: RandomResizedCrop's area fraction and aspect-ratio ranges;
    ``flips``: none | h (left-right, p=0.5) | hv (and up-down, p=0.5) | d4 (one of the 8 flips and
    quarter turns, uniformly); ``color_jitter``: brightness/contrast/saturation strength (0 = off).
    """

    preset: str = "auto"
    crop_scale: tuple[float, float] | None = None
    crop_ratio: tuple[float, float] | None = None
    flips: str | None = None
    color_jitter: float | None = None

    @classmethod
    def from_config(cls, cfg: Any) -> "AugmentSpec":
        """From a :class:`imgclf.config.DataConfig` (its ``augment`` and override keys)."""

        def pair(v):
            return None if v is None else (float(v[0]), float(v[1]))

        return cls(cfg.augment, pair(cfg.crop_scale), pair(cfg.crop_ratio), cfg.flips, cfg.color_jitter)

    def resolved(self) -> dict[str, Any]:
        """The effective settings: ``scale`` (None = no random crop), ``ratio``, ``flips``, ``color_jitter``."""
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown augmentation preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if self.flips is not None and self.flips not in FLIPS:
            raise ConfigError(f"unknown flips {self.flips!r}; choose one of {', '.join(FLIPS)}")
        base = _PRESETS[self.preset]
        jitter = base["color_jitter"] if self.color_jitter is None else (self.color_jitter or None)
        return dict(
            scale=self.crop_scale or base["scale"],
            ratio=self.crop_ratio or DEFAULT_RATIO,
            flips=self.flips or base["flips"],
            color_jitter=jitter,
            extra=base.get("extra", {}),
        )

    def describe(self) -> str:
        """One line a person can check: ``medium: crop scale 0.35-1, ratio 0.75-1.33, flips h, colour jitter 0.3``."""
        r = self.resolved()
        crop = (
            "no random crop"
            if r["scale"] is None
            else (f"crop scale {r['scale'][0]:g}-{r['scale'][1]:g}, ratio {r['ratio'][0]:.3g}-{r['ratio'][1]:.3g}")
        )
        jitter = f"colour jitter {r['color_jitter']:g}" if r["color_jitter"] else "no colour jitter"
        extra = ", RandAugment m9, random erasing 0.25" if r["extra"] else ""
        name = "auto (medium)" if self.preset == "auto" else self.preset  # auto is medium for one class per image
        return f"{name}: {crop}, flips {r['flips']}, {jitter}{extra}"


@dataclass(frozen=True)
class Preprocessing:
    """The numbers that define how pixels become a model input; saved in every run."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    crop_pct: float = 0.875

    @classmethod
    def from_model(
        cls, data_config: dict[str, Any], image_size: int | None = None, crop_pct: float | None = None
    ) -> "Preprocessing":
        """Take mean/std/interpolation/crop from the model's timm data config; ``image_size`` and
        ``crop_pct`` (data.eval_crop_pct: 1.0 = no border cut) override the model's when given."""
        size = image_size or int(data_config["input_size"][-1])
        return cls(
            image_size=size,
            mean=tuple(float(v) for v in data_config["mean"]),
            std=tuple(float(v) for v in data_config["std"]),
            interpolation=str(data_config.get("interpolation", "bicubic")),
            crop_pct=float(crop_pct if crop_pct is not None else data_config.get("crop_pct", 0.875)),
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


def train_transform(pre: Preprocessing, augment: AugmentSpec | str) -> Callable:
    """The training augmentation for ``augment``: an :class:`AugmentSpec`, or a preset name alone.

    With a random crop (every preset but ``none``, or any preset given ``crop_scale``) this is timm's
    training transform; without one it is the eval transform (resize, centre crop) plus the flips
    and colour jitter asked for. ``d4`` puts :class:`RandomDihedral` in front of either.
    """
    spec = AugmentSpec(augment) if isinstance(augment, str) else augment
    r = spec.resolved()
    hflip, vflip = _FLIP_PROBS[r["flips"]]
    if r["scale"] is None:
        steps: list[Callable] = []
        if hflip:
            steps.append(transforms.RandomHorizontalFlip(hflip))
        if vflip:
            steps.append(transforms.RandomVerticalFlip(vflip))
        if r["color_jitter"]:
            steps.append(transforms.ColorJitter(*(3 * [r["color_jitter"]])))
        base = transforms.Compose([*steps, eval_transform(pre)]) if steps else eval_transform(pre)
    else:
        base = _posterize_keeps_a_bit(
            create_transform(
                is_training=True,
                scale=r["scale"],
                ratio=r["ratio"],
                hflip=hflip,
                vflip=vflip,
                color_jitter=r["color_jitter"],
                **_model_kwargs(pre),
                **r["extra"],
            )
        )
    return transforms.Compose([RandomDihedral(), base]) if r["flips"] == "d4" else base


def posterize_at_least_one_bit(img: Image.Image, bits_to_keep: int, **kwargs: Any) -> Image.Image:
    """timm's posterize with at least 1 bit kept. RandAugment's increasing posterize keeps ``4 - 4 * m / 10``
    bits, so a magnitude drawn at 10 or above (m9 with std 0.5: about 1 draw in 40) asks for 0 bits, which
    Pillow refuses (ValueError): the image was then dropped as if unreadable. 1 bit is the strongest it takes."""
    return posterize(img, max(1, int(bits_to_keep)), **kwargs)


def _posterize_keeps_a_bit(transform: Callable) -> Callable:
    """``transform`` with every (Rand/Auto)Augment posterize op replaced by :func:`posterize_at_least_one_bit`."""
    for step in getattr(transform, "transforms", ()):
        ops = list(getattr(step, "ops", ())) + [op for sub in getattr(step, "policy", ()) for op in sub]
        for op in ops:
            if isinstance(op, AugmentOp) and op.name.startswith("Posterize"):
                op.aug_fn = posterize_at_least_one_bit
    return transform


def denormalize(batch: torch.Tensor, pre: Preprocessing) -> torch.Tensor:
    """Undo Normalize for display: returns values in [0, 1]."""
    mean = torch.tensor(pre.mean, dtype=batch.dtype).view(-1, 1, 1)
    std = torch.tensor(pre.std, dtype=batch.dtype).view(-1, 1, 1)
    return (batch * std + mean).clamp(0.0, 1.0)
