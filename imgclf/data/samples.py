"""Find a dataset's labelled training images and test images.

A dataset is a folder with ``train/<class>/<images>`` and optionally ``test/`` and
``sample_submission.csv`` — or a labels CSV (:mod:`imgclf.data.targets`: ``path,label``, tags,
0/1 label columns or a number). When ``imgclf prepare`` made the folder, its ``manifest.csv`` is
the source of truth (cleaning verdicts and duplicate groups included); otherwise the folders are
scanned. A folder in Kaggle's layout — images directly in ``train/`` (or no ``train/``) and a
labels CSV at its top (``train.csv``, ``labels.csv``, ``train_labels.csv``) — is read through the CSV.

Multilabel and regression sets keep their targets in ``TrainingSet.targets``; their ``labels``
are stratification keys, so code that stratifies by ``labels`` keeps working: a regression
target's quantile bin (:func:`regression_strata`), a multilabel row's rarest positive label
(``K``, one past the last label, for a row with none; :func:`multilabel_strata`).
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.data.images import IMAGE_EXTENSIONS, is_image_name
from imgclf.data.outdir import dataset_state
from imgclf.data.target_file import read_target_file
from imgclf.data.targets import TargetTable, read_targets
from imgclf.errors import DataError

log = logging.getLogger("imgclf")

KAGGLE_LABEL_CSVS = ("train.csv", "labels.csv", "train_labels.csv")  # first found wins


@dataclass
class TrainingSet:
    """Labelled images: ``paths[i]`` has class ``classes[labels[i]]``; ``groups[i]`` ties duplicates together.

    For ``task`` multilabel or regression, ``targets[i]`` is the row's target (float32: ``K`` 0/1 values, or
    one number), ``classes`` the output names and ``labels`` stratification keys (see the module docstring).
    """

    root: Path
    paths: list[Path]
    labels: list[int]
    classes: list[str]
    groups: list[str]
    excluded: list[dict] = field(default_factory=list)
    task: str = "multiclass"
    targets: np.ndarray | None = None
    found: str = ""

    def rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()


def _check_classes(counts: dict[str, int], where: Path) -> None:
    if len(counts) < 2:
        raise DataError(f"{where} needs at least two classes (one sub-folder per class); found {len(counts)}")
    empty = sorted(name for name, n in counts.items() if n == 0)
    if empty:
        raise DataError(f"class folder(s) with no images in {where}: {', '.join(empty)}")


def _scan_folders(root: Path) -> list[tuple[Path, str]]:
    train = root / "train"
    if not train.is_dir():
        raise DataError(
            f"{root} has no train/ folder: a dataset is train/<class>/<images> (plus optional test/ and "
            "sample_submission.csv), a folder of images with train.csv at its top, or a labels CSV"
        )
    items: list[tuple[Path, str]] = []
    counts: dict[str, int] = {}
    for class_dir in sorted(p for p in train.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(
            p for p in class_dir.rglob("*") if p.is_file() and is_image_name(p) and not p.name.startswith(".")
        )
        counts[class_dir.name] = len(files)
        items.extend((f, class_dir.name) for f in files)
    _check_classes(counts, train)
    return items


def load_training_set(
    dataset: Path, blocklist: Path | None = None, task: str = "auto", target_column: str | None = None
) -> TrainingSet:
    """All usable labelled images of ``dataset`` (a folder or a labels CSV).

    Honours the manifest's cleaning verdicts and the blocklist in force (``blocklist``, or
    ``<dataset>/blocklist.csv`` when present). What is left out is listed in ``excluded``.
    ``task`` and ``target_column`` say how to read a labels CSV (:func:`imgclf.data.targets.read_targets`).
    """
    dataset = Path(dataset)
    if not dataset.exists():
        raise DataError(f"dataset not found: {dataset}")
    root = dataset.parent if dataset.is_file() else dataset
    if dataset.is_dir() and dataset_state(root) == "preparing":
        raise DataError(f"dataset {root} is incomplete: an `imgclf prepare` into it did not finish; run it again")
    if dataset.is_file() and dataset.suffix.lower() != ".csv":
        raise DataError(f"dataset {dataset} is a file but not a CSV of path,label")
    manifest = _read_manifest(root) if dataset.is_dir() else None
    prepared = read_target_file(root) if manifest is not None else None
    if prepared is not None:  # label sets or values that `imgclf prepare` wrote
        csv_path, kind, column = prepared
        if task not in ("auto", kind):
            raise DataError(
                f"{root} was prepared for {kind} targets; data.task={task} needs `imgclf prepare --task {task}`"
            )
        return _from_table(root, csv_path, read_targets(csv_path, kind, target_column or column), blocklist, manifest)
    labels_csv = dataset if dataset.is_file() else None if manifest is not None else _kaggle_labels_csv(root)
    if labels_csv is not None:
        return _from_table(root, labels_csv, read_targets(labels_csv, task, target_column), blocklist)
    if task not in ("auto", "multiclass"):
        raise DataError(f"task={task} needs a labels CSV; {root} holds one sub-folder per class")
    excluded: list[dict] = []
    groups: dict[Path, str] = {}
    hashes: dict[Path, str] = {}
    if manifest is not None:
        items = _manifest_items(root, manifest, excluded, groups, hashes)
    else:
        items = _scan_folders(root)
    items = _apply_blocklist(root, items, blocklist, hashes, excluded)
    return _class_set(root, items, groups, excluded)


def _class_set(root: Path, items: list[tuple[Path, str]], groups: dict[Path, str], excluded: list[dict]):
    classes = sorted({lbl for _, lbl in items})
    index = {name: i for i, name in enumerate(classes)}
    paths = [p for p, _ in items]
    return TrainingSet(
        root=root,
        paths=paths,
        labels=[index[lbl] for _, lbl in items],
        classes=classes,
        groups=[groups.get(p, f"#{i}") for i, p in enumerate(paths)],
        excluded=excluded,
    )


def _kaggle_labels_csv(root: Path) -> Path | None:
    """The labels CSV of a folder in Kaggle's layout (no class sub-folders in ``train/``), else None."""
    train = root / "train"
    if train.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in train.iterdir()):
        return None
    return next((root / name for name in KAGGLE_LABEL_CSVS if (root / name).is_file()), None)


