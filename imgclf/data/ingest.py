"""Turn a source (competition download, folder of class folders, CSV of path,label) into a file plan.

Two jobs, both without touching the source:

* ``safe_extract`` unpacks a zip with the standard library, refusing entries that escape the target
  (``../``, absolute paths, symlinks), and capping total uncompressed size and file count. Every entry
  is checked before anything is written, and extraction goes to a temporary folder renamed on success,
  so a refused archive leaves nothing behind.
* ``discover`` finds the training images (with labels), the test images and ``sample_submission.csv``
  in whatever nesting the download uses, and returns a :class:`SourcePlan` of
  ``(source file, destination path inside the prepared dataset)`` pairs.

Example::

    plan = discover(Path("downloads/stanford-cars"), work_dir=out / ".imgclf-work")
    plan.train[0]  # PlannedFile(src=Path(".../train/audi/001.jpg"), rel="train/audi/001.jpg", label="audi")
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from imgclf.data.images import is_image_name
from imgclf.errors import DataError

JUNK_NAMES = frozenset({"__macosx", ".ds_store", "thumbs.db", "desktop.ini"})
TRAIN_DIR_NAMES = ("train", "training", "train_images", "trainset")
TEST_DIR_NAMES = ("test", "testing", "test_images", "testset")
LABEL_COLUMNS = ("label", "class", "category", "breed", "target", "species")
_MAX_ZIP_DEPTH = 3


@dataclass(frozen=True)
class ExtractLimits:
    """Caps that stop a zip bomb or a mistaken 'extract my whole disk' archive."""

    max_total_bytes: int = 50 * 1024**3
    max_files: int = 2_000_000


@dataclass(frozen=True)
class PlannedFile:
    src: Path
    rel: str  # posix path inside the prepared dataset, e.g. "train/audi/001.jpg"
    label: str  # "" for test files
    split: str  # "train" | "test"


@dataclass
class SourcePlan:
    train: list[PlannedFile] = field(default_factory=list)
    test: list[PlannedFile] = field(default_factory=list)
    sample_submission: Path | None = None
    ignored: list[str] = field(default_factory=list)  # non-image files we skipped, for the report

    @property
    def files(self) -> list[PlannedFile]:
        return self.train + self.test


def is_junk(name: str) -> bool:
    """OS clutter that archives and file managers add (``__MACOSX``, ``.DS_Store``, ``._x.jpg``)."""
    lower = name.lower()
    return lower in JUNK_NAMES or lower.startswith("._")


# --------------------------------------------------------------------------- safe unzip


def _entry_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename.replace("\\", "/")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return f"entry {info.filename!r} is a symbolic link"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return f"entry {info.filename!r} has an absolute path"
    if ".." in PurePosixPath(name).parts:
        return f"entry {info.filename!r} escapes the target folder"
    if info.flag_bits & 0x1:
        return f"entry {info.filename!r} is encrypted"
    return None


def _is_junk_entry(name: str) -> bool:
    return any(is_junk(part) for part in PurePosixPath(name.replace("\\", "/")).parts)


def check_archive(archive: Path, limits: ExtractLimits) -> list[zipfile.ZipInfo]:
    """Validate every entry of ``archive``; return the file entries worth extracting (junk skipped).

    Raises DataError naming the first offending entry; writes nothing.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"refusing archive {archive.name}: not a readable zip file ({exc})") from None
    keep: list[zipfile.ZipInfo] = []
    total = 0
    for info in infos:
        problem = _entry_problem(info)
        if problem:
            raise DataError(f"refusing archive {archive.name}: {problem}")
        if info.is_dir() or _is_junk_entry(info.filename):
            continue
        keep.append(info)
        total += info.file_size
        if len(keep) > limits.max_files:
            raise DataError(
                f"refusing archive {archive.name}: more than {limits.max_files} files (raise the file-count cap if this is expected)"
            )
        if total > limits.max_total_bytes:
            raise DataError(
                f"refusing archive {archive.name}: uncompressed size exceeds the cap of {limits.max_total_bytes} bytes"
            )
    return keep


