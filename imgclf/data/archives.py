"""Safe unzip with one budget for a whole ingest.

``safe_extract`` unpacks a zip with the standard library. Before anything is written it refuses
entries that escape the target (``../``, absolute paths, symlinks), encrypted entries, unsupported
compression methods, names too long for the filesystem, and a name used both as a file and as a
folder. Credential-like files (``kaggle.json``, ``*.pem``, ...) are skipped with a warning. While streaming it charges every byte and every file to an :class:`ExtractBudget` shared by
all archives of one ingest, nested archives included, so header sizes (which can lie) are never
trusted and a zip inside a zip cannot multiply the cap. A corrupt entry (bad CRC-32, truncated data)
is a :class:`DataError` naming the entry. Extraction goes to a temporary folder renamed on success, so
a refused archive leaves nothing behind, not even the empty folders made for it.

The default budget is ``max_ratio`` (20) times the size of the source archives, at least
``min_allowance`` (64 MiB), and never more than the free disk space.

Example::

    budget = ExtractBudget(ExtractLimits(), free_bytes=shutil.disk_usage(work).free)
    budget.add_source_archive(Path("train.zip").stat().st_size)
    safe_extract(Path("train.zip"), work / "train", budget=budget)
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import logging
import lzma
import os
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from imgclf.errors import DataError
from imgclf.io import missing_parents

log = logging.getLogger("imgclf")

JUNK_NAMES = frozenset({"__macosx", ".ds_store", "thumbs.db", "desktop.ini"})
CREDENTIAL_PATTERNS = (
    "kaggle.json", ".netrc", "_netrc", "*.pem", "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", ".env", ".env.*",
)  # fmt: skip
_SUPPORTED_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})
_MAX_NAME_BYTES = 255  # one path component, on every common filesystem
_MAX_PATH_BYTES = 1024
# What a corrupt entry raises inside zipfile/zlib/bz2/lzma while it is read.
_CORRUPT = (zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, NotImplementedError, ValueError, struct.error)


@dataclass(frozen=True)
class ExtractLimits:
    """Caps that stop a zip bomb or a mistaken 'extract my whole disk' archive, for one whole ingest."""

    max_total_bytes: int | None = None  # None: only the ratio and free-disk caps apply
    max_files: int = 2_000_000
    max_ratio: float = 20.0  # bytes extracted per byte of source archive
    min_allowance: int = 64 * 1024**2  # a small archive may always expand to this much


class ExtractBudget:
    """Bytes and files extracted so far in one ingest, against the caps; charged while streaming."""

    def __init__(self, limits: ExtractLimits = ExtractLimits(), free_bytes: int | None = None):
        self.limits = limits
        self.free_bytes = free_bytes
        self.archive_bytes = 0  # size of the source's own archives (nested ones excluded)
        self.bytes = 0
        self.files = 0

    def add_source_archive(self, size: int) -> None:
        self.archive_bytes += size

    def cap(self) -> tuple[int, str]:
        """The binding byte cap and how to describe it."""
        ratio = self.limits.max_ratio
        caps = [
            (
                max(int(ratio * self.archive_bytes), self.limits.min_allowance),
                f"{ratio:g} x the archives' size (--max-archive-ratio)",
            )
        ]
        if self.limits.max_total_bytes is not None:
            caps.append((self.limits.max_total_bytes, "the --max-archive-gb cap"))
        if self.free_bytes is not None:
            caps.append((self.free_bytes, "the free disk space"))
        return min(caps, key=lambda c: c[0])

    def check_declared(self, archive: Path, n_bytes: int, n_files: int) -> None:
        """Refuse early when the archive's headers alone already exceed what is left (headers may also lie low)."""
        if self.files + n_files > self.limits.max_files:
            raise DataError(
                f"refusing archive {archive.name}: more than {self.limits.max_files} files in all archives "
                f"({n_files} in this one; raise --max-archive-files if this is expected)"
            )
        cap, why = self.cap()
        if self.bytes + n_bytes > cap:
            raise DataError(
                f"refusing archive {archive.name}: its entries declare {n_bytes} bytes, more than the "
                f"{max(cap - self.bytes, 0)} left of {cap} bytes, {why}; a zip bomb?"
            )

    def charge(self, archive: Path, entry: str, n_bytes: int = 0, n_files: int = 0) -> None:
        self.bytes += n_bytes
        self.files += n_files
        if self.files > self.limits.max_files:
            raise DataError(
                f"refusing archive {archive.name}: more than {self.limits.max_files} files in all archives "
                "(raise --max-archive-files if this is expected)"
            )
        cap, why = self.cap()
        if self.bytes > cap:
            raise DataError(
                f"refusing archive {archive.name}: entry {entry[:120]!r} takes the extracted size over "
                f"{cap} bytes, {why}; a zip bomb?"
            )


def is_junk(name: str) -> bool:
    """OS clutter that archives and file managers add (``__MACOSX``, ``.DS_Store``, ``._x.jpg``)."""
    lower = name.lower()
    return lower in JUNK_NAMES or lower.startswith("._")


def is_credential_name(name: str) -> bool:
    """``kaggle.json``, ``.netrc``, ``*.pem``, ``id_rsa*``, ``.env``: files that must never enter a dataset."""
    lower = name.lower()
    return any(fnmatch.fnmatchcase(lower, pattern) for pattern in CREDENTIAL_PATTERNS)


def _is_junk_entry(name: str) -> bool:
    return any(is_junk(part) for part in PurePosixPath(name.replace("\\", "/")).parts)