def _from_table(root: Path, csv_path: Path, table: TargetTable, blocklist: Path | None, manifest=None) -> TrainingSet:
    """The training set of a labels CSV: multiclass exactly as class folders give it; otherwise targets kept
    (with a prepared dataset's ``manifest``: its kept rows, in their duplicate groups)."""
    excluded: list[dict] = []
    if table.task == "multiclass":
        items = [(path, table.names[v]) for path, v in zip(table.paths, table.values)]
        counts: dict[str, int] = {}
        for _, lbl in items:
            counts[lbl] = counts.get(lbl, 0) + 1
        _check_classes(counts, csv_path)
        result = _class_set(root, _apply_blocklist(root, items, blocklist, {}, excluded), {}, excluded)
        result.found = table.found
        return result
    groups: dict[Path, str] = {}
    hashes: dict[Path, str] = {}
    items = list(zip(table.paths, range(len(table.paths))))
    if manifest is not None:
        kept_rows = {path for path, _ in _manifest_items(root, manifest, excluded, groups, hashes, check=False)}
        items = [(path, i) for path, i in items if path in kept_rows]
    kept = _apply_blocklist(root, items, blocklist, hashes, excluded)
    targets = table.values[np.array([i for _, i in kept], dtype=np.int64)]
    labels = regression_strata(targets) if table.task == "regression" else multilabel_strata(targets)
    paths = [p for p, _ in kept]
    return TrainingSet(
        root=root,
        paths=paths,
        labels=labels,
        classes=list(table.names),
        groups=[groups.get(p, f"#{i}") for i, p in enumerate(paths)],
        excluded=excluded,
        task=table.task,
        targets=targets,
        found=table.found,
    )


