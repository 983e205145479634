"""``imgclf show-augs DATASET``: draw a few images per class as training will see them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from imgclf.cli.commands import CONFIG_HELP, SET_HELP, build_cli_config
from imgclf.cli.console import console
from imgclf.errors import DataError


def show_augs_command(
    dataset: Path = typer.Argument(..., help="Dataset folder (train/<class>/images) or a CSV of path,label."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    set_: list[str] = typer.Option([], "--set", "-s", help=SET_HELP),
    n: int = typer.Option(8, "--n", help="Augmented versions per image."),
    per_class: int = typer.Option(1, "--per-class", help="Images per class."),
    max_classes: int = typer.Option(12, "--max-classes", help="Show at most this many classes (a random, reproducible choice)."),
    seed: int = typer.Option(0, help="Seed of the image choice and the augmentations."),
    out: Path = typer.Option(Path("augs.png"), "--out", "-o", help="PNG to write."),
) -> None:
    """Original, validation view and N training augmentations of a few images per class, as one PNG.

    Uses the training pipeline itself (resize cache, the backbone's preprocessing, data.augment),
    de-normalised for display. Needs no weights and runs in seconds: look before you train.
    """
    from imgclf.report.augs import write_aug_preview

    if not dataset.exists():
        raise DataError(f"dataset not found: {dataset}")
    cfg = build_cli_config(config, set_)
    t0 = time.perf_counter()
    path, shown = write_aug_preview(dataset, cfg, out, n=n, per_class=per_class, max_classes=max_classes, seed=seed)
    console.print(
        f"wrote {path}: {shown} image(s) × (original, validation, {n} augmentations), "
        f"augment={cfg.data.augment}, backbone {cfg.model.backbone} ({time.perf_counter() - t0:.1f}s)",
        highlight=False, soft_wrap=True,
    )
