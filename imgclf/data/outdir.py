"""The dataset folder ``prepare`` writes: what it may touch, and what a failure leaves behind.

An imgclf dataset is recognised by its marker file ``.imgclf-dataset.json``
(``{"format": "imgclf-dataset", "version": 1, "state": "complete" | "preparing"}``), or, for folders
prepared before the marker existed, by a ``manifest.csv`` with the manifest's columns next to a
``.imgclf-work/`` folder. ``prepare`` writes only into a new folder, an empty one, or an imgclf
dataset, and only to paths that resolve inside it.

On failure a folder that was new or empty is removed again (its parents too, when ``prepare`` made
them), so nothing half-written is left. An existing dataset cannot be rolled back cheaply; its marker
then says ``preparing`` and :func:`dataset_state` lets ``train`` refuse it until ``prepare`` succeeds.

Example::

    with claim_out_dir(out):
        ...
        mark_preparing(out)  # just before the first file of an existing dataset changes
        ...
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imgclf.errors import DataError, ImgclfError
from imgclf.io import atomic_write_json, missing_parents

MARKER = ".imgclf-dataset.json"
_FORMAT = "imgclf-dataset"
_LEGACY_HEADER = "path,label,split,sha256"


def dataset_state(folder: Path) -> str | None:
    """``complete`` / ``preparing`` from the marker, ``complete`` for a pre-marker dataset, else None."""
    folder = Path(folder)
    marker = folder / MARKER
    if marker.is_file():
        try:
            data = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return "preparing"  # a marker we cannot read is ours but not trustworthy
        if isinstance(data, dict) and data.get("format") == _FORMAT:
            return "complete" if data.get("state") == "complete" else "preparing"
        return None
    manifest = folder / "manifest.csv"
    if manifest.is_file() and (folder / ".imgclf-work").is_dir():
        try:
            with open(manifest, encoding="utf-8-sig") as fh:
                first = fh.readline(4096)
        except (OSError, UnicodeDecodeError):
            return None
        return "complete" if first.startswith(_LEGACY_HEADER) else None
    return None


def _write_marker(out: Path, state: str) -> None:
    atomic_write_json(out / MARKER, {"format": _FORMAT, "version": 1, "state": state})


def mark_preparing(out: Path) -> None:
    """Record that ``out``'s files are about to change; :func:`claim_out_dir` marks it complete at the end."""
    _write_marker(out, "preparing")


def _why(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    return (exc.strerror or str(exc))[:120]


def check_out_dir(out: Path) -> bool:
    """Refuse an ``out`` that ``prepare`` must not write to; True when it is new or empty."""
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file; give a folder for the dataset")
    ancestor = out.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise DataError(f"--out {out} lies under {ancestor}, which is a file, not a folder")
    if not out.exists():
        return True
    try:
        empty = next(os.scandir(out), None) is None
    except OSError as exc:
        raise DataError(f"cannot read --out {out}: {_why(exc)}") from None
    if not empty and dataset_state(out) is None:
        raise DataError(
            f"--out {out} is not empty and is not an imgclf dataset (no {MARKER}); "
            "choose a new or empty folder so none of your files are overwritten"
        )
    return empty


def _create(out: Path) -> None:
    """Make ``out`` and prove it is writable (a read-only or full disk fails here, before any work)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".imgclf-probe.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise DataError(f"cannot write to --out {out}: {_why(exc)}") from None


def _remove_new(out: Path, made: list[Path]) -> None:
    """Undo a failed prepare into a new or empty folder: its contents, and the folders we created."""
    if out.is_dir() and not out.is_symlink():
        for entry in list(out.iterdir()):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
    for folder in made:  # deepest first
        try:
            folder.rmdir()
        except OSError:
            break


@contextmanager
def claim_out_dir(out: Path) -> Iterator[None]:
    """Check and create ``out`` (resolved), run the body, then mark ``out`` complete.

    On failure, a new or empty ``out`` is removed again; an existing dataset keeps a ``preparing``
    marker when :func:`mark_preparing` was called. An ``OSError`` (full or read-only disk) becomes
    one DataError line that says what was left.
    """
    fresh = check_out_dir(out)
    made = missing_parents(out)
    try:
        _create(out)
        if fresh:
            _write_marker(out, "preparing")
        yield
        _write_marker(out, "complete")
    except BaseException as exc:
        if fresh:
            _remove_new(out, made)
        left = "nothing was left behind" if fresh else _left_note(out)
        if isinstance(exc, ImgclfError) and not fresh and dataset_state(out) == "preparing":
            raise DataError(f"{exc}; {left}") from None
        if isinstance(exc, ImgclfError) or not isinstance(exc, OSError):
            raise
        where = str(exc.filename or out)
        where = where if len(where) <= 120 else "..." + where[-117:]
        raise DataError(f"prepare failed writing {where}: {_why(exc)}; {left}") from None


def _left_note(out: Path) -> str:
    if dataset_state(out) == "preparing":
        return f"{out} is incomplete until prepare succeeds"
    return f"{out} is unchanged"


def contained(out: Path, rel: str) -> Path | None:
    """``out / rel`` when it resolves inside ``out`` (which is resolved), else None."""
    if not rel or os.path.isabs(rel):
        return None
    target = out / rel
    return target if target.resolve().is_relative_to(out) and target.resolve() != out else None


def check_targets(out: Path, rels: list[str]) -> None:
    """Refuse to write any planned file whose folder would resolve outside ``out`` (e.g. through a link).

    A link at the file itself is harmless: ``prepare`` unlinks it before writing.
    """
    checked: set[str] = set()
    for rel in rels:
        parent = os.path.dirname(rel)
        if parent in checked:
            continue
        if os.path.isabs(rel) or ".." in Path(rel).parts or (parent and contained(out, parent) is None):
            raise DataError(f"refusing to write {rel[:120]!r}: it resolves outside --out {out}")
        checked.add(parent)
