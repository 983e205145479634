"""One reader for a labels CSV whose target is a class, a set of labels or a number.

Four layouts, one header row (only the first needs none: without a header the rows are ``path,label``):

- ``label``: one class per row (``path,label``; the multiclass of :mod:`imgclf.data.csvlist`, unchanged);
- ``tags``: several labels in one column, space-separated (Planet: ``image_name,tags`` / ``agriculture clear``);
- ``columns``: one 0/1 column per label (Plant Pathology: ``image_id,healthy,multiple_diseases,rust,scab``);
- ``numeric``: a number to regress (PetFinder: ``Id,...,Pawpularity``).

The path column is the one the header names (``image_id``, ``image_name``, ...; else the first). Columns whose
name ends in ``id`` (``PatientID``, ``patient_id``) are ids and never a target. The detection rule when
``task="auto"``, first match wins:

1. at least two other columns and every one holds only 0 and 1 → multilabel ``columns``;
2. the target column (``target_column``, else one the header names as a label — ``label``, ``tags``, ...
   — else the single numeric column that is not 0/1, else the header rule's label column) holds a cell
   of two or more space-separated tokens and more distinct cells than distinct tokens → multilabel ``tags``;
3. it holds only numbers and some is not an integer, or more than 20 distinct integers → ``regression``;
4. otherwise → ``multiclass``: digit classes ``0``..``9`` and integer grades (APTOS 0–4) stay classes.

An explicit ``task`` overrides the rule: ``regression`` on an integer column regresses it, ``multilabel``
on a column of single tokens reads tags with one tag each. Several numeric columns that are not 0/1 and
no named target is ambiguous: ``data.target_column`` must name it.

A path cell is joined with the CSV's folder when relative. A cell that names no file (Kaggle's ``train_0``
for ``train-jpg/train_0.jpg``; ``1000015157.jpg`` for ``train_images/1000015157.jpg``) is looked up by stem (by
name when it has an extension) among the image files under the CSV's folder; a cell with a folder is never.

Example::

    table = read_targets(Path("train.csv"))
    table.found   # "multilabel (tags) from column 'tags': cells of several space-separated tags; 17 labels,
                  #  2.9 per image, label frequency 1%–93%, 40479 images"
    table.values  # float32 (n, 17) of 0/1
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgclf.data.csvlist import LABEL_COLUMNS, column_index, header_columns, read_path_label_csv, read_rows
from imgclf.data.images import is_image_name
from imgclf.errors import DataError

log = logging.getLogger("imgclf")

TASKS = ("auto", "multiclass", "multilabel", "regression")
MAX_CLASS_INTEGERS = 20  # more distinct integers than this read as a number to regress, not as classes
_ID_COLUMN = re.compile(r"(^|[_\s-])u?id$", re.IGNORECASE)  # id, patient_id, study uid
_CAMEL_ID_COLUMN = re.compile(r"[a-z0-9](ID|Id|UID|Uid)$")  # PatientID, StudyInstanceUID; never "valid"
_BINARY = ("0", "1", "0.0", "1.0")


@dataclass(frozen=True)
class TargetTable:
    task: str  # "multiclass" | "multilabel" | "regression"
    layout: str  # "label" | "tags" | "columns" | "numeric"
    names: list[str]  # multiclass: sorted classes; multilabel: tags sorted or columns in file order; regression: [col]
    paths: list[Path]
    values: np.ndarray  # multiclass int64 (n,); multilabel float32 (n, K) of 0/1; regression float32 (n, 1)
    found: str  # one line: what was found and why
    ids: tuple[str, ...] = ()  # label sets and values: the path cell of each row, as written


@dataclass(frozen=True)
class _Sheet:
    """A CSV with a header: its column names, the path column and the data rows with their line numbers."""

    csv_path: Path
    header: list[str]
    path_col: int
    label_col: int  # the header rule's label column
    rows: list[tuple[int, list[str]]]
    resolve: bool = True  # find each row's file (False: ``read_target_ids``, which matches ids itself)

    def cells(self, col: int) -> list[str]:
        return [row[col].strip() if col < len(row) else "" for _, row in self.rows]


def read_targets(csv_path: Path, task: str = "auto", target_column: str | None = None) -> TargetTable:
    """The targets of ``csv_path`` in one of four layouts (see the module docstring for the detection rule)."""
    csv_path = Path(csv_path)
    if task not in TASKS:
        raise DataError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    rows = read_rows(csv_path)
    cols = _header(rows)
    if cols is None:
        _check_headerless(csv_path, task, target_column)
        return _multiclass(csv_path, None, "no header: rows are path,label")
    sheet = _Sheet(csv_path, [c.strip() for c in rows[0][1]], cols[0], cols[1], rows[1:])
    layout, chosen, why = _choose(sheet, task, target_column)
    if layout == "label":
        named = target_column is not None or chosen[0] != cols[1]
        return _multiclass(csv_path, sheet.header[chosen[0]] if named else None, why, header=True)
    if len(sheet.rows) < 2:
        raise DataError(f"{csv_path} has {len(sheet.rows)} data row(s); training needs at least 2")
    builders = {"tags": _tags, "columns": _columns, "numeric": _regression}
    return builders[layout](sheet, chosen, why)


def id_cells(csv_path: Path) -> list[str]:
    """The path column's cells of a labels CSV with a header (the column the header rule names); [] without one."""
    rows = read_rows(Path(csv_path))
    cols = _header(rows)
    if cols is None:
        return []
    return [row[cols[0]].strip() for _, row in rows[1:] if cols[0] < len(row)]