def regression_strata(values, bins: int = 10) -> list[int]:
    """Quantile-bin index of each value (``bins`` bins, fewer when there are fewer distinct values), numbered
    0.. without gaps: the stratification key of a regression target.

    >>> regression_strata([1.0, 2.0, 3.0, 4.0], bins=2)
    [0, 0, 1, 1]
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if not len(v):
        return []
    bins = max(1, min(bins, len(np.unique(v))))
    edges = np.quantile(v, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    raw = np.searchsorted(edges, v, side="left")
    return np.unique(raw, return_inverse=True)[1].reshape(-1).astype(int).tolist()


def multilabel_strata(targets) -> list[int]:
    """Per row, the index of its rarest positive label (ties: the first), ``K`` for a row with none: the
    stratification key of a multilabel target, so a rare label is spread over the splits like a class.

    >>> multilabel_strata([[1, 1], [1, 0], [0, 0]])
    [1, 0, 2]
    """
    t = np.asarray(targets) > 0.5
    if t.ndim != 2 or not len(t):
        return []
    order = np.where(t, t.sum(axis=0)[None, :], np.inf)
    keys = order.argmin(axis=1)
    keys[~t.any(axis=1)] = t.shape[1]
    return keys.astype(int).tolist()


def _manifest_items(
    root: Path, manifest, excluded: list[dict], groups: dict[Path, str], hashes: dict[Path, str], check: bool = True
) -> list[tuple[Path, str]]:
    """The manifest's kept training rows; dropped ones go to ``excluded`` with their reason (``check``: every class
    keeps enough images)."""
    items = []
    for row in manifest[manifest["split"] == "train"].itertuples(index=False):
        path = root / row.path
        if not _truthy(row.keep):
            excluded.append({"path": row.path, "reason": str(row.reasons or row.flags or "dropped by cleaning policy")})
            continue
        items.append((path, str(row.label)))
        if isinstance(row.dup_group, str) and row.dup_group:
            groups[path] = row.dup_group
        hashes[path] = str(row.sha256)
    if check:
        counts: dict[str, int] = {}
        for _, lbl in items:
            counts[lbl] = counts.get(lbl, 0) + 1
        _check_classes(counts, root / "manifest.csv")
    return items


def _apply_blocklist(
    root: Path, items: list[tuple[Path, Any]], blocklist: Path | None, hashes: dict[Path, str], excluded: list[dict]
) -> list[tuple[Path, Any]]:
    """Leave out what the blocklist in force names (``blocklist``, or ``<root>/blocklist.csv``)."""
    blocklist_path = Path(blocklist) if blocklist else root / "blocklist.csv"
    if blocklist is not None and not blocklist_path.is_file():
        raise DataError(f"blocklist file not found: {blocklist_path}")
    if not blocklist_path.is_file():
        return items
    from imgclf.data.blocklist import load_blocklist

    blocked = load_blocklist(blocklist_path)
    kept = []
    for path, lbl in items:
        rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()
        reason = blocked.reason(rel, hashes.get(path))
        if reason is None:
            kept.append((path, lbl))
        else:
            excluded.append({"path": rel, "reason": f"blocklist: {reason}"})
    if len(kept) < len(items):
        log.info("blocklist %s removed %d image(s)", blocklist_path, len(items) - len(kept), extra={"once": True})
    return kept


def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _read_manifest(root: Path):
    if not (root / "manifest.csv").is_file():
        return None
    from imgclf.data.manifest import read_manifest

    return read_manifest(root)


def list_test_images(folder: Path) -> list[Path]:
    """Image files directly or recursively under ``folder``, sorted by relative path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_name(p) and not p.name.startswith("."))
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {folder}")
    return files


def resolve_test_images(sources: str | Path | Sequence[str | Path]) -> tuple[list[Path], Path]:
    """The images named by folders, files and glob patterns, and the folder their ids are relative to.

    One folder gives its images (recursively) and itself as the base; otherwise the base is the
    deepest folder holding every file. A pattern (``test/*.jpg``, ``test/**/*.tif``) is expanded here,
    so a quoted glob works as well as one the shell expanded.

    >>> paths, base = resolve_test_images(["data/test/0001.jpg", "data/test/0002.jpg"])  # doctest: +SKIP
    >>> base
    PosixPath('data/test')
    """
    items = [sources] if isinstance(sources, (str, Path)) else list(sources)
    if not items:
        raise DataError("no images given: pass a folder, image files or a glob pattern")
    if len(items) == 1 and Path(items[0]).is_dir():
        folder = Path(items[0])
        return list_test_images(folder), folder
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found.extend(list_test_images(path))
        elif path.is_file():
            if not is_image_name(path):
                raise DataError(f"{path} is not an image file ({', '.join(IMAGE_EXTENSIONS)})")
            found.append(path)
        elif glob.has_magic(str(item)):
            matches = [Path(m) for m in sorted(glob.glob(str(item), recursive=True))]
            images = [m for m in matches if m.is_file() and is_image_name(m)]
            if not images:
                raise DataError(f"no images match the pattern {item}")
            found.extend(images)
        else:
            raise DataError(f"image file or folder not found: {path}")
    unique = sorted(set(found), key=lambda p: p.as_posix())
    base = Path(os.path.commonpath([p.resolve().parent for p in unique]))
    return [p.resolve() for p in unique], base
