"""Check a training job completely before any work starts: one line per problem, nothing written.

A typo must cost seconds, not a night of training. :func:`validate_for_training` collects every
problem it can find without training — the dataset and the files the config names, the schedule,
the device, and whether the backbone can honour the config (fine-tuning strategy, BatchNorm
policy, image size) — and raises one :class:`~imgclf.errors.ConfigError` listing them, one per line.

The backbone is built on PyTorch's ``meta`` device: shapes without memory or compute, so even a
large architecture is checked in a fraction of a second, and a forward pass on a meta tensor
reveals an image size the architecture cannot take.

Example::

    validate_for_training(cfg, Path("data/cars"))   # raises ConfigError("...\\n...") or returns None
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from imgclf.config import EMBEDDED_WEIGHTS, Config
from imgclf.errors import ConfigError, ImgclfError
from imgclf.runtime import resolve_device

log = logging.getLogger("imgclf")


def validate_for_training(cfg: Config, dataset: Path | None) -> None:
    """Raise ConfigError naming every problem of ``cfg`` + ``dataset``, one per line."""
    problems = training_problems(cfg, dataset)
    if problems:
        raise ConfigError("\n".join(problems))


def training_problems(cfg: Config, dataset: Path | None) -> list[str]:
    """Every problem found, as one-line messages (empty when the job can start)."""
    return [
        *dataset_problems(dataset),
        *file_problems(cfg),
        *device_problems(cfg),
        *model_problems(cfg),
    ]


def dataset_problems(dataset: Path | None) -> list[str]:
    if dataset is None:
        return [
            "missing DATASET: a folder with train/<class>/<images> (or prepared by imgclf prepare), or a CSV of path,label"
        ]
    dataset = Path(dataset)
    if not dataset.exists():
        return [f"dataset not found: {dataset}"]
    if dataset.is_file() and dataset.suffix.lower() != ".csv":
        return [f"dataset {dataset} is a file but not a CSV of path,label"]
    if dataset.is_dir() and not (dataset / "train").is_dir() and not (dataset / "manifest.csv").is_file():
        return [
            f"{dataset} has no train/ folder and no manifest.csv: a dataset is train/<class>/<images>, or run imgclf prepare on it"
        ]
    return []


def file_problems(cfg: Config) -> list[str]:
    """Files the config names must exist now, not when training reaches them."""
    from imgclf.data.balance import is_weight_file, read_class_weight_file
    from imgclf.models.hub import is_snapshot_folder, weights_problem
    from imgclf.models.weights import WEIGHT_FILE_SUFFIXES

    problems = []
    for key, value in (("data.blocklist", cfg.data.blocklist), ("data.split_file", cfg.data.split_file)):
        if value and not Path(value).is_file():
            problems.append(f"{key}: file not found: {value}")
    if is_weight_file(cfg.train.class_weights):
        try:
            read_class_weight_file(cfg.train.class_weights)  # the class names are checked against the dataset at set-up
        except ImgclfError as exc:
            problems.append(str(exc))
    weights = cfg.model.weights
    if weights == "hub" or is_snapshot_folder(weights):  # hub: cached, or reachable within a second
        problem = weights_problem(weights, cfg.model.backbone)
        problems += [problem] if problem else []
    elif weights.lower().endswith(WEIGHT_FILE_SUFFIXES):
        if not Path(weights).is_file():
            problems.append(f"model.weights: weights file not found: {weights}")
    elif weights not in ("hub", "none") and weights not in EMBEDDED_WEIGHTS:
        problems.append(
            f"model.weights: unknown weights {weights!r}; use {'|'.join(EMBEDDED_WEIGHTS)}, "
            f"a {'/'.join(WEIGHT_FILE_SUFFIXES)} file, a snapshot folder, hub or none"
        )
    return problems


def device_problems(cfg: Config) -> list[str]:
    try:
        resolve_device(cfg.train.device, "train.device")
    except ConfigError as exc:
        return [str(exc)]
    return []


def model_problems(cfg: Config) -> list[str]:
    """Build the backbone on the meta device and check the config against it."""
    from imgclf.finetune import check_fits
    from imgclf.models.backbones import architecture, check_arch
    from imgclf.models.classifier import ImageClassifier
    from imgclf.models.heads import build_head

    arch = cfg.model.backbone
    try:
        check_arch(arch)
    except ImgclfError as exc:
        return [str(exc)]
    try:
        with torch.device("meta"):
            backbone = architecture(arch, cfg.model.drop_path)
            head = build_head(cfg.model.head, backbone.num_features, 2, cfg.model.head_hidden, cfg.model.dropout)
    except TypeError as exc:
        if cfg.model.drop_path > 0 and "drop_path_rate" in str(exc):
            return [f"model.drop_path: backbone {arch} has no stochastic depth; set model.drop_path=0"]
        log.debug("preflight could not build %s on the meta device: %s", arch, exc)
        return []
    except Exception as exc:  # a model whose construction needs real tensors: training will tell
        log.debug("preflight could not build %s on the meta device: %s", arch, exc)
        return []
    problems = []
    try:
        with _quiet("imgclf.finetune"):  # its warnings are shown once, when training configures the model
            check_fits(cfg.finetune, ImageClassifier(backbone, head))
    except ConfigError as exc:
        problems.append(str(exc))
    problems += image_size_problems(arch, backbone, cfg.data.image_size)
    return problems


def image_size_problems(arch: str, backbone: torch.nn.Module, image_size: int | None) -> list[str]:
    """Sizes a backbone cannot take.

    Rules: a model with a fixed input size (ViT-style position embeddings, ``fixed_input_size`` in
    timm's pretrained config) takes only its own size; any other model needs images at least as
    large as its total stride (below it the last stage sees padding, not the picture); and a forward
    pass on a meta tensor of that size must go through.
    """
    pretrained = getattr(backbone, "pretrained_cfg", None) or {}
    native = int(pretrained.get("input_size", (3, 224, 224))[-1])
    size = image_size or native
    if pretrained.get("fixed_input_size") and size != native:
        return [
            f"data.image_size={size}: backbone {arch} takes only {native}x{native} images; set data.image_size={native} or drop it"
        ]
    stride = _total_stride(backbone)
    if stride and size < stride:
        return [
            f"data.image_size={size} is below the total stride ({stride}) of backbone {arch}: its last stage "
            f"would see less than one pixel; use data.image_size >= {stride}"
        ]
    try:
        backbone.eval()(torch.empty(2, 3, size, size, device="meta"))
    except NotImplementedError:
        pass  # an operator without a meta kernel: nothing learned, nothing wrong
    except (RuntimeError, ValueError, AssertionError) as exc:
        if "meta" in str(exc).lower():
            return []  # the model does something meta tensors cannot (e.g. .item()): inconclusive
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        return [f"data.image_size={size}: backbone {arch} cannot take {size}x{size} images ({reason})"]
    return []


def _total_stride(backbone: torch.nn.Module) -> int | None:
    info = getattr(backbone, "feature_info", None)
    try:
        return int(info[-1]["reduction"]) if info else None
    except (TypeError, KeyError, IndexError, ValueError):
        return None


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)

    def drop_all(record: logging.LogRecord) -> bool:
        return False

    logger.addFilter(drop_all)
    try:
        yield
    finally:
        logger.removeFilter(drop_all)
