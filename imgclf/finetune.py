"""Fine-tuning strategies and BatchNorm policy, as one small object the training loop calls.

Strategies (``finetune.strategy``) decide which parameters train (``requires_grad``):

- ``full``: everything from the first step.
- ``linear_probe``: the backbone is frozen; only the head trains.
- ``gradual``: the head alone for ``head_epochs`` epochs, then the backbone is unfrozen from the
  top in ``stages`` stages, one more every ``stage_epochs`` epochs; the last stage unfreezes all.
  Stage boundaries come from timm's own grouping (``backbone.group_matcher(coarse=False)``, the
  grouping timm uses for layer decay): its groups, stem first, are cut top-down into ``stages``
  chunks of (nearly) equal group count.
- ``bn_only``: the backbone's BatchNorm affine parameters and the head.

``finetune.freeze_bottom`` (a share, 0 = off) keeps the lowest groups of the same grouping frozen whatever the
strategy (fastai's ``freeze_to``): the nearest whole number of groups, at least one, never all. Autograd then
stops above them, so their backward pass (the costliest per parameter: the highest resolution) is skipped.

The BN policy (``finetune.bn``) applies to the **backbone's** BatchNorm layers only:

- ``train``: running statistics update whenever the model trains; affine parameters train when
  the strategy trains them. The policy alone decides the BN mode, so ``linear_probe`` + ``train``
  still moves the backbone's running statistics (the features drift toward the new data); use
  ``frozen_stats`` or ``frozen`` for a true linear probe.
- ``frozen_stats``: the layers stay in eval mode (``model.keep_eval``), so they normalise with the
  pretrained running statistics and never update them; affine parameters follow the strategy.
- ``frozen``: eval mode as above, and affine parameters never train.

The head is new, so its BatchNorm (``model.head=mlp_bn``) always trains, statistics included.

Freezing only toggles ``requires_grad``: :meth:`Finetuner.param_groups` always holds every
parameter, so the optimiser is built once and resume works. A frozen parameter gets no gradient
(``grad`` stays ``None``), and ``torch.optim.AdamW`` skips such parameters entirely, weight decay
included.

Example::

    finetuner = configure(model, cfg.finetune)
    optimizer = torch.optim.AdamW(finetuner.param_groups(cfg.train.lr, cfg.train.weight_decay))
    for epoch in range(start_epoch, cfg.train.epochs):
        if finetuner.on_epoch_start(epoch):  # first epoch, or the trainable set changed
            log.info(finetuner.describe(epoch))
        model.train()
        ...

Under DistributedDataParallel, parameters frozen when DDP wraps the model are never all-reduced
later, so ``gradual`` needs the wrapper rebuilt at stage changes: ``on_epoch_start`` returns True
when the trainable set changed.
"""

from __future__ import annotations

import logging
import os

import numpy as np
from timm.models import group_parameters
from torch import nn

from imgclf.config import BN_POLICIES, STRATEGIES, FinetuneConfig
from imgclf.errors import ConfigError
from imgclf.models.classifier import ImageClassifier

log = logging.getLogger(__name__)


