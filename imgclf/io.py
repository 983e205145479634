"""Crash-safe file writing: write to a temporary file beside the target, then rename.

A kill at any moment leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from imgclf.errors import DiskFullError

# "No space left on device" and "Disk quota exceeded": the user's to fix, not a bug.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    Example::

        with atomic_path(run.best) as tmp:
            save_file(tensors, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _disk_full(exc, path) from None
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600 files; give the result the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _disk_full(exc, path) from None
        raise


@contextmanager
def atomic_stream(path: str | Path) -> Iterator[Any]:
    """A binary file object that becomes ``path`` on success (as :func:`atomic_path`), for writers that hide
    the OS's error behind their own: ``torch.save`` reports a full disk as ``RuntimeError: [enforce fail at
    inline_container.cc:672] ... unexpected pos``. The OSError of a failed write is raised instead.

    Example::

        with atomic_stream(run.last) as fh:
            torch.save(state, fh)
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        sink = _ErrorKeepingFile(fh)
        try:
            yield sink
        except Exception:
            if sink.error is not None:
                raise sink.error from None
            raise


class _ErrorKeepingFile:
    """A file that remembers the first OSError of its writes."""

    def __init__(self, fh: BinaryIO):
        self._fh = fh
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self._fh.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        self._fh.flush()


def _disk_full(exc: OSError, path: Path) -> OSError | DiskFullError:
    """A one-line :class:`DiskFullError` for a full disk or quota; any other OSError unchanged."""
    if exc.errno not in DISK_FULL_ERRNOS:
        return exc
    kept = f"; the previous {path.name} is kept" if path.exists() else ""
    return DiskFullError(
        f"no space left on the device to write {path} (nothing was half-written{kept}): "
        "free some space, then run the command again"
    )


def missing_parents(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first (what to remove again if the
    work that creates them fails)."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())