def read_target_ids(csv_path: Path, task: str = "auto", target_column: str | None = None) -> TargetTable | None:
    """The label sets or values of ``csv_path`` by the rows' path cells (``ids``; ``paths`` left empty), for a
    caller that matches ids to images itself (``imgclf prepare``); None when the CSV holds one class per image,
    or, with nothing forced, a layout this cannot tell (the caller's class reader then speaks for it)."""
    csv_path = Path(csv_path)
    forced = task != "auto" or target_column is not None
    rows = read_rows(csv_path)
    cols = _header(rows)
    if cols is None:
        _check_headerless(csv_path, task, target_column)
        return None
    sheet = _Sheet(csv_path, [c.strip() for c in rows[0][1]], cols[0], cols[1], rows[1:], resolve=False)
    try:
        layout, chosen, why = _choose(sheet, task, target_column)
    except DataError:
        if forced:
            raise
        return None
    if layout == "label":
        return None
    builders = {"tags": _tags, "columns": _columns, "numeric": _regression}
    return builders[layout](sheet, chosen, why)


def _check_headerless(csv_path: Path, task: str, target_column: str | None) -> None:
    """Rows without a header are ``path,label``: a forced label set, value or target column needs a header."""
    if task in ("multilabel", "regression") or target_column is not None:
        wanted = f"task={task}" if task != "auto" else f"target_column={target_column!r}"
        raise DataError(f"{csv_path} has no header row; {wanted} needs one naming the path and target columns")


def _header(rows: list[tuple[int, list[str]]]) -> tuple[int, int] | None:
    """(path column, label column) when the first row is a header: csvlist's rule (a cell names a path or label
    column), or a column whose first cell is not a number while every other row's is (``ETT - Abnormal``)."""
    if not rows:
        return None
    cols = header_columns(rows[0][1])
    if cols is not None or len(rows) < 2:
        return cols
    first = rows[0][1]
    for j in range(1, len(first)):
        below = [row[j].strip() for _, row in rows[1:] if j < len(row) and row[j].strip()]
        if _number(first[j].strip()) is None and below and all(_number(c) is not None for c in below):
            return 0, 1
    return None


def _is_id(name: str) -> bool:
    return bool(_ID_COLUMN.search(name) or _CAMEL_ID_COLUMN.search(name))


