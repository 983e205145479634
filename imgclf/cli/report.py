"""``imgclf report RUN_DIR``: write the run's self-contained HTML report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from imgclf.terminal import console


def report_command(
    run_dir: Path = typer.Argument(..., help="A run directory (written by `imgclf train`)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="HTML file to write (default RUN_DIR/report.html)."),
) -> None:
    """One self-contained HTML page: config, learning curves, confusion matrix, per-class precision/recall,
    most confused classes, the most confidently wrong validation images, the augmentation preview and —
    when present — the cleaning summary, TTA table and calibration curve. Opens offline, loads nothing."""
    from imgclf.report.run_report import write_run_report
    from imgclf.run.claim import check_file_out
    from imgclf.run.rundir import RunDir

    if out is not None:  # an earlier page, never another kind of file or a run's own other files
        check_file_out(out, "--out", (".html", ".htm"), own=(RunDir(out.parent).report.name,))
    t0 = time.perf_counter()
    path = write_run_report(run_dir, out)
    console.print(
        f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB, {time.perf_counter() - t0:.1f}s)",
        highlight=False,
        soft_wrap=True,
    )
