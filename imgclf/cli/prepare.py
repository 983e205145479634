"""``imgclf prepare SRC --out DATASET_DIR``: parse options, call :func:`imgclf.data.prepare.prepare`, print a summary."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import ValidationError
from imgclf.cli.console import console
from rich.table import Table

from imgclf.data.clean import FLAGS, CleanOptions, parse_policy
from imgclf.data.prepare import PrepareOptions, PrepareResult, prepare
from imgclf.errors import ConfigError

_POLICY_HELP = "Per-flag policy FLAG=drop|keep|keep_one (repeatable), e.g. --policy tiny=keep. Flags: " + ", ".join(FLAGS) + "."


def prepare_command(
    src: Path = typer.Argument(..., help="A competition download (folder with train.zip/test.zip/sample_submission.csv, any nesting), a .zip, a folder of class folders, or a CSV of path,label."),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset folder to create: train/<class>/, test/, manifest.csv, blocklist.proposed.csv, cleaning_report.{md,html}."),
    policy: list[str] = typer.Option([], "--policy", help=_POLICY_HELP),
    min_side: int = typer.Option(32, help="Flag images whose shorter side is below this many pixels as 'tiny'."),
    max_aspect: float = typer.Option(5.0, help="Flag images whose long/short side ratio exceeds this as 'extreme_aspect'."),
    near_dup_threshold: int = typer.Option(6, help="Max Hamming distance between 64-bit perceptual hashes for near duplicates; -1 turns near-duplicate search off."),
    max_pixels: int = typer.Option(CleanOptions().max_pixels, help="Images with more pixels are reported as decompression bombs and not decoded."),
    max_archive_gb: float | None = typer.Option(None, help="Refuse to extract more than this many GiB from all archives together (default: no fixed cap; the ratio and free disk apply)."),
    max_archive_files: int = typer.Option(2_000_000, help="Refuse to extract more files than this from all archives together."),
    max_archive_ratio: float = typer.Option(20.0, help="Refuse to extract more than this many bytes per byte of the source's archives (zip bombs); nested archives count too."),
    allow_outside: bool = typer.Option(False, "--allow-outside", help="Let rows of a path,label CSV (and file links) point outside the CSV's (source's) folder."),
    cache_size: int | None = typer.Option(None, "--cache-size", help="Also fill the resize cache for this training image size (e.g. 224)."),
    workers: int | None = typer.Option(None, help="Processes for decoding and caching (default: CPU count)."),
    copy: bool = typer.Option(False, "--copy", help="Copy files instead of hard-linking them into the dataset folder."),
) -> None:
    """Ingest, check and clean a dataset; write the manifest, a proposed blocklist and a cleaning report.

    Bad images are reported, never fatal. Review cleaning_report.html, then save the edited blocklist.proposed.csv as blocklist.csv in the dataset folder; `imgclf train` honours it.
    """
    try:
        options = PrepareOptions(
            clean=CleanOptions(
                min_side=min_side,
                max_aspect=max_aspect,
                near_dup_threshold=None if near_dup_threshold < 0 else near_dup_threshold,
                max_pixels=max_pixels,
                policy=parse_policy(policy),
            ),
            max_archive_bytes=None if max_archive_gb is None else int(max_archive_gb * 1024**3),
            max_archive_files=max_archive_files,
            max_archive_ratio=max_archive_ratio,
            allow_outside=allow_outside,
            cache_image_size=cache_size,
            workers=workers,
            link=not copy,
            progress=True,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"prepare: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    _print_summary(prepare(src, out, options))


def _print_summary(result: PrepareResult) -> None:
    table = Table(title=f"prepared {result.out}", show_header=False)
    table.add_row("training images", f"{result.n_train} in {result.n_classes} classes ({result.n_kept_train} kept)")
    table.add_row("test images", str(result.n_test))
    table.add_row("dropped by policy", str(result.n_dropped))
    for flag, n in result.flag_counts.items():
        table.add_row(f"  {flag}", str(n))
    table.add_row("work done", f"{result.analysed} analysed, {result.copied} placed, {result.removed} removed")
    if result.cache is not None:
        table.add_row("resize cache", f"{result.cache.built} built, {result.cache.hits} reused, {result.cache.failed} failed")
    table.add_row("time", f"{result.seconds:.1f} s ({result.images_per_second:.0f} images/s)")
    console.print(table)
    console.print(f"review [bold]{result.files['report_html']}[/], then save the edited "
                  f"{result.files['blocklist'].name} as blocklist.csv to apply it")