def _kind(cells: list[str]) -> str:
    """binary | nearly-binary (90% 0/1: a 0/1 column with a typo) | numeric | tags | text, blanks ignored."""
    filled = [c for c in cells if c]
    if not filled:
        return "text"
    binary = sum(c in _BINARY for c in filled)
    if binary == len(filled):
        return "binary"
    if binary >= 0.9 * len(filled):
        return "nearly-binary"
    if all(_number(c) is not None for c in filled):
        return "numeric"
    tokens = {t for c in filled for t in c.split()}
    if any(len(c.split()) > 1 for c in filled) and len(set(filled)) > len(tokens):
        return "tags"
    return "text"


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _choose(sheet: _Sheet, task: str, target_column: str | None) -> tuple[str, list[int], str]:
    """(layout, its target column indices, why) for ``task`` ("auto" detects; see the module docstring)."""
    if target_column is not None:
        col = column_index(sheet.header, target_column, sheet.csv_path)
        return _single(sheet, col, task, f"column {sheet.header[col]!r} as data.target_column")
    others = [j for j, name in enumerate(sheet.header) if j != sheet.path_col and name and not _is_id(name)]
    kinds = {j: _kind(sheet.cells(j)) for j in others}
    binaryish = [j for j in others if kinds[j] in ("binary", "nearly-binary")]
    if len(others) >= 2 and len(binaryish) == len(others) and task in ("auto", "multilabel"):
        nearly = [j for j in others if kinds[j] == "nearly-binary"]
        if nearly:
            _bad_binary(sheet, nearly[0])
        return "columns", others, f"{len(others)} columns of 0/1"
    named = sheet.header[sheet.label_col].lower() in LABEL_COLUMNS
    numeric = [j for j in others if kinds[j] == "numeric"]
    if named or task == "multiclass":
        col, why = sheet.label_col, f"column {sheet.header[sheet.label_col]!r}"
    elif len(numeric) > 1:
        shown = ", ".join(repr(sheet.header[j]) for j in numeric)[:200]
        raise DataError(
            f"{sheet.csv_path}: several numeric columns ({shown}) could be the target; name it with data.target_column"
        )
    elif numeric:
        col, why = numeric[0], f"column {sheet.header[numeric[0]]!r}, the one numeric column that is not 0/1"
    else:
        col, why = sheet.label_col, f"column {sheet.header[sheet.label_col]!r}"
    layout, cols, why = _single(sheet, col, task, why)
    if layout == "tags" and any(kinds[j] == "binary" for j in others if j != col):
        mixed = next(sheet.header[j] for j in others if j != col and kinds[j] == "binary")
        raise DataError(
            f"{sheet.csv_path} mixes layouts: tags in column {sheet.header[col]!r} and 0/1 column {mixed!r}; "
            "name the target with data.target_column"
        )
    return layout, cols, why


def _single(sheet: _Sheet, col: int, task: str, why: str) -> tuple[str, list[int], str]:
    """The layout of one target column: ``task`` when given, else tags, numbers or classes by its cells."""
    if task != "auto":
        return (
            {"multiclass": "label", "multilabel": "tags", "regression": "numeric"}[task],
            [col],
            f"{why}, task={task}",
        )
    cells = [c for c in sheet.cells(col) if c]
    kind = _kind(cells)
    if kind == "tags":
        return "tags", [col], f"{why}: cells of several space-separated tags"
    if kind == "numeric":
        numbers = [_number(c) for c in cells]
        if any(not math.isfinite(x) or not x.is_integer() for x in numbers):
            return "numeric", [col], f"{why}: non-integer numbers"
        distinct = len(set(numbers))
        if distinct > MAX_CLASS_INTEGERS:
            return "numeric", [col], f"{why}: {distinct} distinct integers (> {MAX_CLASS_INTEGERS})"
        return "label", [col], f"{why}: {distinct} distinct integers read as classes (task=regression to regress)"
    return "label", [col], why


def _bad_binary(sheet: _Sheet, col: int) -> None:
    """Raise for the first cell of a 0/1 column that is not 0 or 1."""
    for (line, _), cell in zip(sheet.rows, sheet.cells(col)):
        if cell and cell not in _BINARY:
            raise DataError(
                f"{sheet.csv_path} row {line}: column {sheet.header[col]!r} holds {cell[:40]!r} among 0/1 label "
                "columns; each label column is 0 or 1"
            )


