"""``imgclf prepare SRC --out DATASET_DIR``: parse options, call :func:`imgclf.data.prepare.prepare`, print a summary."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from imgclf.terminal import console
from imgclf.data.clean import FLAGS, CleanOptions, parse_policy
from imgclf.data.near_copy import CANDIDATE_RADIUS, COPY_RESIDUAL_BOUND
from imgclf.errors import ConfigError

if TYPE_CHECKING:
    from imgclf.data.prepare import PrepareResult

_POLICY_HELP = (
    "Per-flag policy FLAG=drop|keep|keep_one|propose (repeatable), e.g. --policy tiny=drop. Defaults: unreadable files "
    "drop, exact_duplicate keep_one, label_conflict and train_test_leak propose, everything else keep. Flags: "
    + ", ".join(FLAGS)
    + "."
)


# PrepareOptions fields whose option is named otherwise.
_OPTION_OF = {"cache_image_size": "cache-size", "max_archive_bytes": "max-archive-gb"}


class _Bars:
    """``progress(stage, done, total)`` for :func:`prepare`: one rich bar per stage, on stderr, cleared when done."""

    def __init__(self) -> None:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        self._progress = Progress(*columns, console=Console(stderr=True), transient=True)
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> _Bars:
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(stage, total=total)
        self._progress.update(self._tasks[stage], completed=done, total=total)


def prepare_command(
    src: Path = typer.Argument(
        ...,
        help="A competition download (folder with train.zip/test.zip/sample_submission.csv, any nesting), a .zip, a folder of class folders, or a labels CSV (path,label; tags; 0/1 columns; a number).",
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Dataset folder to create: train/<class>/ (label sets or values: train/ and train.csv), test/, manifest.csv, blocklist.proposed.csv, cleaning_report.{md,html}.",
    ),
    policy: list[str] = typer.Option([], "--policy", help=_POLICY_HELP),
    min_side: int = typer.Option(32, help="Flag images whose shorter side is below this many pixels as 'tiny'."),
    max_aspect: float = typer.Option(
        5.0, help="Flag images whose long/short side ratio exceeds this as 'extreme_aspect'."
    ),
    hash_radius: int = typer.Option(
        CANDIDATE_RADIUS,
        help="Copy candidates: max Hamming distance between 64-bit perceptual hashes (whole image or crops); every candidate is then checked on pixels: a copy, or a look-alike. -1 turns the search off.",
    ),
    max_residual: float = typer.Option(
        COPY_RESIDUAL_BOUND,
        help="A copy's largest aligned residual: after the best crop/resize/brightness alignment at 64 px, no 8x8 block may keep more than this share of its own detail energy (re-encoding removes detail: <= 1; a different capture adds its own: ~2 or more).",
    ),
    group_lookalikes: bool = typer.Option(
        False,
        "--group-lookalikes",
        help="Also keep look-alikes (distinct captures of a similar subject) in one dup_group, so the split and CV folds never put them on both sides.",
    ),
    max_drop: float = typer.Option(
        0.05,
        help="Stop (exit 2, nothing written) when the policy would remove more than this fraction of a class's readable training images; 1.0 = no limit.",
    ),
    apply_proposed: bool = typer.Option(
        False,
        "--apply-proposed",
        help="Drop what is otherwise only proposed for review: both sides of label conflicts, train copies of train/test leaks.",
    ),
    max_pixels: int = typer.Option(
        CleanOptions().max_pixels, help="Images with more pixels are reported as decompression bombs and not decoded."
    ),
    max_archive_gb: float | None = typer.Option(
        None,
        help="Refuse to extract more than this many GiB from all archives together (default: no fixed cap; the ratio and free disk apply).",
    ),
    max_archive_files: int = typer.Option(
        2_000_000, help="Refuse to extract more files than this from all archives together."
    ),
    max_archive_ratio: float = typer.Option(
        20.0,
        help="Refuse to extract more than this many bytes per byte of the source's archives (zip bombs); nested archives count too.",
    ),
    allow_outside: bool = typer.Option(
        False,
        "--allow-outside",
        help="Let rows of a path,label CSV (and file links) point outside the CSV's (source's) folder.",
    ),
    cache_size: int | None = typer.Option(
        None, "--cache-size", help="Also fill the resize cache for this training image size (e.g. 224)."
    ),
    holdout: float | None = typer.Option(
        None,
        "--holdout",
        help="Set this share of the kept training images (0 < F < 1; stratified, seeded, duplicate groups whole) aside as a labelled dataset of its own, OUT/holdout/train/<class>/, that training never sees: score any run on it with `imgclf evaluate RUN OUT/holdout`.",
    ),
    task: str = typer.Option(
        "auto",
        "--task",
        help="How to read the labels CSV: auto (from its cells, as `imgclf train` does), multiclass, multilabel or regression (e.g. integer grades to regress).",
    ),
    target_column: str | None = typer.Option(
        None, "--target-column", help="The labels CSV's target column, when several could be (as data.target_column)."
    ),
    workers: int | None = typer.Option(None, help="Processes for decoding and caching (default: CPU count)."),
    copy: bool = typer.Option(False, "--copy", help="Copy files instead of hard-linking them into the dataset folder."),
) -> None:
    """Ingest, check and clean a dataset; write the manifest, a proposed blocklist and a cleaning report.

    By default only unreadable files and byte-identical copies within a class are left out. Copies (the same capture, altered) are kept and grouped (never split across train/validation); label conflicts and train/test leaks between copies are proposed in blocklist.proposed.csv; look-alikes (different captures) are reported only. Review cleaning_report.html, then save the edited blocklist.proposed.csv as blocklist.csv (`imgclf train` honours it) or re-run with --apply-proposed.
    """
    if holdout is not None and not 0 < holdout < 1:
        raise ConfigError(f"--holdout must be a share between 0 and 1, e.g. 0.2 (got {holdout:g})")
    from imgclf.data.prepare import PrepareOptions, prepare  # pandas, torch: only when the command runs
    from imgclf.report.cleaning import write_cleaning_report  # matplotlib

    try:
        options = PrepareOptions(
            clean=CleanOptions(
                min_side=min_side,
                max_aspect=max_aspect,
                hash_radius=None if hash_radius < 0 else hash_radius,
                max_residual=max_residual,
                group_lookalikes=group_lookalikes,
                max_pixels=max_pixels,
                policy=parse_policy(policy),
            ),
            max_archive_bytes=_gib_to_bytes(max_archive_gb),
            max_archive_files=max_archive_files,
            max_archive_ratio=max_archive_ratio,
            allow_outside=allow_outside,
            cache_image_size=cache_size,
            workers=workers,
            link=not copy,
            max_drop=max_drop,
            apply_proposed=apply_proposed,
            holdout=holdout or 0.0,
            task=task,
            target_column=target_column,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][-1]) if first["loc"] else ""
        option = _OPTION_OF.get(field, field.replace("_", "-"))
        if first["type"] == "value_error":
            message, shown = first["msg"].removeprefix("Value error, "), ""
        else:
            message, shown = first["msg"].lower(), f" (got {first.get('input')!r})"
        raise ConfigError(f"prepare: --{option}: {message}{shown}") from None
    with _Bars() as bars:
        result = prepare(src, out, options, progress=bars, write_report=write_cleaning_report)
    _print_summary(result)


def _gib_to_bytes(gib: float | None) -> int | None:
    """``--max-archive-gb`` in bytes; inf, nan or a size below one byte is refused (int(inf) would be a traceback)."""
    if gib is None:
        return None
    if not math.isfinite(gib) or gib * 1024**3 < 1:
        raise ConfigError(
            f"prepare: --max-archive-gb must be a positive, finite number of GiB (got {gib!r}); leave it out for no fixed cap"
        )
    return int(gib * 1024**3)


def _print_summary(result: PrepareResult) -> None:
    table = Table(title=f"prepared {result.out}", show_header=False)
    groups = {"multilabel": "labels (multilabel)", "regression": "target (regression)"}.get(result.task, "classes")
    table.add_row("training images", f"{result.n_train} in {result.n_classes} {groups} ({result.n_kept_train} kept)")
    if result.n_holdout:
        from imgclf.data.holdout import HOLDOUT_DIR

        table.add_row(
            "held out",
            f"{result.n_holdout} in {result.out / HOLDOUT_DIR} (imgclf evaluate RUN {result.out / HOLDOUT_DIR})",
        )
    table.add_row("test images", str(result.n_test))
    table.add_row("dropped by policy", str(result.n_dropped))
    table.add_row("proposed for review", str(result.n_proposed))
    for flag, n in result.flag_counts.items():
        table.add_row(f"  {flag}", str(n))
    table.add_row("work done", f"{result.analysed} analysed, {result.copied} placed, {result.removed} removed")
    if result.cache is not None:
        table.add_row(
            "resize cache", f"{result.cache.built} built, {result.cache.hits} reused, {result.cache.failed} failed"
        )
    table.add_row("time", f"{result.seconds:.1f} s ({result.images_per_second:.0f} images/s)")
    console.print(table)
    console.print(
        f"review [bold]{result.files['report_html']}[/], then save the edited "
        f"{result.files['blocklist'].name} as blocklist.csv to apply it"
    )
