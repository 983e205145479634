"""Named, deterministic test-time views of an already decoded PIL RGB image.

A view maps one image to a normalised ``(3, image_size, image_size)`` tensor. The family,
with ``S = image_size`` (sizes are floored, as timm's eval transform does, so that
``identity`` is exactly ``imgclf.data.transforms.eval_transform``):

- ``identity``: the eval transform: shorter side to ``floor(S / crop_pct)``, centre crop S.
- ``center_crop``: a tighter centre crop: shorter side to ``floor(S / 0.75)``, centre crop S.
- ``crop_tl | crop_tr | crop_bl | crop_br``: the four corner crops of that same tight resize.
- ``scale_<f>`` (e.g. ``scale_1.15``, ``scale_0.87``): shorter side to
  ``floor(S * f / crop_pct)``, centre crop S. When the resized image is smaller than S it
  is padded with the normalisation mean (zeros after Normalize), so a zoomed-out view shows
  the whole image on a neutral border instead of being stretched back up.
- ``hflip``: the mirrored ``identity``; ``hflip_<view>`` mirrors any view above. The flip
  is applied to the output tensor, so it is exactly the mirror image of the unflipped view.
- ``rot90 | rot180 | rot270``: ``identity`` turned by quarter turns (counter-clockwise, on the
  output tensor); with ``hflip_`` these give the eight views of ``d4`` (:data:`SYMMETRY_VIEWS`):
  for a model trained with ``data.flips`` hv or d4, the views it was trained to be indifferent to.
- ``random`` / ``random_<i>``: the training transform, seeded from the image's pixels and
  ``i``, so a run is reproducible and does not depend on batch size or image order. Never
  in the default list; needs ``train_transform``.

Example::

    views = build_views(["identity", "hflip", "scale_1.15"], image_size=224,
                        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                        interpolation="bicubic", crop_pct=0.875)
    batch = torch.stack([view(image) for view in views])  # (3, 3, 224, 224)
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F

from imgclf.errors import ConfigError

View = Callable[[Image.Image], torch.Tensor]

TIGHT_CROP_PCT = 0.75
CORNERS = ("crop_tl", "crop_tr", "crop_bl", "crop_br")
_MAX_SCALE = 4.0  # beyond this a "scale" view is mostly upsampling blur or border
VALID_NAMES_HELP = (
    "identity, hflip, center_crop, crop_tl, crop_tr, crop_bl, crop_br, scale_<f> (e.g. scale_1.15), "
    "rot90, rot180, rot270, hflip_<view> (e.g. hflip_center_crop), random, random_<i>"
)
TURNS = {"rot90": 1, "rot180": 2, "rot270": 3}
# The views of each training flip group (``data.flips``): the group's own elements, identity first.
SYMMETRY_VIEWS = {
    "none": ("identity",),
    "h": ("identity", "hflip"),
    "hv": ("identity", "hflip", "hflip_rot180", "rot180"),
    "d4": ("identity", "hflip", "rot90", "rot180", "rot270", "hflip_rot90", "hflip_rot180", "hflip_rot270"),
}


@dataclass(frozen=True)
class ViewSpec:
    """A parsed view name: which resize, which crop, whether mirrored."""

    name: str
    kind: str  # "resize_crop" or "random"
    scale: float = 1.0  # resize shorter side to floor(S * scale / crop_pct) ...
    tight: bool = False  # ... or to floor(S / 0.75)
    crop: str = "center"  # center | tl | tr | bl | br
    flip: bool = False
    seed: int = 0  # random views only
    turns: int = 0  # quarter turns of the output, before the flip


def parse_view(name: str) -> ViewSpec:
    """``"hflip_crop_tl"`` → ``ViewSpec(kind="resize_crop", tight=True, crop="tl", flip=True)``."""
    flip = False
    base = name
    if name == "hflip":
        flip, base = True, "identity"
    elif name.startswith("hflip_"):
        flip, base = True, name[len("hflip_") :]
    spec = _parse_base(base)
    if spec is None or (flip and base.startswith("hflip")):
        raise ConfigError(f"unknown TTA view {name!r}; valid views: {VALID_NAMES_HELP}")
    return ViewSpec(
        name=name,
        kind=spec.kind,
        scale=spec.scale,
        tight=spec.tight,
        crop=spec.crop,
        flip=flip,
        seed=spec.seed,
        turns=spec.turns,
    )


def _parse_base(base: str) -> ViewSpec | None:
    if base == "identity":
        return ViewSpec(base, "resize_crop")
    if base in TURNS:
        return ViewSpec(base, "resize_crop", turns=TURNS[base])
    if base == "center_crop":
        return ViewSpec(base, "resize_crop", tight=True)
    if base in CORNERS:
        return ViewSpec(base, "resize_crop", tight=True, crop=base.removeprefix("crop_"))
    if base.startswith("scale_"):
        try:
            factor = float(base.removeprefix("scale_"))
        except ValueError:
            return None
        if not 0.0 < factor <= _MAX_SCALE:
            return None
        return ViewSpec(base, "resize_crop", scale=factor)
    if base == "random":
        return ViewSpec(base, "random")
    if base.startswith("random_") and base.removeprefix("random_").isdigit():
        return ViewSpec(base, "random", seed=int(base.removeprefix("random_")))
    return None


class ResizeCropView:
    """Resize the shorter side, normalise, crop (centre or corner), optionally mirror."""

    def __init__(
        self,
        spec: ViewSpec,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        interpolation: InterpolationMode,
        crop_pct: float,
    ):
        self.name = spec.name
        self.size = image_size
        # Same expression as timm's eval transform (floor(S / crop_pct)), so identity matches it.
        target = image_size / TIGHT_CROP_PCT if spec.tight else image_size * spec.scale / crop_pct
        self.shorter = max(1, math.floor(target))
        self.crop = spec.crop
        self.flip, self.turns = spec.flip, spec.turns
        self.mean, self.std = list(mean), list(std)
        self.interpolation = interpolation

    def __call__(self, image: Image.Image) -> torch.Tensor:
        resized = F.resize(image, self.shorter, interpolation=self.interpolation)
        # Normalise before cropping so that padding (zeros) is the mean colour.
        tensor = F.normalize(F.to_tensor(resized), self.mean, self.std)
        out = _crop(tensor, self.crop, self.size)
        if self.turns:
            out = torch.rot90(out, self.turns, dims=(-2, -1)).contiguous()
        return out.flip(-1) if self.flip else out

    def __repr__(self) -> str:
        return f"ResizeCropView({self.name!r}, shorter={self.shorter}, crop={self.crop}, turns={self.turns}, flip={self.flip})"


def _crop(tensor: torch.Tensor, where: str, size: int) -> torch.Tensor:
    if where == "center":
        return F.center_crop(tensor, [size, size])  # pads with zeros when too small
    height, width = tensor.shape[-2:]
    top = 0 if where[0] == "t" else height - size
    left = 0 if where[1] == "l" else width - size
    return tensor[:, top : top + size, left : left + size].contiguous()


class RandomView:
    """The training transform, reseeded per image so results are reproducible.

    The seed comes from the image's pixels (not its position), so the same image gets the
    same augmentation whatever the batch size or order. The global torch / random / numpy
    generators are restored afterwards; call from one thread at a time.
    """

    def __init__(self, spec: ViewSpec, transform: Callable[[Image.Image], Any], image_size: int):
        self.name = spec.name
        self.seed = spec.seed
        self.transform = transform
        self.size = image_size

    def __call__(self, image: Image.Image) -> torch.Tensor:
        seed = _content_seed(image, self.seed)
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                random.seed(seed)
                np.random.seed(seed % 2**32)
                out = self.transform(image)
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
        if out.shape != (3, self.size, self.size):
            raise ConfigError(
                f"TTA view {self.name!r}: the training transform gives {tuple(out.shape)}, expected (3, {self.size}, {self.size})"
            )
        return out

    def __repr__(self) -> str:
        return f"RandomView({self.name!r})"


def _content_seed(image: Image.Image, salt: int) -> int:
    digest = hashlib.blake2b(image.tobytes(), digest_size=8, key=f"{salt}:{image.size}".encode())
    return int.from_bytes(digest.digest(), "little") & (2**63 - 1)


def build_views(
    names: Sequence[str],
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: str | InterpolationMode = "bicubic",
    crop_pct: float = 0.875,
    train_transform: Callable[[Image.Image], Any] | None = None,
) -> list[View]:
    """One callable per name, in order; each returns a ``(3, image_size, image_size)`` tensor.

    Unknown or repeated names, and ``random`` without ``train_transform``, raise ConfigError.
    """
    if not names:
        raise ConfigError("tta.views is empty; list at least one view, e.g. [identity, hflip]")
    if not 0.0 < crop_pct <= 1.0:
        raise ConfigError(f"crop_pct must be in (0, 1], got {crop_pct}")
    seen = {n for n in names if list(names).count(n) > 1}
    if seen:
        raise ConfigError(f"tta.views lists {', '.join(sorted(seen))} more than once; each view counts once")
    interp = _interpolation(interpolation)
    specs = [parse_view(name) for name in names]
    views: list[View] = []
    for spec in specs:
        if spec.kind == "random":
            if train_transform is None:
                raise ConfigError(f"TTA view {spec.name!r} needs the training transform; none was given")
            view: View = RandomView(spec, train_transform, image_size)
            if spec.flip:
                view = _Flipped(view, spec.name)
        else:
            view = ResizeCropView(spec, image_size, mean, std, interp, crop_pct)
        views.append(view)
    return views


class _Flipped:
    def __init__(self, inner: View, name: str):
        self.inner, self.name = inner, name

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.inner(image).flip(-1)


def views_from_data_config(
    names: Sequence[str],
    data_config: dict[str, Any],
    image_size: int | None = None,
    train_transform: Callable[[Image.Image], Any] | None = None,
) -> list[View]:
    """``build_views`` from timm's ``resolve_data_config`` dict (input_size, mean, std, interpolation, crop_pct)."""
    size = image_size or int(data_config["input_size"][-1])
    return build_views(
        names,
        size,
        data_config["mean"],
        data_config["std"],
        interpolation=data_config.get("interpolation", "bicubic"),
        crop_pct=float(data_config.get("crop_pct", 0.875)),
        train_transform=train_transform,
    )


def _interpolation(value: str | InterpolationMode) -> InterpolationMode:
    if isinstance(value, InterpolationMode):
        return value
    try:
        return InterpolationMode(value)
    except ValueError:
        valid = ", ".join(m.value for m in InterpolationMode)
        raise ConfigError(f"unknown interpolation {value!r}; choose one of {valid}") from None