def _multiclass(csv_path: Path, label_column: str | None, why: str, header: bool = False) -> TargetTable:
    """The ``path,label`` reading of :func:`read_path_label_csv`, paths resolved, classes sorted."""
    rows = read_path_label_csv(csv_path, label_column, header)
    paths = resolve_paths(csv_path, [(r.line, r.raw, r.path) for r in rows])
    classes = sorted({r.label for r in rows})
    index = {name: i for i, name in enumerate(classes)}
    values = np.array([index[r.label] for r in rows], dtype=np.int64)
    shares = np.bincount(values, minlength=len(classes)) / max(1, len(values))
    stats = f"{len(classes)} classes, {len(values)} images"
    if len(values):
        stats += f", class share {shares.min():.0%}–{shares.max():.0%}"
    return TargetTable("multiclass", "label", classes, paths, values, f"multiclass (label) from {why}; {stats}")


def _tags(sheet: _Sheet, cols: list[int], why: str) -> TargetTable:
    name = sheet.header[cols[0]]

    def parse(line: int, cells: list[str]) -> tuple[str, ...]:
        if not cells[0]:
            raise DataError(f"{sheet.csv_path} row {line}: blank tags in column {name!r}; every row needs its labels")
        return tuple(sorted(set(cells[0].split())))

    records = _records(sheet, cols, parse)
    names = sorted({tag for *_, tags in records for tag in tags})
    index = {tag: k for k, tag in enumerate(names)}
    values = np.zeros((len(records), len(names)), dtype=np.float32)
    for i, (*_, tags) in enumerate(records):
        values[i, [index[t] for t in tags]] = 1.0
    return _multilabel(sheet, "tags", names, records, values, why)


def _columns(sheet: _Sheet, cols: list[int], why: str) -> TargetTable:
    def parse(line: int, cells: list[str]) -> tuple[float, ...]:
        for j, cell in zip(cols, cells):
            if cell not in _BINARY:
                shown = "a blank" if not cell else repr(cell[:40])
                raise DataError(
                    f"{sheet.csv_path} row {line}: column {sheet.header[j]!r} holds {shown}; "
                    "each label column is 0 or 1"
                )
        return tuple(float(c) for c in cells)

    records = _records(sheet, cols, parse)
    values = np.array([value for *_, value in records], dtype=np.float32).reshape(len(records), len(cols))
    return _multilabel(sheet, "columns", [sheet.header[j] for j in cols], records, values, why)


def _multilabel(sheet: _Sheet, layout: str, names: list[str], records: list, values: np.ndarray, why: str):
    """The multilabel table, refusing a label that is on no row or on every row."""
    counts = values.sum(axis=0)
    for name, count in zip(names, counts):
        if count == 0:
            raise DataError(f"{sheet.csv_path}: label column {name!r} is 0 on every row; there is nothing to learn")
        if count == len(values):
            raise DataError(f"{sheet.csv_path}: label {name!r} is on every row; it carries no information")
    paths = _paths(sheet, records)
    share = counts / len(values)
    found = (
        f"multilabel ({layout}) from {why}; {len(names)} labels, {values.sum(axis=1).mean():.1f} per image, "
        f"label frequency {share.min():.0%}–{share.max():.0%}, {len(values)} images"
    )
    return TargetTable("multilabel", layout, names, paths, values, found, tuple(raw for _, raw, *_ in records))


def _regression(sheet: _Sheet, cols: list[int], why: str) -> TargetTable:
    name = sheet.header[cols[0]]

    def parse(line: int, cells: list[str]) -> tuple[float]:
        if not cells[0]:
            raise DataError(f"{sheet.csv_path} row {line}: blank target in column {name!r}")
        number = _number(cells[0])
        if number is None:
            raise DataError(f"{sheet.csv_path} row {line}: {cells[0][:40]!r} in column {name!r} is not a number")
        if not math.isfinite(number):
            raise DataError(f"{sheet.csv_path} row {line}: target {cells[0][:40]!r} in column {name!r} is not finite")
        return (number,)

    records = _records(sheet, cols, parse)
    values = np.array([value for *_, value in records], dtype=np.float32).reshape(-1, 1)
    paths = _paths(sheet, records)
    found = (
        f"regression (numeric) from {why}; {len(values)} images, range {values.min():g}–{values.max():g}, "
        f"mean {values.mean():.4g}, std {values.std():.4g}"
    )
    return TargetTable("regression", "numeric", [name], paths, values, found, tuple(raw for _, raw, *_ in records))


