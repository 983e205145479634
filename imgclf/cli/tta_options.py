"""The ``--tta*`` options shared by ``imgclf evaluate`` and ``imgclf predict``, and their adapter to TTAConfig.

The options start from the run's own ``tta`` config section (saved in ``config.yaml``) and
override it; the result is validated like any config (bad values → one-line ConfigError).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from imgclf.errors import ConfigError
from imgclf.run.rundir import RunDir

if TYPE_CHECKING:
    from imgclf.config import Config, TTAConfig

TTA_OPTION: Any = typer.Option(
    None, "--tta",
    help="Test-time augmentation: none, N (the first N views on every image) or adaptive (more views only for "
         "uncertain images). Default: the run's config (tta.mode, none unless set).")
THRESHOLD_OPTION: Any = typer.Option(None, "--tta-threshold", help="adaptive: margin below (or entropy above) this is uncertain (tta.threshold).")
MAX_VIEWS_OPTION: Any = typer.Option(None, "--tta-max-views", help="adaptive: most views one image may get (tta.max_views).")
BUDGET_OPTION: Any = typer.Option(None, "--tta-budget", help="adaptive: cap on total forward passes (tta.budget).")
VIEWS_OPTION: Any = typer.Option(None, "--tta-views", help="Comma-separated ordered views, e.g. identity,hflip,center_crop,scale_1.15 (tta.views).")


def run_config(run_dir: Path) -> Config:
    """The run's saved config (defaults when it has none: loading the run reports that later).

    For a CV or ensemble folder: the config of its first member run.
    """
    from imgclf.config import Config, build_config, read_yaml  # pydantic: not on the path of --help

    path = RunDir(Path(run_dir)).config
    if not path.is_file() and Path(run_dir).is_dir():
        from imgclf.errors import RunDirError
        from imgclf.infer.model_set import resolve_model_set

        try:
            path = RunDir(resolve_model_set(Path(run_dir)).members[0][0]).config
        except RunDirError:
            pass  # not a model set either: loading it reports the problem
    return build_config(read_yaml(path)) if path.is_file() else Config()


def parse_tta(value: str | None) -> dict[str, Any]:
    """``"none"`` / ``"adaptive"`` / ``"4"`` → config overrides (``{}`` for None)."""
    if value is None:
        return {}
    text = value.strip().lower()
    if text in ("none", "adaptive"):
        return {"tta.mode": text}
    if text.isdigit() and int(text) >= 1:
        return {"tta.mode": "fixed", "tta.n": int(text)}
    raise ConfigError(f"--tta must be none, adaptive or a number of views (1, 2, ...), got {value!r}")


def tta_from_options(run_dir: Path, tta: str | None = None, threshold: float | None = None,
                     max_views: int | None = None, budget: int | None = None, views: str | None = None) -> TTAConfig:
    """The TTAConfig the options ask for, on top of the run's ``tta`` config section."""
    from imgclf.config import with_overrides

    values = parse_tta(tta)
    adaptive_only = {"tta.threshold": threshold, "tta.max_views": max_views, "tta.budget": budget}
    values.update({k: v for k, v in adaptive_only.items() if v is not None})
    if views is not None:
        from imgclf.infer.views import parse_view  # torchvision: imported only when used

        names = [n.strip() for n in views.split(",") if n.strip()]
        for name in names:
            parse_view(name)  # unknown names fail here, with the list of valid ones
        values["tta.views"] = names
    cfg = with_overrides(run_config(run_dir), values).tta
    given = [flag for flag, v in (("--tta-threshold", threshold), ("--tta-max-views", max_views), ("--tta-budget", budget))
             if v is not None]
    if given and cfg.mode != "adaptive":
        raise ConfigError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only to adaptive TTA; add --tta adaptive")
    if cfg.mode == "fixed" and cfg.n > len(cfg.views):
        raise ConfigError(f"--tta {cfg.n} asks for more views than the {len(cfg.views)} listed ({', '.join(cfg.views)})")
    return cfg


def passes_text(forward_passes: int, images: int, histogram: dict[str, int], models: int = 1, adaptive: bool = False) -> str:
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
    return (f"forward passes {forward_passes} over {models} models ({per_image:.2f}/image; "
            f"passes per image, all {models} models together: {hist or '-'})")


def tta_text(cfg: Optional[TTAConfig]) -> str:
    if cfg is None or cfg.mode == "none":
        return "no TTA"
    if cfg.mode == "fixed":
        return f"TTA: {cfg.n} fixed views"
    budget = f", budget {cfg.budget}" if cfg.budget else ""
    return f"TTA: adaptive ({cfg.uncertainty} threshold {cfg.threshold:g}, {cfg.first_views}..{cfg.max_views} views{budget})"


COMPARE_OPTION: Any = typer.Option(
    False, "--tta-compare",
    help="Instead of one evaluation, compare no TTA, fixed N views (--tta-ns), adaptive, and adaptive with a threshold "
         "chosen on held-out halves: accuracy, forward passes, wall time → RUN_DIR/eval/tta_compare.{csv,md}.")
NS_OPTION: Any = typer.Option("2,4,10", "--tta-ns", help="--tta-compare: the fixed numbers of views to show, comma-separated.")
MEASURE_OPTION: Any = typer.Option(
    False, "--tta-measure", help="--tta-compare: run every row with the model to measure its wall time (default: estimate "
                                 "it from per-view timings, computing each view once).")


def parse_ns(text: str) -> list[int]:
    try:
        ns = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"--tta-ns must be comma-separated numbers of views, e.g. 2,4,10 (got {text!r})") from None
    if not ns or min(ns) < 1:
        raise ConfigError(f"--tta-ns must list numbers of views of at least 1, e.g. 2,4,10 (got {text!r})")
    return ns


def print_tta_compare(run_dir: Path, dataset: Optional[Path], out: Optional[Path], cfg: TTAConfig, ns_text: str,
                      batch_size: int, device: str, measure: bool) -> None:
    """``evaluate --tta-compare``: run the comparison, print it as a table, say where it was written."""
    from rich.table import Table

    from imgclf.cli.console import console
    from imgclf.infer.tta_compare import compare_run, formatted

    report = compare_run(run_dir, dataset, out, tta=cfg, ns=parse_ns(ns_text), batch_size=batch_size, device=device,
                         measure=measure)
    result = report["result"]
    cells = [formatted(r) for r in result.rows]
    table = Table(title=f"TTA comparison: {run_dir} on {report['evaluated_on']}", caption=result.caption, caption_justify="left")
    for head in cells[0]:
        table.add_column(head, justify="left" if head in ("setting", "threshold", "views per image") else "right")
    for row in cells:
        table.add_row(*row.values())
    console.print(table)
    if report["skipped_images"]:
        console.print(f"skipped {len(report['skipped_images'])} unreadable image(s), e.g. {report['skipped_images'][0]}")
    console.print(f"written to {report['csv']} and {report['md']}")
