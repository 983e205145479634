"""The ``--tta*`` options shared by ``imgclf evaluate`` and ``imgclf predict``; their values become a TTAConfig in
:func:`imgclf.infer.tta_config.tta_from_options`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from imgclf.errors import ConfigError

if TYPE_CHECKING:
    from imgclf.config import TTAConfig

TTA_OPTION: Any = typer.Option(
    None,
    "--tta",
    help="Test-time augmentation: none, N (the first N views on every image) or adaptive (more views only for "
    "uncertain images). Default: the run's config (tta.mode, none unless set).",
)
THRESHOLD_OPTION: Any = typer.Option(
    None, "--tta-threshold", help="adaptive: margin below (or entropy above) this is uncertain (tta.threshold)."
)
MAX_VIEWS_OPTION: Any = typer.Option(
    None, "--tta-max-views", help="adaptive: most views one image may get (tta.max_views)."
)
BUDGET_OPTION: Any = typer.Option(None, "--tta-budget", help="adaptive: cap on total forward passes (tta.budget).")
VIEWS_OPTION: Any = typer.Option(
    None, "--tta-views", help="Comma-separated ordered views, e.g. identity,hflip,center_crop,scale_1.15 (tta.views)."
)


def passes_text(
    forward_passes: int, images: int, histogram: dict[str, int], models: int = 1, adaptive: bool = False
) -> str:
    """``forward passes 2460 (2.46/image; views per image: 2×900, 3×40, 10×60)``.

    ``histogram`` counts each image's passes over all ``models`` of a blend. Without adaptive TTA every model
    sees the same views, so the line shows views per image per model; with it, models may differ per image,
    so it shows the passes of all models together and says so.
    """
    per_image = forward_passes / images if images else 0.0
    if models <= 1:
        hist = ", ".join(f"{k}×{v}" for k, v in histogram.items())
        return f"forward passes {forward_passes} ({per_image:.2f}/image; views per image: {hist or '-'})"
    if not adaptive and all(int(k) % models == 0 for k in histogram):
        hist = ", ".join(f"{int(k) // models}×{v}" for k, v in histogram.items())
        return f"forward passes {forward_passes} over {models} models ({per_image:.2f}/image; views per image per model: {hist or '-'})"
    hist = ", ".join(f"{k}×{v}" for k, v in histogram.items())
    return (
        f"forward passes {forward_passes} over {models} models ({per_image:.2f}/image; "
        f"passes per image, all {models} models together: {hist or '-'})"
    )


def tta_text(cfg: Optional[TTAConfig]) -> str:
    if cfg is None or cfg.mode == "none":
        return "no TTA"
    if cfg.mode == "fixed":
        return f"TTA: {cfg.n} fixed views"
    budget = f", budget {cfg.budget}" if cfg.budget else ""
    return f"TTA: adaptive ({cfg.uncertainty} threshold {cfg.threshold:g}, {cfg.first_views}..{cfg.max_views} views{budget})"


COMPARE_OPTION: Any = typer.Option(
    False,
    "--tta-compare",
    help="Instead of one evaluation, compare no TTA, fixed N views (--tta-ns), adaptive, and adaptive with a threshold "
    "chosen on held-out halves: accuracy, forward passes, wall time → RUN_DIR/eval/tta_compare.{csv,md}.",
)
NS_OPTION: Any = typer.Option(
    "2,4,10", "--tta-ns", help="--tta-compare: the fixed numbers of views to show, comma-separated."
)
MEASURE_OPTION: Any = typer.Option(
    False,
    "--tta-measure",
    help="--tta-compare: run every row with the model to measure its wall time (default: estimate "
    "it from per-view timings, computing each view once).",
)


def parse_ns(text: str) -> list[int]:
    try:
        ns = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"--tta-ns must be comma-separated numbers of views, e.g. 2,4,10 (got {text!r})") from None
    if not ns or min(ns) < 1:
        raise ConfigError(f"--tta-ns must list numbers of views of at least 1, e.g. 2,4,10 (got {text!r})")
    return ns


def print_tta_compare(
    run_dir: Path,
    dataset: Optional[Path],
    out: Optional[Path],
    cfg: TTAConfig,
    ns_text: str,
    batch_size: int,
    device: str,
    measure: bool,
) -> None:
    """``evaluate --tta-compare``: run the comparison, print it as a table, say where it was written."""
    from rich.table import Table

    from imgclf.terminal import console
    from imgclf.infer.tta_compare import compare_run, formatted

    report = compare_run(
        run_dir, dataset, out, tta=cfg, ns=parse_ns(ns_text), batch_size=batch_size, device=device, measure=measure
    )
    result = report["result"]
    cells = [formatted(r) for r in result.rows]
    table = Table(
        title=f"TTA comparison: {run_dir} on {report['evaluated_on']}", caption=result.caption, caption_justify="left"
    )
    for head in cells[0]:
        table.add_column(head, justify="left" if head in ("setting", "threshold", "views per image") else "right")
    for row in cells:
        table.add_row(*row.values())
    console.print(table)
    if report["skipped_images"]:
        console.print(
            f"skipped {len(report['skipped_images'])} unreadable image(s), e.g. {report['skipped_images'][0]}"
        )
    console.print(f"written to {report['csv']} and {report['md']}")
