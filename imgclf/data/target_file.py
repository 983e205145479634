"""The label sets or values of a prepared dataset: ``train.csv`` beside the flat ``train/`` folder, and ``targets.json``.

``imgclf prepare`` sorts images with one class each into class folders; images with a set of labels or a value
go flat into ``train/`` and their targets into ``train.csv``, in one layout whatever the source's was:

- multilabel: ``path,<label 1>,...,<label K>`` with a 0/1 column per label (in the source's label order);
- regression: ``path,<target>`` with the value.

``targets.json`` (``{"task": "multilabel", "layout": "tags", "column": null}``) says which, so a forced task
(``--task regression`` on integer grades) reads back the same, and marks ``train.csv`` as prepare's own: a later
prepare of classes into the same folder removes both. Training reads them with the manifest's verdicts
(:func:`imgclf.data.samples.load_training_set`).

Example::

    write_target_file(out, Task("regression", ("price",), layout="numeric"), {"train/0001.png": (12.0,)})
    read_target_file(out)   # (out / "train.csv", "regression", "price")
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from imgclf.errors import DataError
from imgclf.io import atomic_write_text
from imgclf.task import Task

TARGETS_CSV = "train.csv"
TARGETS_JSON = "targets.json"


def write_target_file(out: Path, task: Task, rows: dict[str, tuple[float, ...]]) -> Path:
    """Write ``train.csv`` (one row per ``rel``, sorted) and ``targets.json`` into ``out``; returns the CSV's path."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", *task.names])
    for rel in sorted(rows):
        if task.kind == "multilabel":
            writer.writerow([rel, *(int(round(v)) for v in rows[rel])])
        else:
            writer.writerow([rel, format(rows[rel][0], ".9g")])
    atomic_write_text(out / TARGETS_CSV, buffer.getvalue())
    column = task.names[0] if task.kind == "regression" else None
    atomic_write_text(out / TARGETS_JSON, json.dumps({"task": task.kind, "layout": task.layout, "column": column}))
    return out / TARGETS_CSV


def read_target_file(root: Path) -> tuple[Path, str, str | None] | None:
    """(``train.csv``, task, target column) of a prepared dataset of label sets or values; None for classes."""
    marker = Path(root) / TARGETS_JSON
    if not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
        task, column = data["task"], data.get("column")
    except (OSError, ValueError, KeyError, TypeError):
        raise DataError(f"cannot read {marker}; re-run `imgclf prepare`") from None
    if task not in ("multilabel", "regression") or not (Path(root) / TARGETS_CSV).is_file():
        raise DataError(f"{marker} names no {TARGETS_CSV} of label sets or values; re-run `imgclf prepare`")
    return Path(root) / TARGETS_CSV, task, column


def remove_target_file(out: Path) -> None:
    """Remove the files :func:`write_target_file` wrote (a prepare of classes into an earlier one's folder)."""
    if (out / TARGETS_JSON).is_file():
        (out / TARGETS_CSV).unlink(missing_ok=True)
        (out / TARGETS_JSON).unlink()
