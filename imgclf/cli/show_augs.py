"""``imgclf show-augs DATASET``: draw a few images per class as training will see them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import typer

from imgclf.cli.commands import CONFIG_HELP, SET_HELP, build_cli_config
from imgclf.terminal import console
from imgclf.config import Config
from imgclf.errors import DataError


def show_augs_command(
    dataset: Path = typer.Argument(..., help="Dataset folder (train/<class>/images) or a CSV of path,label."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    set_: list[str] = typer.Option([], "--set", "-s", help=SET_HELP),
    n: int = typer.Option(8, "--n", help="Augmented versions per image."),
    per_class: int = typer.Option(1, "--per-class", help="Images per class."),
    max_classes: int = typer.Option(
        12, "--max-classes", min=1, help="Show at most this many classes (a random, reproducible choice)."
    ),
    seed: int = typer.Option(0, help="Seed of the image choice and the augmentations."),
    out: Path = typer.Option(Path("augs.png"), "--out", "-o", help="PNG to write."),
    budget: bool = typer.Option(
        False,
        "--budget",
        help="Preview what `train --budget` trains with: the recipe's short-run prior on every key the config leaves alone (its flips may still change: the orientation probe decides them).",
    ),
) -> None:
    """Original, eval view and N training augmentations of a few images per class, as one PNG.

    The training pipeline itself (resize cache, the backbone's preprocessing,
    data.augment and its override keys), de-normalised for display; no weights.
    The original is outlined in red where the eval centre crop cuts it.

    Presets (data.augment), as the training transform applies them:
      auto:   medium for one class per image; for label sets and values
              none with flips h and eval crop 1.0 (the whole image)
      none:   no random crop, flips none, no colour jitter
      light:  crop scale 0.6-1, ratio 0.75-1.33, flips h, no colour jitter
      medium: crop scale 0.35-1, ratio 0.75-1.33, flips h, colour jitter 0.3
      strong: crop scale 0.25-1, ratio 0.75-1.33, flips h, no colour jitter,
              RandAugment m9, random erasing 0.25

    Override one part with --set (None = the preset's):
      data.crop_scale=[0.8,1]   data.crop_ratio=[0.9,1.1]   data.color_jitter=0.2
      data.flips=none|h|hv|d4   (d4: flips and quarter turns, for no "up")
      data.eval_crop_pct=1.0    (eval keeps the border; model default 0.875)
    """
    if not dataset.exists():
        raise DataError(f"dataset not found: {dataset}")
    base = build_cli_config(config, set_)  # a config error answers before torch is imported
    from imgclf.data.transforms import AugmentSpec
    from imgclf.report.augs import backbone_preprocessing, write_aug_preview
    from imgclf.run.claim import check_file_out

    check_file_out(out, "--out", (".png", ".jpg", ".jpeg", ".svg", ".pdf"))  # an earlier preview, never another file
    cfg, changes = preview_config(base, budget)
    from imgclf.training.task_setup import dataset_task, resolve_augment

    cfg = resolve_augment(cfg, dataset_task(cfg, dataset))  # what train makes of data.augment=auto for this data
    t0 = time.perf_counter()
    pre = backbone_preprocessing(cfg)
    path, shown = write_aug_preview(dataset, cfg, out, n=n, per_class=per_class, max_classes=max_classes, seed=seed)
    console.print(
        f"wrote {path}: {shown} image(s) × (original, eval view, {n} augmentations); "
        f"augment {AugmentSpec.from_config(cfg.data).describe()}; eval crop {pre.crop_pct:g} of {pre.resize_short_side} px; "
        f"backbone {cfg.model.backbone} ({time.perf_counter() - t0:.1f}s)",
        highlight=False,
        soft_wrap=True,
    )
    if budget:
        console.print(
            f"as `train --budget` trains it: the recipe set {_settings(changes) or 'nothing (the config names every key)'}; "
            "data.flips may still change (the orientation probe decides them)",
            highlight=False,
            soft_wrap=True,
        )
    elif changes:
        console.print(
            f"note: `train --budget` would train with {_settings(changes)} instead (the recipe's prior for the "
            "keys this config leaves alone); `imgclf show-augs --budget` previews that",
            highlight=False,
            soft_wrap=True,
        )


def preview_config(cfg: Config, budget: bool) -> tuple[Config, dict[str, Any]]:
    """The config to draw, and the recipe's prior changes: applied with ``budget``, only reported without it."""
    from imgclf.budget.prior import with_prior

    prior, changes = with_prior(cfg)
    return (prior if budget else cfg), changes


def _settings(changes: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in changes.items())
