"""Where ``--budget`` starts: the short-run prior on the keys the user left alone, progressive resizing, and the
flip TTA that matches the trained flip group."""

from __future__ import annotations

import logging
from typing import Any

from imgclf.budget.plan import CostModel, Start
from imgclf.config import Config, with_overrides

log = logging.getLogger("imgclf")

# Where the recipe starts for the keys the user left at their defaults. A fine-tune of a few epochs from pretrained weights needs no heavy
# regularisation: on the whole image, mirrored left-right, it beat the medium preset (random resized crops from 35 %
# of the area, colour jitter, eval crop 0.875) by 3.6 pp on the demo data and 5.6 pp on the no-up data (64 px,
# 5 epochs, every image; BENCHMARKS.md "The recipe's starting point").
# The prior froze the lowest third of the backbone's layer groups too (finetune.freeze_bottom=0.35: a cheaper step,
# so a larger size or more epochs) until its evidence was weighed: never beyond noise for classes (+1.7 ± 2.2 pp at
# 10 minutes on the small-object data, -0.4 pp at equal epochs on the demo data), and at equal epochs on the
# greyscale mosaics -0.022 ± 0.002 F2 (multilabel) and +0.19 ± 0.02 RMSE (regression): low-level ImageNet filters
# kept fixed do not fit data far from ImageNet. Freezing is the user's switch now (BENCHMARKS.md "Freezing the
# lowest layers under a budget" and "Multi-label and regression targets").
SHORT_RUN_PRIOR: dict[str, Any] = {
    "data.augment": "none",
    "data.flips": "h",
    "data.eval_crop_pct": 1.0,
}


def left_to_recipe(cfg: Config, key: str) -> bool:
    """Whether the user left ``key`` alone: at its default and not named in the YAML or a ``--set`` (pydantic's
    ``model_fields_set``; a config rebuilt by ``with_overrides`` counts every key as named)."""
    section, name = key.split(".", 1)
    return cfg.flat()[key] == Config().flat()[key] and name not in getattr(cfg, section).model_fields_set


def with_prior(cfg: Config) -> tuple[Config, dict[str, Any]]:
    """``cfg`` with :data:`SHORT_RUN_PRIOR` on the keys the user left alone, and those changes."""
    changes = {k: v for k, v in SHORT_RUN_PRIOR.items() if left_to_recipe(cfg, k)}
    return (with_overrides(cfg, changes) if changes else cfg), changes


def growth(cfg: Config) -> Start | None:
    """Progressive resizing as the plan counts it (final size -> first size): the user's ``data.start_size`` when set,
    else None (off, the default of every run). The recipe turned it on by itself until the ablation showed it did not
    pay: switching it off bought +2.1 ± 0.7 pp on the thin-defect set and +1.4 ± 0.6 on the small-object set, -0.5 ±
    0.3 on the demo data (BENCHMARKS.md "Does each part of the budget recipe pay?")."""
    own = cfg.data.start_size
    return (lambda size: own if own < size else None) if own else None


def with_growth(cfg: Config, start: Start | None, cost: CostModel | None = None) -> Config:
    """The final config with the ``data.start_size`` the plan counted on (0 when ``start`` gives none at its size),
    and the warm-up's ``cost`` as ``train.time_cost``, by which the clock times the larger epochs to come."""
    if start is None:
        return cfg
    first = start(int(cfg.data.image_size)) or 0
    timed = {"train.time_cost": [cost.a, cost.b]} if first and cost is not None and cost.b > 0 else {}
    return with_overrides(cfg, {"data.start_size": first, **timed})


def with_flip_tta(cfg: Config) -> Config:
    """The final model predicts on each image under every flip and turn it was trained with (``tta.mode=fixed`` on
    the views of ``data.flips``' group, :data:`~imgclf.infer.views.SYMMETRY_VIEWS`: h → identity and mirror,
    hv → 4 views, d4 → 8) when the user left TTA alone: the views it was trained to be indifferent to (mirror TTA:
    +0.5 pp on the demo data, BENCHMARKS.md "Test-time augmentation")."""
    from imgclf.config import TTAConfig
    from imgclf.data.transforms import AugmentSpec
    from imgclf.infer.views import SYMMETRY_VIEWS

    flips = AugmentSpec.from_config(cfg.data).resolved()["flips"]
    if flips == "none" or cfg.tta.mode != "none" or cfg.tta.views != TTAConfig().views:
        return cfg
    group = list(SYMMETRY_VIEWS[flips])
    views = group + [view for view in cfg.tta.views if view not in group]
    return with_overrides(cfg, {"tta.mode": "fixed", "tta.n": len(group), "tta.views": views})