def safe_extract(archive: Path, target: Path, limits: ExtractLimits = ExtractLimits()) -> Path:
    """Extract ``archive`` into ``target`` (created; must not exist yet) and return ``target``.

    Entries are validated first (see :func:`check_archive`); bytes actually written are counted too,
    because a zip header can lie about sizes.
    """
    archive, target = Path(archive), Path(target)
    entries = check_archive(archive, limits)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    root = tmp.resolve()
    try:
        written = 0
        with zipfile.ZipFile(archive) as zf:
            for info in entries:
                dest = (tmp / info.filename.replace("\\", "/")).resolve()
                if root not in dest.parents:  # belt and braces after _entry_problem
                    raise DataError(f"refusing archive {archive.name}: entry {info.filename!r} escapes the target folder")
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(dest, "wb") as out:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > limits.max_total_bytes:
                            raise DataError(
                                f"refusing archive {archive.name}: uncompressed size exceeds the cap of {limits.max_total_bytes} bytes"
                            )
                        out.write(chunk)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _archive_key(archive: Path) -> str:
    st = archive.stat()
    return hashlib.sha256(f"{archive.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]


def extract_cached(archive: Path, work_dir: Path, limits: ExtractLimits) -> Path:
    """Extract once per archive version: re-runs reuse ``work_dir/extract/<name>-<key>``."""
    target = work_dir / "extract" / f"{archive.stem}-{_archive_key(archive)}"
    if target.is_dir():
        return target
    return safe_extract(archive, target, limits)


# --------------------------------------------------------------------------- discovery


def _children(folder: Path) -> tuple[list[Path], list[Path]]:
    """(sub-folders, files) of ``folder``, sorted, without junk or hidden entries."""
    dirs, files = [], []
    for entry in sorted(folder.iterdir()):
        if is_junk(entry.name) or entry.name.startswith("."):
            continue
        (dirs if entry.is_dir() else files).append(entry)
    return dirs, files


def _walk_files(folder: Path) -> list[Path]:
    dirs, files = _children(folder)
    out = list(files)
    for d in dirs:
        out.extend(_walk_files(d))
    return out


def _expand_zips(folder: Path, work_dir: Path, limits: ExtractLimits, depth: int = 0) -> list[tuple[Path, str]]:
    """Folders to search: ``folder`` plus every zip found inside it, extracted (hint = zip stem)."""
    roots: list[tuple[Path, str]] = [(folder, "")]
    if depth >= _MAX_ZIP_DEPTH:
        return roots
    for f in _walk_files(folder):
        if f.suffix.lower() == ".zip":
            extracted = extract_cached(f, work_dir, limits)
            for sub, hint in _expand_zips(extracted, work_dir, limits, depth + 1):
                roots.append((sub, hint or f.stem.lower()))
    return roots


def _dirs_named(roots: list[Path], names: tuple[str, ...]) -> list[Path]:
    """All folders called one of ``names`` under ``roots``, shallowest first."""
    found: list[tuple[int, Path]] = []
    for root in roots:
        stack = [(root, 0)]
        while stack:
            folder, depth = stack.pop()
            for d in _children(folder)[0]:
                if d.name.lower() in names:
                    found.append((depth, d))
                stack.append((d, depth + 1))
    return [p for _, p in sorted(found, key=lambda t: (t[0], str(t[1])))]


def _descend(folder: Path) -> Path:
    """Skip wrapper folders such as ``train/train/`` down to the folder holding the classes."""
    while True:
        dirs, files = _children(folder)
        images = [f for f in files if is_image_name(f.name)]
        if len(dirs) == 1 and not images and _children(dirs[0])[0]:
            folder = dirs[0]
        else:
            return folder


def _check_label(label: str, where: str) -> str:
    label = label.strip()
    if not label or label in (".", "..") or "/" in label or "\\" in label:
        raise DataError(f"{where}: label {label!r} cannot be used as a class folder name")
    return label


def _from_class_folders(root: Path, plan: SourcePlan) -> None:
    dirs, _ = _children(root)
    for class_dir in dirs:
        if class_dir.name.lower() in TEST_DIR_NAMES:
            continue
        label = _check_label(class_dir.name, str(class_dir))
        for f in _walk_files(class_dir):
            rel = f.relative_to(class_dir).as_posix()
            if is_image_name(f.name):
                plan.train.append(PlannedFile(f, f"train/{label}/{rel}", label, "train"))
            else:
                plan.ignored.append(str(f))


def _from_test_folder(root: Path, plan: SourcePlan) -> None:
    for f in _walk_files(root):
        if is_image_name(f.name):
            plan.test.append(PlannedFile(f, f"test/{f.relative_to(root).as_posix()}", "", "test"))
        else:
            plan.ignored.append(str(f))


def _read_rows(csv_path: Path) -> list[list[str]]:
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            return [row for row in csv.reader(fh) if row and any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {csv_path}: {exc}") from None


def _labels_for_flat(images: list[Path], csv_files: list[Path]) -> dict[Path, str] | None:
    """Kaggle-style flat ``train/`` + ``labels.csv`` (id,label): match ids to file names or stems."""
    by_key = {}
    for f in images:
        by_key.setdefault(f.name, f)
        by_key.setdefault(f.stem, f)
    for csv_path in csv_files:
        rows = _read_rows(csv_path)
        if len(rows) < 2 or len(rows[0]) < 2:
            continue
        header = [h.strip().lower() for h in rows[0]]
        col = next((header.index(c) for c in LABEL_COLUMNS if c in header), 1)
        matched = {by_key[r[0].strip()]: r[col] for r in rows[1:] if len(r) > col and r[0].strip() in by_key}
        if len(matched) >= 0.5 * len(images):
            return {f: _check_label(lbl, str(csv_path)) for f, lbl in matched.items()}
    return None


def _unique_rel(label: str, src: Path, taken: set[str]) -> str:
    rel = f"train/{label}/{src.name}"
    n = 1
    while rel in taken:
        rel = f"train/{label}/{src.stem}__{n}{src.suffix}"
        n += 1
    taken.add(rel)
    return rel


def discover_csv(csv_path: Path) -> SourcePlan:
    """A CSV of ``path,label`` rows (header optional); relative paths are relative to the CSV's folder."""
    rows = _read_rows(csv_path)
    if rows and rows[0][0].strip().lower() in ("path", "file", "filename", "image", "filepath", "id"):
        rows = rows[1:]
    plan, taken = SourcePlan(), set()
    for n, row in enumerate(rows, start=2):
        if len(row) < 2:
            raise DataError(f"{csv_path} row {n}: expected 'path,label', got {','.join(row)!r}")
        src = Path(row[0].strip())
        src = src if src.is_absolute() else csv_path.parent / src
        if not src.is_file():
            raise DataError(f"{csv_path} row {n}: file not found: {row[0].strip()}")
        label = _check_label(row[1], f"{csv_path} row {n}")
        plan.train.append(PlannedFile(src, _unique_rel(label, src, taken), label, "train"))
    if not plan.train:
        raise DataError(f"{csv_path} lists no images (expected rows of 'path,label')")
    return plan


def _find_sample_submission(roots: list[Path]) -> Path | None:
    hits = [
        f
        for root in roots
        for f in _walk_files(root)
        if f.suffix.lower() == ".csv" and f.stem.lower().replace("_", "") in ("samplesubmission", "samplesub")
    ]
    return min(hits, key=lambda p: (len(p.parts), str(p))) if hits else None


def _train_from(folder: Path, roots: list[Path], plan: SourcePlan) -> None:
    folder = _descend(folder)
    dirs, files = _children(folder)
    flat = [f for f in files if is_image_name(f.name)]
    if flat and not [d for d in dirs if d.name.lower() not in TEST_DIR_NAMES]:
        csvs = [f for r in roots for f in _walk_files(r) if f.suffix.lower() == ".csv" and "sample" not in f.stem.lower()]
        labels = _labels_for_flat(flat, csvs)
        if labels is None:
            raise DataError(
                f"{folder} holds images directly but no CSV maps their names to labels; "
                "use one folder per class or pass a CSV of path,label"
            )
        taken: set[str] = set()
        for f in flat:
            if f in labels:
                plan.train.append(PlannedFile(f, _unique_rel(labels[f], f, taken), labels[f], "train"))
            else:
                plan.ignored.append(str(f))
        return
    _from_class_folders(folder, plan)


def discover(src: Path, work_dir: Path, limits: ExtractLimits = ExtractLimits()) -> SourcePlan:
    """Find train/test/sample_submission in ``src`` (folder, zip or CSV); zips are extracted into ``work_dir``."""
    src = Path(src)
    if not src.exists():
        raise DataError(f"source not found: {src}")
    if src.is_file() and src.suffix.lower() == ".csv":
        return discover_csv(src)
    if src.is_file() and src.suffix.lower() == ".zip":
        roots_h = [(p, h or src.stem.lower()) for p, h in _expand_zips(extract_cached(src, work_dir, limits), work_dir, limits)]
    elif src.is_dir():
        roots_h = _expand_zips(src, work_dir, limits)
    else:
        raise DataError(f"source must be a folder, a .zip or a .csv of path,label: {src}")
    roots = [r for r, _ in roots_h]
    plan = SourcePlan(sample_submission=_find_sample_submission(roots))

    train_dirs = _dirs_named(roots, TRAIN_DIR_NAMES) or [r for r, h in roots_h if h in TRAIN_DIR_NAMES]
    test_dirs = _dirs_named(roots, TEST_DIR_NAMES) or [r for r, h in roots_h if h in TEST_DIR_NAMES]
    if train_dirs:
        _train_from(train_dirs[0], roots, plan)
    else:
        for root in roots:  # a bare folder of class folders (possibly wrapped, e.g. a zip of "demo-data/")
            _from_class_folders(_descend(root), plan)
            if plan.train:
                break
    if test_dirs:
        _from_test_folder(_descend(test_dirs[0]), plan)
    if not plan.train:
        raise DataError(
            f"no training images found in {src}: expected class folders (train/<class>/*.jpg), "
            "a train.zip, or a CSV of path,label"
        )
    return plan

