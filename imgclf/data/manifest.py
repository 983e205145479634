"""The manifest: one CSV row per file of a prepared dataset; everything downstream reads it.

Columns (``MANIFEST_COLUMNS``): ``path`` (relative to the dataset folder, posix), ``label`` (class;
empty for test), ``split`` (train|test|holdout: see imgclf.data.holdout), ``sha256``, ``bytes``, ``width``/``height`` (after EXIF
orientation), ``mode``, ``format``, ``phash`` (hex), ``flags`` (';'-joined), ``reasons``,
``dup_group`` (shared by identical files and pixel-verified copies of one capture, across train
and test, and by look-alikes too when prepared with ``--group-lookalikes``; the split and the CV folds
keep a group on one side; empty when unique), ``similarity`` (the strongest relation the file has:
``identical``, ``copy``, ``look-alike`` or empty), ``keep`` (the cleaning policy's verdict) and
``source`` (where the file came from; informational).

Example::

    table = read_manifest(Path("data/cars"))
    train = table[(table.split == "train") & table.keep]
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from imgclf.errors import DataError
from imgclf.io import atomic_path

MANIFEST_NAME = "manifest.csv"
MANIFEST_COLUMNS = [
    "path", "label", "split", "sha256", "bytes", "width", "height", "mode", "format",
    "phash", "flags", "reasons", "dup_group", "similarity", "keep", "source",
]  # fmt: skip
_OPTIONAL_COLUMNS = ("similarity", "source")  # absent from manifests written before them
_INT_COLUMNS = ("bytes", "width", "height")


def manifest_path(dataset_dir: Path) -> Path:
    return Path(dataset_dir) / MANIFEST_NAME


def write_manifest(dataset_dir: Path, table: pd.DataFrame) -> Path:
    """Write ``table`` (at least the manifest columns) atomically; returns the file's path."""
    missing = [c for c in MANIFEST_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"manifest table lacks columns {missing}")
    path = manifest_path(dataset_dir)
    with atomic_path(path) as tmp:
        table[MANIFEST_COLUMNS].to_csv(tmp, index=False)
    return path


def read_manifest(dataset_dir: Path) -> pd.DataFrame | None:
    """The dataset's manifest, or None when the folder was never prepared.

    Text columns come back as ``str`` (empty, never NaN), ``keep`` as bool, sizes as int.
    """
    path = manifest_path(dataset_dir)
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    missing = [c for c in MANIFEST_COLUMNS if c not in table.columns and c not in _OPTIONAL_COLUMNS]
    if missing:
        raise DataError(f"{path} lacks columns {', '.join(missing)}; re-run `imgclf prepare`")
    for col in _OPTIONAL_COLUMNS:
        if col not in table.columns:
            table[col] = ""
    try:
        for col in _INT_COLUMNS:
            table[col] = table[col].replace("", "0").astype(int)
    except ValueError as exc:
        raise DataError(f"{path}: bad number in a size column ({exc})") from None
    table["keep"] = table["keep"].str.strip().str.lower().isin(("true", "1", "yes"))
    return table
