"""One writer per output folder: a lock file held for the life of the command that writes it.

An OS lock (``flock``) on ``FOLDER/.imgclf.lock``: it is released when the process ends, however it
ends, so a crash never leaves a stale lock, and a second ``train`` (``cv``, ``ensemble``) on the same
folder stops at once. The file also says which command wrote the folder (``train``, ``cv``,
``ensemble``): :meth:`RunDir.writer` reads it to tell a command's own earlier output,
which it may resume or re-run, from anything else.
"""

from __future__ import annotations

import fcntl
import os

from imgclf.errors import ConfigError
from imgclf.run.rundir import RunDir


class RunLock:
    def __init__(self, fd: int, run: RunDir, created: bool):
        self._fd: int | None = fd
        self._run = run
        self._created = created  # the folder was made for this run: remove it if nothing else got written

    @classmethod
    def acquire(cls, run: RunDir, kind: str = "train") -> "RunLock":
        created = not run.root.exists()
        run.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(run.lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            what = "training" if kind == "train" else kind
            raise ConfigError(
                f"{run.root} is in use by another imgclf {what}; wait for it or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, kind.encode("ascii"), 0)
        return cls(fd, run, created)

    def release(self) -> None:
        if self._fd is not None:
            if self._created and [p.name for p in self._run.root.iterdir()] == [self._run.lock.name]:
                self._run.lock.unlink()  # a run that failed before writing anything leaves no folder behind
                self._run.root.rmdir()
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