def _entry_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename.replace("\\", "/")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return f"entry {info.filename[:120]!r} is a symbolic link"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return f"entry {info.filename[:120]!r} has an absolute path"
    if ".." in PurePosixPath(name).parts:
        return f"entry {info.filename[:120]!r} escapes the target folder"
    if info.flag_bits & 0x1:
        return f"entry {info.filename[:120]!r} is encrypted"
    if (
        "\0" in name
        or len(name.encode("utf-8", "surrogateescape")) > _MAX_PATH_BYTES
        or any(len(part.encode("utf-8", "surrogateescape")) > _MAX_NAME_BYTES for part in name.split("/"))
    ):
        return f"entry {info.filename[:60]!r}... has a name too long (or invalid) for a file system"
    if not info.is_dir() and info.compress_type not in _SUPPORTED_METHODS:
        method = zipfile.compressor_names.get(info.compress_type, str(info.compress_type))
        return f"entry {info.filename[:120]!r} uses the unsupported compression method {method!r}"
    return None


def _name_conflicts(infos: list[zipfile.ZipInfo]) -> str | None:
    """A name used both as a file and as a folder (``a`` and ``a/b.jpg``), or a file listed twice."""
    files: set[str] = set()
    folders: set[str] = set()
    for info in infos:
        parts = PurePosixPath(info.filename.replace("\\", "/")).parts
        folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
        key = "/".join(parts)
        if info.is_dir():
            folders.add(key)
        elif key in files:
            return f"entry {info.filename[:120]!r} appears twice"
        else:
            files.add(key)
    clash = sorted(files & folders)
    return f"{clash[0][:120]!r} is both a file and a folder" if clash else None


def check_archive(archive: Path, budget: ExtractBudget) -> list[zipfile.ZipInfo]:
    """Validate every entry of ``archive``; return the file entries worth extracting (junk skipped).

    Raises DataError naming the first offending entry; writes nothing. Declared sizes are checked
    against what is left of the budget here, and the real sizes again while extracting.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
    except (*_CORRUPT, OSError) as exc:
        raise DataError(f"refusing archive {archive.name}: not a readable zip file ({str(exc)[:120]})") from None
    for info in infos:
        problem = _entry_problem(info)
        if problem:
            raise DataError(f"refusing archive {archive.name}: {problem}")
    conflict = _name_conflicts(infos)
    if conflict:
        raise DataError(f"refusing archive {archive.name}: {conflict}")
    keep = [i for i in infos if not i.is_dir() and not _is_junk_entry(i.filename)]
    credentials = [i for i in keep if is_credential_name(PurePosixPath(i.filename.replace("\\", "/")).name)]
    if credentials:  # never unpacked into the dataset folder, which people share
        log.warning(
            "%s: not extracting %d credential-like file(s), e.g. %s",
            archive.name,
            len(credentials),
            credentials[0].filename[:120],
        )
        keep = [i for i in keep if i not in credentials]
    budget.check_declared(archive, sum(i.file_size for i in keep), len(keep))
    return keep


def _copy_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, archive: Path, budget: ExtractBudget) -> None:
    budget.charge(archive, info.filename, n_files=1)
    try:
        src = zf.open(info)
    except (*_CORRUPT, RuntimeError, OSError) as exc:
        raise DataError(
            f"refusing archive {archive.name}: entry {info.filename[:120]!r} is corrupt ({str(exc)[:100]})"
        ) from None
    with src, open(dest, "wb") as out:
        while True:
            try:
                chunk = src.read(1 << 20)
            except (*_CORRUPT, OSError) as exc:  # bz2 reports bad data as OSError
                raise DataError(
                    f"refusing archive {archive.name}: entry {info.filename[:120]!r} is corrupt ({str(exc)[:100]})"
                ) from None
            if not chunk:
                return
            budget.charge(archive, info.filename, n_bytes=len(chunk))
            out.write(chunk)


def safe_extract(
    archive: Path, target: Path, limits: ExtractLimits = ExtractLimits(), budget: ExtractBudget | None = None
) -> Path:
    """Extract ``archive`` into ``target`` (created; must not exist yet) and return ``target``.

    Entries are validated first (see :func:`check_archive`); the bytes actually written are charged
    to ``budget`` (a fresh one from ``limits`` when None, with ``archive`` as its only source archive).
    """
    archive, target = Path(archive), Path(target)
    if budget is None:
        budget = ExtractBudget(limits)
        budget.add_source_archive(archive.stat().st_size)
    entries = check_archive(archive, budget)
    made = missing_parents(target.parent)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        root = tmp.resolve()
        with zipfile.ZipFile(archive) as zf:
            for info in entries:
                dest = (tmp / info.filename.replace("\\", "/")).resolve()
                if root not in dest.parents:  # belt and braces after _entry_problem
                    raise DataError(
                        f"refusing archive {archive.name}: entry {info.filename[:120]!r} escapes the target folder"
                    )
                dest.parent.mkdir(parents=True, exist_ok=True)
                _copy_entry(zf, info, dest, archive, budget)
        os.replace(tmp, target)
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        for folder in made:
            try:
                folder.rmdir()
            except OSError:
                break
        if isinstance(exc, OSError) and not isinstance(exc, DataError):
            why = "no space left on the device" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
            raise DataError(f"cannot extract {archive.name} into {target.parent}: {why}") from None
        raise
    return target


def _archive_key(archive: Path) -> str:
    st = archive.stat()
    return hashlib.sha256(f"{archive.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]


def extract_cached(archive: Path, work_dir: Path, budget: ExtractBudget) -> Path:
    """Extract once per archive version: re-runs reuse ``work_dir/extract/<name>-<key>``."""
    target = work_dir / "extract" / f"{archive.stem[:100]}-{_archive_key(archive)}"
    if target.is_dir():
        return target
    return safe_extract(archive, target, budget=budget)
