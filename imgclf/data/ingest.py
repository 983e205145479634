"""Turn a source (competition download, folder of class folders, CSV of path,label) into a file plan.

Two jobs, both without touching the source:

* zips in the source are unpacked by :mod:`imgclf.data.archives` (safe unzip, one budget for the
  whole ingest, nested archives included);
* ``discover`` finds the training images (with labels), the test images and ``sample_submission.csv``
  in whatever nesting the download uses, and returns a :class:`SourcePlan` of
  ``(source file, destination path inside the prepared dataset)`` pairs.

Only files inside the source are taken: folder links are never followed (they are listed in
``SourcePlan.ignored``), and a file link or a CSV row that resolves outside the source is refused
unless ``allow_outside`` is set. Non-image files are listed in ``ignored``, never taken; a CSV row
naming a credential-like file (``kaggle.json``, ``.netrc``, ``*.pem``, ``id_rsa*``, ``.env``) stops
the ingest.

Example::

    plan = discover(Path("downloads/stanford-cars"), work_dir=out / ".imgclf-work")
    plan.train[0]  # PlannedFile(src=Path(".../train/audi/001.jpg"), rel="train/audi/001.jpg", label="audi")
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from imgclf.data.archives import (
    ExtractBudget,
    ExtractLimits,
    check_archive,
    extract_cached,
    is_credential_name,
    is_junk,
    safe_extract,
)
from imgclf.data.csvlist import header_columns, read_path_label_csv, read_rows
from imgclf.data.images import is_image_name
from imgclf.data.targets import id_cells, read_target_ids, read_targets
from imgclf.errors import DataError
from imgclf.task import Task

__all__ = [
    "ExtractLimits", "PlannedFile", "SourcePlan", "check_archive", "discover", "discover_csv", "is_junk", "safe_extract",
]  # fmt: skip

log = logging.getLogger("imgclf")

NO_LABELS = "(no label)"  # the manifest's label of an image whose label set is empty

TRAIN_DIR_NAMES = ("train", "training", "train_images", "trainset")
TEST_DIR_NAMES = ("test", "testing", "test_images", "testset")
_MAX_ZIP_DEPTH = 3


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
    ignored: list[str] = field(default_factory=list)  # non-image files and links we skipped, for the report
    task: Task | None = None  # label sets or values (their files go flat into train/); None: one class per image
    targets: dict[str, tuple[float, ...]] = field(default_factory=dict)  # with ``task``: each train rel's target row

    @property
    def files(self) -> list[PlannedFile]:
        return self.train + self.test


def _inside(path: Path, root: Path) -> bool:
    """True when ``path`` (links resolved) lies inside ``root`` (resolved)."""
    return path.resolve().is_relative_to(root)


# --------------------------------------------------------------------------- discovery


def _children(folder: Path) -> tuple[list[Path], list[Path]]:
    """(sub-folders, files) of ``folder``, sorted, without junk or hidden entries."""
    dirs, files = [], []
    for entry in sorted(folder.iterdir()):
        if is_junk(entry.name) or entry.name.startswith("."):
            continue
        if entry.is_symlink() and entry.is_dir():
            continue  # folder links are never followed: a loop multiplies files, a link out pulls in others
        (dirs if entry.is_dir() else files).append(entry)
    return dirs, files


def _walk_files(folder: Path) -> list[Path]:
    dirs, files = _children(folder)
    out = list(files)
    for d in dirs:
        out.extend(_walk_files(d))
    return out


def _expand_zips(folder: Path, work_dir: Path, budget: ExtractBudget, depth: int = 0) -> list[tuple[Path, str]]:
    """Folders to search: ``folder`` plus every zip found inside it, extracted (hint = zip stem).

    The source's own zips (depth 0) set the budget's size allowance; nested ones only draw on it.
    """
    roots: list[tuple[Path, str]] = [(folder, "")]
    if depth >= _MAX_ZIP_DEPTH:
        return roots
    zips = [f for f in _walk_files(folder) if f.suffix.lower() == ".zip" and not f.is_symlink()]
    if depth == 0:
        for f in zips:
            budget.add_source_archive(f.stat().st_size)
    for f in zips:
        extracted = extract_cached(f, work_dir, budget)
        for sub, hint in _expand_zips(extracted, work_dir, budget, depth + 1):
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
    bad_chars = "/" in label or "\\" in label or any(ord(c) < 32 for c in label)
    if not label or label in (".", "..") or bad_chars or len(label.encode("utf-8", "surrogateescape")) > 200:
        raise DataError(f"{where}: label {label[:60]!r} cannot be used as a class folder name")
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


_Targets = tuple[Task, dict[Path, tuple[float, ...]]]  # a labels CSV's task and each matched file's target row


def _labels_for_flat(
    images: list[Path], csv_files: list[Path], task: str = "auto", target_column: str | None = None
) -> tuple[dict[Path, str], _Targets | None] | None:
    """Kaggle-style flat ``train/`` + ``labels.csv`` (id,label): match ids to file names or stems.

    A CSV of label sets or values (:func:`imgclf.data.targets.read_target_ids`; ``task`` and ``target_column``
    as in training) gives each matched file its target's text (the manifest's label), with the task and each
    file's target row; a CSV of classes, each file's class.

    The header rule is :func:`imgclf.data.csvlist.header_columns` (default: id first, label second).
    A blank label, or one id given two labels, is refused naming the row.
    """
    by_key = {}
    for f in images:
        by_key.setdefault(f.name, f)
        by_key.setdefault(f.stem, f)
    for csv_path in csv_files:
        rows = read_rows(csv_path)
        if len(rows) < 2 or len(rows[0][1]) < 2:
            continue
        if len({i for i in id_cells(csv_path) if i in by_key}) >= 0.5 * len(images):
            table = read_target_ids(csv_path, task, target_column)  # this is the labels CSV: its faults are said
            if table is not None:
                kind = Task(table.task, tuple(table.names), layout=table.layout)
                rows_of = {
                    by_key[i]: tuple(float(x) for x in v) for i, v in zip(table.ids, table.values) if i in by_key
                }
                return {f: kind.target_text(v) or NO_LABELS for f, v in rows_of.items()}, (kind, rows_of)
        id_col, label_col = header_columns(rows[0][1]) or (0, 1)
        matched: dict[Path, tuple[str, int]] = {}
        for line, row in rows[1:]:
            if len(row) <= max(id_col, label_col) or row[id_col].strip() not in by_key:
                continue
            f, label = by_key[row[id_col].strip()], _check_label(row[label_col], f"{csv_path} row {line}")
            first = matched.setdefault(f, (label, line))
            if first[0] != label:
                raise DataError(
                    f"{csv_path} row {line}: {row[id_col].strip()[:80]!r} has two labels "
                    f"(row {first[1]}: {first[0][:40]!r}, row {line}: {label[:40]!r})"
                )
        if len(matched) >= 0.5 * len(images):
            return {f: label for f, (label, _) in matched.items()}, None
    return None


def _unique_rel(label: str, src: Path, taken: set[str]) -> str:
    """``train/<label>/<name>`` (``train/<name>`` for no label), numbered when the name is taken."""
    folder = f"train/{label}/" if label else "train/"
    rel = f"{folder}{src.name}"
    n = 1
    while rel in taken:
        rel = f"{folder}{src.stem}__{n}{src.suffix}"
        n += 1
    taken.add(rel)
    return rel


def discover_csv(
    csv_path: Path, allow_outside: bool = False, task: str = "auto", target_column: str | None = None
) -> SourcePlan:
    """A CSV of ``path,label`` rows (see :mod:`imgclf.data.csvlist`), or of label sets or values (``task`` and
    ``target_column`` as in :func:`imgclf.data.targets.read_targets`); relative paths are relative to its folder.

    Paths that resolve outside the CSV's folder are refused unless ``allow_outside``; non-image files
    are listed in ``ignored``; a credential-like file stops the ingest.
    """
    base = csv_path.parent.resolve()
    if read_target_ids(csv_path, task, target_column) is not None:
        return _targets_plan(csv_path, base, allow_outside, task, target_column)
    plan, taken = SourcePlan(), set()
    for row in read_path_label_csv(csv_path):
        where = f"{csv_path} row {row.line}"
        if not _listed_image(row.path, row.raw, where, base, allow_outside):
            plan.ignored.append(str(row.path))
            continue
        label = _check_label(row.label, where)
        plan.train.append(PlannedFile(row.path.resolve(), _unique_rel(label, row.path, taken), label, "train"))
    if not plan.train:
        raise DataError(f"{csv_path} lists no images (expected rows of 'path,label')")
    return plan


def _targets_plan(csv_path: Path, base: Path, allow_outside: bool, task: str, target_column: str | None) -> SourcePlan:
    """The plan of a CSV of label sets or values: its images flat under ``train/``, each with its target row."""
    table = read_targets(csv_path, task, target_column)
    plan, taken = SourcePlan(task=Task(table.task, tuple(table.names), layout=table.layout)), set()
    for raw, path, value in zip(table.ids, table.paths, table.values):
        if not _listed_image(path, raw, f"{csv_path} ({raw[:80]!r})", base, allow_outside):
            plan.ignored.append(str(path))
            continue
        rel = _unique_rel("", path, taken)
        plan.train.append(PlannedFile(path.resolve(), rel, plan.task.target_text(value) or NO_LABELS, "train"))
        plan.targets[rel] = tuple(float(x) for x in value)
    if not plan.train:
        raise DataError(f"{csv_path} lists no images")
    return plan


def _listed_image(path: Path, raw: str, where: str, base: Path, allow_outside: bool) -> bool:
    """Whether a file a CSV row names is an image to take; a credential, a file outside ``base`` (unless
    ``allow_outside``) or a missing file is refused in one line."""
    if is_credential_name(path.name):
        raise DataError(f"{where}: refusing credential-like file {raw[:120]!r}; it must never be copied into a dataset")
    if not allow_outside and not _inside(path, base):
        raise DataError(
            f"{where}: {raw[:120]!r} is outside the CSV's folder {base}; move it in, or pass --allow-outside"
        )
    if not path.is_file():
        raise DataError(f"{where}: file not found: {raw[:120]}")
    return is_image_name(path.name)


def _find_sample_submission(roots: list[Path]) -> Path | None:
    hits = [
        f
        for root in roots
        for f in _walk_files(root)
        if f.suffix.lower() == ".csv" and f.stem.lower().replace("_", "") in ("samplesubmission", "samplesub")
    ]
    return min(hits, key=lambda p: (len(p.parts), str(p))) if hits else None


def _train_from(
    folder: Path, roots: list[Path], plan: SourcePlan, task: str = "auto", target_column: str | None = None
) -> None:
    folder = _descend(folder)
    dirs, files = _children(folder)
    flat = [f for f in files if is_image_name(f.name)]
    if flat and not [d for d in dirs if d.name.lower() not in TEST_DIR_NAMES]:
        csvs = [
            f for r in roots for f in _walk_files(r) if f.suffix.lower() == ".csv" and "sample" not in f.stem.lower()
        ]
        found = _labels_for_flat(flat, csvs, task, target_column)
        if found is None:
            raise DataError(
                f"{folder} holds images directly but no CSV maps their names to labels; "
                "use one folder per class or pass a CSV of path,label"
            )
        labels, targets = found
        taken: set[str] = set()
        for f in flat:
            if f not in labels:
                plan.ignored.append(str(f))
            elif targets is None:
                plan.train.append(PlannedFile(f, _unique_rel(labels[f], f, taken), labels[f], "train"))
            else:
                rel = _unique_rel("", f, taken)
                plan.train.append(PlannedFile(f, rel, labels[f], "train"))
                plan.targets[rel] = targets[1][f]
        if targets is not None:
            plan.task = targets[0]
        return
    _from_class_folders(folder, plan)


def _free_bytes(folder: Path) -> int:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def _folder_links(src: Path) -> list[str]:
    """Folder links under ``src`` (not followed), to list in the plan."""
    links = []
    for folder, dirs, _ in os.walk(src):
        links.extend(os.path.join(folder, d) for d in dirs if os.path.islink(os.path.join(folder, d)))
    return sorted(links)


def _drop_outside_links(plan: SourcePlan, root: Path) -> None:
    """File links that resolve outside the source are listed, not taken."""
    for name in ("train", "test"):
        keep = []
        for f in getattr(plan, name):
            if f.src.is_symlink() and not _inside(f.src, root):
                plan.ignored.append(f"{f.src} (link to outside the source)")
            else:
                keep.append(f)
        setattr(plan, name, keep)


def discover(
    src: Path,
    work_dir: Path,
    limits: ExtractLimits = ExtractLimits(),
    allow_outside: bool = False,
    task: str = "auto",
    target_column: str | None = None,
) -> SourcePlan:
    """Find train/test/sample_submission in ``src`` (folder, zip or CSV); zips are extracted into ``work_dir``.

    Every archive, nested ones included, draws on one :class:`ExtractBudget` built from ``limits``.
    ``allow_outside`` lets CSV rows and file links point outside the source. ``task`` and ``target_column``
    say how to read a labels CSV (:func:`imgclf.data.targets.read_targets`): label sets and values give a
    plan with ``task`` set, its training files flat under ``train/``.
    """
    src = Path(src)
    if not src.exists():
        raise DataError(f"source not found: {src}")
    if src.is_file() and src.suffix.lower() == ".csv":
        plan = discover_csv(src, allow_outside, task, target_column)
        _log_ignored(plan)
        return plan
    budget = ExtractBudget(limits, free_bytes=_free_bytes(work_dir))
    if src.is_file() and src.suffix.lower() == ".zip":
        budget.add_source_archive(src.stat().st_size)
        roots_h = [
            (p, h or src.stem.lower())
            for p, h in _expand_zips(extract_cached(src, work_dir, budget), work_dir, budget, 1)
        ]
    elif src.is_dir():
        roots_h = _expand_zips(src, work_dir, budget)
    else:
        raise DataError(f"source must be a folder, a .zip or a .csv of path,label: {src}")
    roots = [r for r, _ in roots_h]
    plan = SourcePlan(sample_submission=_find_sample_submission(roots))

    train_dirs = _dirs_named(roots, TRAIN_DIR_NAMES) or [r for r, h in roots_h if h in TRAIN_DIR_NAMES]
    test_dirs = _dirs_named(roots, TEST_DIR_NAMES) or [r for r, h in roots_h if h in TEST_DIR_NAMES]
    if train_dirs:
        _train_from(train_dirs[0], roots, plan, task, target_column)
    else:
        for root in roots:  # a bare folder of class folders (possibly wrapped, e.g. a zip of "demo-data/")
            _from_class_folders(_descend(root), plan)
            if plan.train:
                break
    if test_dirs:
        _from_test_folder(_descend(test_dirs[0]), plan)
    if src.is_dir():
        plan.ignored.extend(f"{link} (folder link, not followed)" for link in _folder_links(src))
        if not allow_outside:
            _drop_outside_links(plan, src.resolve())
    _log_ignored(plan)
    if not plan.train:
        raise DataError(
            f"no training images found in {src}: expected class folders (train/<class>/*.jpg), "
            "a train.zip, or a CSV of path,label"
        )
    return plan


def _log_ignored(plan: SourcePlan) -> None:
    if plan.ignored:
        shown = ", ".join(Path(p).name for p in plan.ignored[:3])
        log.warning(
            "skipped %d file(s) that are not images or not inside the source, e.g. %s", len(plan.ignored), shown
        )