def _paths(sheet: _Sheet, records: list[tuple[int, str, Path, tuple]]) -> list[Path]:
    if not sheet.resolve:
        return []
    return resolve_paths(sheet.csv_path, [(line, raw, path) for line, raw, path, _ in records])


def _records(sheet: _Sheet, cols: list[int], parse) -> list[tuple[int, str, Path, tuple]]:
    """(line, raw path, path, parsed target) per row, a path listed twice kept once (twice with two targets: refused)."""
    out: list[tuple[int, str, Path, tuple]] = []
    seen: dict[str, tuple[int, tuple]] = {}
    repeats = 0
    for line, row in sheet.rows:
        raw = row[sheet.path_col].strip() if sheet.path_col < len(row) else ""
        if not raw:
            raise DataError(f"{sheet.csv_path} row {line}: no path in column {sheet.header[sheet.path_col]!r}")
        value = parse(line, [row[j].strip() if j < len(row) else "" for j in cols])
        path = Path(raw) if Path(raw).is_absolute() else sheet.csv_path.parent / raw
        key = os.path.normpath(path)
        if key not in seen:
            seen[key] = (line, value)
            out.append((line, raw, path, value))
        elif seen[key][1] != value:
            raise DataError(
                f"{sheet.csv_path} row {line}: {raw[:120]!r} is listed again with another target "
                f"(first on row {seen[key][0]})"
            )
        else:
            repeats += 1
    if repeats:
        log.warning("%s: ignored %d duplicate row(s) (same path, same target)", sheet.csv_path, repeats)
    return out


def resolve_paths(csv_path: Path, items: list[tuple[int, str, Path]]) -> list[Path]:
    """The file of each ``(line, raw cell, joined path)``: the path when it is a file, else the one image under
    the CSV's folder whose stem the cell names (Kaggle's ``train_0`` for ``train-jpg/train_0.jpg``)."""
    index: dict[str, list[Path]] | None = None
    out: list[Path] = []
    missing: list[tuple[int, str]] = []
    for line, raw, path in items:
        if path.is_file():
            out.append(path)
            continue
        if index is None:
            index = _stem_index(csv_path.parent)
        found = _by_stem(index, raw)
        if len(found) > 1:
            shown = ", ".join(p.relative_to(csv_path.parent).as_posix() for p in found[:2])
            raise DataError(
                f"{csv_path} row {line}: {raw[:120]!r} matches {len(found)} image files ({shown}); name the file"
            )
        if found:
            out.append(found[0])
        else:
            missing.append((line, raw))
    if missing:
        line, raw = missing[0]
        raise DataError(
            f"{csv_path} lists {len(missing)} missing file(s), e.g. {raw[:120]!r} on row {line}: "
            f"no such file, nor an image of that name under {csv_path.parent}"
        )
    return out


def _by_stem(index: dict[str, list[Path]], raw: str) -> list[Path]:
    """The images a bare cell names: ``train_0`` by stem, ``train_0.jpg`` by name; a cell with a folder in it
    names that path only, so ``imgs/cat/1.jpg`` never becomes another folder's ``1.jpg``."""
    if "/" in raw or "\\" in raw:
        return []
    if is_image_name(raw):
        return [p for p in index.get(Path(raw).stem, []) if p.name == raw]
    return index.get(raw, [])


def _stem_index(folder: Path) -> dict[str, list[Path]]:
    """Every image file under ``folder`` by its stem (built once per CSV, only when a cell names no file)."""
    index: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(folder.rglob("*")):
        if path.is_file() and is_image_name(path) and not path.name.startswith("."):
            index[path.stem].append(path)
    return index
