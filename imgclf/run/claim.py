"""The one rule for what a command writes (``--out``, ``--probs``), checked before any work.

A **folder** a command writes must be new, empty, or that same command's own earlier output (to resume
or re-run it); ``cv`` and ``ensemble`` then hold it under the run lock (:class:`~imgclf.run.lock.RunLock`,
one writer per folder), as ``train`` does. Whose output a folder is: the command named in its lock file,
or, for folders from before the lock kept that name, the file only that command writes
(:func:`folder_kind`). ``train`` itself keeps :meth:`RunDir.check_new` (a finished run is resumed with
``--resume``, never overwritten).

A **file** may be new, or an earlier file of the same kind (the same suffix: ``predict --out sub.csv``
again); never a folder, never a file of another kind, never a file an imgclf folder holds unless the
command writes that very file there (``report`` → ``RUN/report.html``), and never the same path as
another output or an input of the same command (``predict --out x.csv --probs x.csv``). Files are
written atomically, so two writers leave one whole file; they take no lock.

Example::

    with claim_folder(out, "cv"):
        run_cv(...)
    check_file_out(out, "--out", (".csv",), own=("submission.csv",))
    check_distinct({"--out": out, "--probs": probs}, inputs={"--sample": sample})
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from imgclf.errors import RunDirError
from imgclf.run.lock import RunLock
from imgclf.run.rundir import BlendDir, EvalDir, RunDir

# What ``export --format timm`` writes (timm's own layout): the whole folder is replaced on a re-export.
TIMM_EXPORT_FILES = frozenset({"config.json", "model.safetensors"})

# What ``evaluate --out`` writes: a folder holding only these is an earlier evaluation, rewritten by the next one.
_EVAL = EvalDir(Path("."))
EVAL_FILES = frozenset(
    p.name
    for p in (
        _EVAL.metrics,
        _EVAL.per_class,
        _EVAL.confusion_csv,
        _EVAL.confusion_png,
        _EVAL.predictions,
        _EVAL.tta_compare_csv,
        _EVAL.tta_compare_md,
    )
)

KINDS = {
    "train": "a training run",
    "cv": "a cross-validation (imgclf cv)",
    "ensemble": "an ensemble (imgclf ensemble)",
    "timm": "a timm export",
    "evaluate": "the scores of an evaluation (imgclf evaluate)",
    "sweep": "a sweep (imgclf sweep)",
    "ablate": "an ablation (imgclf ablate)",
}
SWEEP_STORAGE = "optuna.db"  # a sweep folder's study (imgclf.experiments.sweep), beside its trials/ folder
# A second worker may find the folder before its first trial, holding only the tracking store (a database study).
SWEEP_MARKS = (SWEEP_STORAGE, "trials", "mlflow.db")
ABLATION_MARK = "ablation.json"  # imgclf.experiments.ablate's manifest


def folder_kind(root: Path) -> str | None:
    """Which command wrote ``root``: one of :data:`KINDS` (``timm``: an export), or None."""
    run, blend = RunDir(Path(root)), BlendDir(Path(root))
    if not run.root.is_dir():
        return None
    writer = run.writer()
    if writer in KINDS:
        return writer
    if any(p.exists() for p in (blend.cv_spec, blend.folds, blend.cv_config)):
        return "cv"
    if any(p.exists() for p in (run.info, run.last, run.recipe)) or (run.config.exists() and run.summary.exists()):
        return "train"  # a budget run holds an ensemble.json too: it is a run first
    if blend.ensemble_spec.exists():
        return "ensemble"
    if (run.root / ABLATION_MARK).is_file():
        return "ablate"
    if any((run.root / mark).exists() for mark in SWEEP_MARKS):
        return "sweep"
    names = {p.name for p in run.root.iterdir()} - {run.lock.name}
    if names == TIMM_EXPORT_FILES:
        return "timm"
    if names and names <= EVAL_FILES:
        return "evaluate"
    return None


def _is_empty(root: Path) -> bool:
    try:
        return all(entry.name == RunDir(root).lock.name for entry in os.scandir(root))
    except OSError as exc:
        raise RunDirError(f"cannot read --out {root}: {exc.strerror or exc}") from None


def check_folder(root: Path, kind: str, flag: str = "--out") -> None:
    """Refuse a ``root`` that is not new, empty, or ``kind``'s own earlier output; change nothing."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise RunDirError(f"{flag} {root} is a file, not a folder; choose a new folder")
    _check_parents(root, flag)
    if not root.exists() or _is_empty(root):
        return
    found = folder_kind(root)
    if found == kind:
        return
    what = f"holds {KINDS[found]}" if found else "is not empty and holds no imgclf output"
    raise RunDirError(
        f"{flag} {root} {what}; {kind} writes only into a new or empty folder or its own earlier output, "
        f"so none of your files are overwritten: choose another {flag}"
    )


@contextmanager
def claim_folder(root: Path, kind: str, flag: str = "--out") -> Iterator[Path]:
    """:func:`check_folder`, then hold ``root``'s lock (naming ``kind``) while the body writes it."""
    check_folder(root, kind, flag)
    lock = RunLock.acquire(RunDir(Path(root)), kind)
    try:
        yield Path(root)
    finally:
        lock.release()


def _check_parents(path: Path, flag: str) -> None:
    """Refuse a ``path`` whose nearest existing parent is a file."""
    for parent in Path(path).parents:
        if parent.exists():
            if not parent.is_dir():
                raise RunDirError(f"{flag} {path} lies under {parent}, which is a file, not a folder")
            return


def check_file_out(path: Path, flag: str, suffixes: tuple[str, ...], own: tuple[str, ...] = ()) -> None:
    """Refuse a file output that would replace a folder, another kind of file, or a file of an imgclf folder
    (other than the ``own`` names this command writes there); a new file, or one of ``suffixes``, is fine."""
    path = Path(path)
    if path.is_dir():
        raise RunDirError(f"{flag} {path} is a folder; give a file name such as {path / ('out' + suffixes[0])}")
    _check_parents(path, flag)
    if not path.exists():
        return
    if path.suffix.lower() not in suffixes:
        raise RunDirError(
            f"{flag} {path} exists and is not a {'/'.join(suffixes)} file; imgclf replaces only a file of "
            f"the kind it writes: choose another {flag}"
        )
    holder = folder_kind(path.parent)
    if holder is not None and path.name not in own:
        raise RunDirError(f"{flag} {path} is a file of {KINDS[holder]} in {path.parent}; choose another {flag}")


def check_distinct(outputs: Mapping[str, Path | None], inputs: Mapping[str, Path | None] | None = None) -> None:
    """Refuse two outputs, or an output and an input, that are the same file (after links and ``..``)."""
    seen: dict[Path, str] = {}
    for flag, path in (inputs or {}).items():
        if path is not None:
            seen.setdefault(Path(path).resolve(), flag)
    for flag, path in outputs.items():
        if path is None:
            continue
        where = Path(path).resolve()
        if where in seen:
            raise RunDirError(f"{flag} {path} is the same file as {seen[where]}; give each output its own file")
        seen[where] = flag


def start_over(run: RunDir) -> None:
    """Clear a run of ours killed before its first checkpoint (:meth:`RunDir.is_unfinished`) for a new start, under
    its lock: a training still writing there is refused before any file of it is removed."""
    if not run.is_unfinished():
        return
    lock = RunLock.acquire(run)
    try:
        run.clear_unfinished()
    finally:
        lock.release()
