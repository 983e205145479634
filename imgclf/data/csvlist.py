"""One reader for ``path,label`` CSVs, shared by ``imgclf train DATA.csv`` and ``imgclf prepare DATA.csv``.

The header rule: the first row is a header when one of its cells names a path column (``path``,
``image_id``, ``filename``, ...) or a label column (``label``, ``class``, ...). The path column is the
named one (else the first), the label column the named one (else the first other column). Without
a header the rows are ``path,label``. Row numbers in messages are the file's line numbers (the header
is line 1).

Blank labels are refused, naming the row. A path listed twice with the same label is kept once, with
a warning; listed twice with different labels it is refused, because one file cannot be two classes.

Example::

    rows = read_path_label_csv(Path("labels.csv"))
    rows[0]  # CsvRow(raw='imgs/cat/1.jpg', path=Path('.../imgs/cat/1.jpg'), label='cat', line=2)
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from imgclf.errors import DataError

log = logging.getLogger("imgclf")

PATH_COLUMNS = (
    "path", "filepath", "file_path", "file", "filename", "file_name", "image", "image_path",
    "image_id", "image_name", "img", "id", "id_code", "name",
)  # fmt: skip
LABEL_COLUMNS = ("label", "labels", "class", "class_name", "category", "breed", "target", "species", "tags")


@dataclass(frozen=True)
class CsvRow:
    raw: str  # the path as written in the CSV
    path: Path  # joined with the CSV's folder when relative; not resolved
    label: str
    line: int  # line number in the file


def read_rows(csv_path: Path) -> list[tuple[int, list[str]]]:
    """Non-blank rows of ``csv_path`` with their line numbers; unreadable files are a DataError."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            return [(reader.line_num, row) for row in reader if row and any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {csv_path} as CSV: {' '.join(str(exc).split())[:200]}") from None


def header_columns(first: list[str]) -> tuple[int, int] | None:
    """(path column, label column) when ``first`` is a header row, else None."""
    names = [cell.strip().lower() for cell in first]
    path_col = next((names.index(c) for c in PATH_COLUMNS if c in names), None)
    label_col = next((names.index(c) for c in LABEL_COLUMNS if c in names and names.index(c) != path_col), None)
    if path_col is None and label_col is None:
        return None
    path_col = 0 if path_col is None else path_col
    if label_col is None:
        label_col = 1 if path_col == 0 else 0
    return path_col, label_col


def column_index(header: list[str], name: str, csv_path: Path) -> int:
    """The index of the header column called ``name`` (exact, else ignoring case); a DataError naming the columns."""
    names = [cell.strip() for cell in header]
    if name in names:
        return names.index(name)
    lowered = [n.lower() for n in names]
    if name.lower() in lowered:
        return lowered.index(name.lower())
    raise DataError(f"{csv_path} has no column {name!r} (data.target_column); its columns: {', '.join(names)[:200]}")


def read_path_label_csv(csv_path: Path, label_column: str | None = None, header: bool = False) -> list[CsvRow]:
    """The de-duplicated ``(path, label)`` rows of ``csv_path`` (see the module docstring); ``label_column``
    names the header's label column when the header rule's choice is not the one wanted; ``header`` says the
    first row is a header even when the rule does not find it (then path first, label second)."""
    csv_path = Path(csv_path)
    rows = read_rows(csv_path)
    cols = header_columns(rows[0][1]) if rows else None
    if cols is None and header and rows:
        cols = (0, 1)
    if cols is not None:
        if label_column is not None:
            cols = (cols[0], column_index(rows[0][1], label_column, csv_path))
        rows = rows[1:]
    path_col, label_col = cols or (0, 1)
    out: list[CsvRow] = []
    seen: dict[str, CsvRow] = {}
    repeats: list[tuple[CsvRow, CsvRow]] = []
    for line, row in rows:
        if len(row) <= max(path_col, label_col) or not row[path_col].strip():
            shown = ",".join(row)[:80]
            raise DataError(f"{csv_path} row {line}: expected a path and a label, got {shown!r}")
        label = row[label_col].strip()
        if not label:
            raise DataError(
                f"{csv_path} row {line}: blank label for {row[path_col].strip()[:120]!r}; every row needs a class"
            )
        raw = row[path_col].strip()
        path = Path(raw) if Path(raw).is_absolute() else csv_path.parent / raw
        item = CsvRow(raw, path, label, line)
        key = os.path.normpath(path)
        first = seen.get(key)
        if first is None:
            seen[key] = item
            out.append(item)
        elif first.label != label:
            raise DataError(
                f"{csv_path} row {line}: {raw[:120]!r} is listed again with another label "
                f"(row {first.line}: {first.label[:40]!r}, row {line}: {label[:40]!r})"
            )
        else:
            repeats.append((first, item))
    if repeats:
        first, again = repeats[0]
        log.warning(
            "%s: ignored %d duplicate row(s), e.g. row %d repeats row %d (%s)",
            csv_path,
            len(repeats),
            again.line,
            first.line,
            first.raw[:120],
        )
    return out