class Finetuner:
    """Which parameters train at each epoch, and the BN policy; built by :func:`configure`."""

    def __init__(self, model: ImageClassifier, cfg: FinetuneConfig):
        self.model = model
        self.cfg = cfg
        # backbone parameter names (relative to model.backbone) per timm layer group, stem first
        self.groups = backbone_groups(model.backbone)
        self._layer_of = {name: layer for layer, names in enumerate(self.groups) for name in names}
        self._bn_params = {f"backbone.{name}" for name in _bn_param_names(model.backbone)}
        # gradual: stage k (1-based) unfreezes chunks[0 .. k-1]; chunk 0 holds the top groups
        top_down = list(range(len(self.groups)))[::-1]
        self.chunks = [list(map(int, c)) for c in np.array_split(top_down, cfg.stages)] if self.groups else []
        self._trainable: frozenset[str] | None = None  # the set after the last on_epoch_start
        # freeze_bottom: the first groups (stem first) never train, whatever the strategy
        self.frozen_groups = frozen_group_count(cfg.freeze_bottom, len(self.groups))

    def stage_at(self, epoch: int) -> int:
        """``gradual``: how many backbone stages are unfrozen at ``epoch`` (0 = head only)."""
        if epoch < self.cfg.head_epochs:
            return 0
        return min(self.cfg.stages, 1 + (epoch - self.cfg.head_epochs) // self.cfg.stage_epochs)

    def on_epoch_start(self, epoch: int) -> bool:
        """Set ``requires_grad`` for ``epoch`` (from 0) and re-apply the BN policy.

        Returns True on the first call and whenever the trainable set changed (the optimiser's
        DDP wrapper must then be rebuilt); :meth:`describe` says what trains.
        """
        trainable = self._apply(epoch)
        if trainable == self._trainable:
            return False
        self._trainable = trainable
        return True

    def trainable_parameters(self) -> int:
        """Number of parameter elements that train now."""
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """Every parameter of the model (frozen ones too), grouped for the optimiser.

        Backbone layer ``i`` of ``L`` (timm's groups, stem = 0) gets ``lr * layer_decay ** (L - i)``;
        the head gets ``head_lr`` (or ``lr``). 1-d parameters (biases, norm weights) and the
        backbone's ``no_weight_decay()`` names get no weight decay. Each group carries ``name``,
        ``lr`` (already scaled) and ``lr_scale`` (``lr`` relative to the base ``lr``: timm's
        schedulers multiply by it; ``LambdaLR`` keeps each group's own base ``lr`` anyway).

        Example::

            [g["name"] for g in finetuner.param_groups(1e-3, 0.05)][:3]
            # ['backbone.0.decay', 'backbone.0.no_decay', 'backbone.1.decay']
        """
        n_layers = len(self.groups)
        no_decay_names = _no_weight_decay(self.model.backbone)
        groups: dict[str, dict] = {}
        for name, param in self.model.named_parameters():
            if name.startswith("backbone."):
                rel = name.removeprefix("backbone.")
                layer = self._layer_of[rel]
                scale = self.cfg.layer_decay ** (n_layers - layer) if self.cfg.layer_decay else 1.0
                part, group_lr = f"backbone.{layer}", lr * scale
                no_decay = param.ndim <= 1 or rel in no_decay_names or rel.split(".")[0] in no_decay_names
            else:
                part, group_lr = "head", self.cfg.head_lr or lr
                no_decay = param.ndim <= 1
            key = f"{part}.{'no_decay' if no_decay else 'decay'}"
            if key not in groups:
                groups[key] = {
                    "name": key,
                    "params": [],
                    "lr": group_lr,
                    "lr_scale": group_lr / lr,
                    "weight_decay": 0.0 if no_decay else weight_decay,
                }
            groups[key]["params"].append(param)
        return sorted(groups.values(), key=_group_order)

    def _trainable_names(self, epoch: int) -> set[str]:
        strategy = self.cfg.strategy
        backbone = [f"backbone.{name}" for names in self.groups for name in names]
        if strategy == "full":
            names = set(backbone)
        elif strategy == "linear_probe":
            names = set()
        elif strategy == "bn_only":
            names = set(self._bn_params)
        elif strategy == "gradual":
            layers = [layer for chunk in self.chunks[: self.stage_at(epoch)] for layer in chunk]
            names = {f"backbone.{name}" for layer in layers for name in self.groups[layer]}
        else:
            raise ConfigError(f"unknown finetune.strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if self.cfg.bn == "frozen":
            names -= self._bn_params
        names -= {f"backbone.{name}" for names_ in self.groups[: self.frozen_groups] for name in names_}
        names |= {name for name, _ in self.model.head.named_parameters(prefix="head")}
        return names

    def _apply(self, epoch: int) -> frozenset[str]:
        trainable = self._trainable_names(epoch)
        for name, param in self.model.named_parameters():
            param.requires_grad_(name in trainable)
            if name not in trainable:
                param.grad = None  # a stale gradient must not reach the optimiser or the clip norm
        # Collected again each time: SyncBatchNorm conversion replaces the BN modules.
        frozen_mode = self.cfg.bn in ("frozen_stats", "frozen")
        self.model.keep_eval = tuple(_bn_modules(self.model.backbone)) if frozen_mode else ()
        if self.model.training:
            self.model.train()  # puts keep_eval modules back in eval mode now, not at the next train()
        return frozenset(trainable)

    def describe(self, epoch: int) -> str:
        """One line: what trains at ``epoch`` (from 0), how many parameters, the BN policy."""
        strategy = self.cfg.strategy
        if strategy == "gradual":
            stage = self.stage_at(epoch)
            if stage == 0:
                what = f"gradual: head only until epoch {self.cfg.head_epochs}"
            else:
                chunk = self.chunks[stage - 1]
                low, high = _group_label(self.groups[min(chunk)]), _group_label(self.groups[max(chunk)])
                span = low if low == high else f"{low}-{high}"
                what = f"gradual: unfroze stage {stage}/{self.cfg.stages} ({span})"
        else:
            what = {
                "full": "full: backbone and head train",
                "linear_probe": "linear_probe: backbone frozen, head trains",
                "bn_only": "bn_only: backbone BatchNorm affine parameters and head train",
            }[strategy]
        if self.frozen_groups:
            what += (
                f"; the lowest {self.frozen_groups} of {len(self.groups)} layer groups stay frozen "
                f"(up to {_group_label(self.groups[self.frozen_groups - 1])})"
            )
        total = sum(p.numel() for p in self.model.parameters())
        return f"{what}; {self.trainable_parameters():,} of {total:,} parameters trainable, bn={self.cfg.bn}"


def configure(model: ImageClassifier, cfg: FinetuneConfig) -> Finetuner:
    """Validate ``cfg`` against ``model``, then apply epoch 0's trainable set and the BN policy.

    Example (``test_efficientnet`` with a linear head, 10 classes)::

        finetuner = configure(model, FinetuneConfig(strategy="gradual", bn="frozen_stats", stages=3))
        finetuner.on_epoch_start(0)
        # 'gradual: head only until epoch 1; 2,570 of 101,766 parameters trainable, bn=frozen_stats'
    """
    check_fits(cfg, model)
    finetuner = Finetuner(model, cfg)
    finetuner._apply(0)
    return finetuner


def check_fits(cfg: FinetuneConfig, model: ImageClassifier) -> None:
    """Raise ConfigError for a strategy / BN policy the model cannot honour."""
    if not isinstance(model, ImageClassifier):
        raise TypeError(f"expected an ImageClassifier, got {type(model).__name__}")
    if cfg.strategy not in STRATEGIES:
        raise ConfigError(f"unknown finetune.strategy {cfg.strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if cfg.bn not in BN_POLICIES:
        raise ConfigError(f"unknown finetune.bn {cfg.bn!r}; choose one of {', '.join(BN_POLICIES)}")
    arch = _arch(model.backbone)
    has_bn = bool(_bn_param_names(model.backbone))
    if cfg.strategy == "bn_only" and cfg.bn == "frozen":
        raise ConfigError(
            "finetune.strategy=bn_only trains only the backbone's BatchNorm affine parameters, which "
            "finetune.bn=frozen freezes; use finetune.bn=train or frozen_stats, or finetune.strategy=linear_probe"
        )
    if cfg.strategy == "bn_only" and not has_bn:
        raise ConfigError(
            f"finetune.strategy=bn_only needs BatchNorm layers with affine parameters in the backbone, "
            f"and {arch} has none; choose another finetune.strategy"
        )
    if cfg.strategy == "gradual":
        n_groups = len(backbone_groups(model.backbone))
        if cfg.stages > n_groups:
            raise ConfigError(
                f"finetune.stages={cfg.stages} but backbone {arch} has only {n_groups} layer groups; "
                f"use finetune.stages <= {n_groups}"
            )
    if cfg.bn != "train" and not any(True for _ in _bn_modules(model.backbone)):
        log.warning("finetune.bn=%s has no effect: backbone %s has no BatchNorm layers", cfg.bn, arch)


def frozen_group_count(share: float, n_groups: int) -> int:
    """How many of ``n_groups`` layer groups ``finetune.freeze_bottom=share`` freezes: the nearest
    whole number, at least one when ``share`` is above 0, and never all of them.

    >>> frozen_group_count(0.35, 17), frozen_group_count(0.01, 17), frozen_group_count(0.0, 17)
    (6, 1, 0)
    """
    if share <= 0 or n_groups == 0:
        return 0
    return min(n_groups - 1, max(1, round(share * n_groups)))


def backbone_groups(backbone: nn.Module) -> list[list[str]]:
    """Parameter names of ``backbone`` per layer group, stem first, from timm's ``group_matcher``.

    A module without ``group_matcher`` falls back to one group per top-level child, in order.

    Example::

        backbone_groups(timm.create_model("test_efficientnet", num_classes=0))[0]
        # ['conv_stem.weight', 'bn1.weight', 'bn1.bias']
    """
    matcher = getattr(backbone, "group_matcher", None)
    if matcher is not None:
        try:
            by_layer = group_parameters(backbone, matcher(coarse=False))
        except NotImplementedError:
            by_layer = None
        if by_layer:
            return [list(by_layer[layer]) for layer in sorted(by_layer)]
    by_child: dict[str, list[str]] = {}
    for name, _ in backbone.named_parameters():
        by_child.setdefault(name.split(".")[0], []).append(name)
    return list(by_child.values())


def _bn_modules(module: nn.Module):
    return (m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


def _bn_param_names(module: nn.Module) -> list[str]:
    return [
        f"{prefix}.{name}"
        for prefix, m in module.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        for name, _ in m.named_parameters(recurse=False)
    ]


def _no_weight_decay(backbone: nn.Module) -> set[str]:
    fn = getattr(backbone, "no_weight_decay", None)
    return set(fn()) if callable(fn) else set()


def _group_order(group: dict) -> tuple:
    part, _, decay = group["name"].rpartition(".")
    layer = int(part.split(".")[1]) if part.startswith("backbone.") else 10**9
    return (layer, decay != "decay")


def _group_label(names: list[str]) -> str:
    """A short name for a layer group: the common module path within its first top-level module.

    >>> _group_label(["blocks.4.0.conv.weight", "blocks.4.0.bn1.bias", "conv_head.weight"])
    'blocks.4.0'
    """
    top = names[0].split(".")[0]
    paths = [n.split(".")[:-1] for n in names if n.split(".")[0] == top]
    return ".".join(os.path.commonprefix(paths)) or top


def _arch(backbone: nn.Module) -> str:
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    return cfg.get("architecture") or type(backbone).__name__
