"""``imgclf kaggle download COMPETITION`` and ``imgclf kaggle submit RUN_DIR``: the official client, wrapped."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from imgclf.terminal import console
from imgclf.cli.help_format import Command
from imgclf.errors import DataError, ImgclfError, RunDirError
from imgclf.run.rundir import RunDir

kaggle_app = typer.Typer(
    help="Download a competition's data and submit a run's predictions with the official kaggle client "
    "(pip install -e '.\\[kaggle]' in the imgclf checkout, or pip install kaggle; credentials from KAGGLE_USERNAME/KAGGLE_KEY or ~/.kaggle/kaggle.json).",
    no_args_is_help=True,
)


def download(
    competition: str = typer.Argument(..., help="The competition's name, as in kaggle.com/competitions/<name>."),
    out: Path = typer.Option(Path("downloads"), "--out", "-o", help="Folder for the downloaded zip."),
) -> None:
    """Download every file of COMPETITION as one zip; then run `imgclf prepare` on it."""
    from imgclf.competition import download_competition

    archive = download_competition(competition, out)
    console.print(
        f"downloaded {archive} — next: imgclf prepare {archive} --out data/{competition}",
        highlight=False,
        soft_wrap=True,
    )


def submit(
    run_dir: Path = typer.Argument(..., help="The run whose predictions are submitted."),
    competition: str = typer.Option(
        ..., "--competition", help="The competition's name, as in kaggle.com/competitions/<name>."
    ),
    file: Optional[Path] = typer.Option(
        None,
        "--file",
        "-f",
        help="Submission CSV (default RUN_DIR/submission.csv; a relative name not found here is looked up in RUN_DIR).",
    ),
    message: Optional[str] = typer.Option(
        None, "--message", "-m", help="Submission description (default: the run's name and validation accuracy)."
    ),
) -> None:
    """Submit a run's submission CSV to COMPETITION."""
    from imgclf.competition import submit_file

    if not run_dir.is_dir():
        raise RunDirError(f"run directory not found: {run_dir}")
    path = submission_path(run_dir, file)
    submit_file(path, competition, message or default_message(run_dir))
    console.print(
        f"submitted {path} to {competition}; see kaggle.com/competitions/{competition}/submissions",
        highlight=False,
        soft_wrap=True,
    )


def submission_path(run_dir: Path, file: Path | None) -> Path:
    if file is None:
        candidates = [RunDir(run_dir).submission]
    else:
        candidates = [file] if file.is_absolute() else [file, run_dir / file]
    for path in candidates:
        if path.is_file():
            return path
    hint = (
        "" if file else "; write one with: imgclf predict RUN_DIR TEST_DIR --out RUN_DIR/submission.csv, or pass --file"
    )
    raise DataError(f"submission file not found: {candidates[-1]}{hint}")


def default_message(run_dir: Path) -> str:
    try:
        summary = RunDir(run_dir).read_summary()
        return f"imgclf {run_dir.name}: {summary['backbone']}, val accuracy {summary['val_accuracy']:.4f}"
    except (ImgclfError, KeyError, TypeError, ValueError):
        return f"imgclf {run_dir.name}"


kaggle_app.command("download", cls=Command)(download)
kaggle_app.command("submit", cls=Command)(submit)
