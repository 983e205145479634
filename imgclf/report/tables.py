"""Tables as Markdown text and CSV files (the HTML form is :func:`imgclf.report.html.table`).

Example::

    print(markdown_table([{"run": "a", "val_accuracy": 0.91}, {"run": "b", "val_accuracy": 0.88}]))
    write_csv(out / "compare.csv", rows)
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Mapping, Sequence

from imgclf.io import atomic_write_text
from imgclf.report.html import format_value


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table; numbers right-aligned, text left-aligned."""
    rows = list(rows)
    columns = list(columns or (rows[0].keys() if rows else []))
    if not columns:
        return ""
    numeric = {c for c in columns if rows and all(isinstance(r.get(c), (int, float)) or r.get(c) is None for r in rows)}
    cells = [[format_value(r.get(c)).replace("|", "\\|") for c in columns] for r in rows]
    lines = [
        "| " + " | ".join(str(c).replace("|", "\\|") for c in columns) + " |",
        "|" + "|".join("---:" if c in numeric else ":---" for c in columns) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> Path:
    """Full-precision values (unlike the Markdown/HTML forms, which round for reading)."""
    rows = list(rows)
    columns = list(columns or (rows[0].keys() if rows else []))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: ("" if row.get(c) is None else row.get(c)) for c in columns})
    atomic_write_text(path, buf.getvalue())
    return Path(path)
