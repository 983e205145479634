"""A reviewed list of files to leave out of training, replacing hand-written dictionaries of bad names.

Format: CSV ``key,reason`` where ``key`` is a path relative to the dataset folder or a sha256 (64 hex
digits, which blocks every copy of those bytes). Lines starting with ``#`` are comments; a header
``key,reason`` is optional.

``imgclf prepare`` writes ``blocklist.proposed.csv``: active lines for what the policy proposes (label
conflicts, train copies of train/test leaks) and what it already dropped, commented-out lines for
files it flagged but kept. After review it is saved as ``blocklist.csv``, which ``train`` honours (or
``prepare --apply-proposed`` applies the proposals directly).

Example::

    blocked = load_blocklist(Path("data/cars/blocklist.csv"))
    blocked.reason("train/audi/017.jpg", sha256=None)  # "not a car" or None
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from imgclf.errors import DataError
from imgclf.io import atomic_write_text

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
PROPOSED_NAME = "blocklist.proposed.csv"
BLOCKLIST_NAME = "blocklist.csv"


@dataclass(frozen=True)
class Blocklist:
    by_path: dict[str, str] = field(default_factory=dict)
    by_sha256: dict[str, str] = field(default_factory=dict)

    def reason(self, rel_path: str, sha256: str | None = None) -> str | None:
        """Why this file is blocked (path or content match), or None."""
        hit = self.by_path.get(_norm(rel_path))
        if hit is None and sha256:
            hit = self.by_sha256.get(sha256.lower())
        return hit

    def __len__(self) -> int:
        return len(self.by_path) + len(self.by_sha256)


def _norm(path: str) -> str:
    p = path.strip().replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    return p


def parse_blocklist(text: str, source: str = "blocklist") -> Blocklist:
    by_path: dict[str, str] = {}
    by_sha: dict[str, str] = {}
    first = True
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            row = next(csv.reader([line]))
        except csv.Error as exc:
            raise DataError(f"{source} line {n}: {exc}") from None
        if len(row) != 2 or not row[0].strip():
            raise DataError(
                f"{source} line {n}: expected 'key,reason' (a path or sha256, then why), got {line.strip()!r}"
            )
        key, reason = row[0].strip(), row[1].strip()
        if first and key.lower() == "key" and reason.lower() == "reason":  # optional header
            first = False
            continue
        first = False
        if _SHA256.match(key):
            by_sha[key.lower()] = reason
        else:
            by_path[_norm(key)] = reason
    return Blocklist(by_path, by_sha)


def load_blocklist(path: Path | None) -> Blocklist:
    """Read a blocklist file; ``None`` gives an empty one. A missing or malformed file is a DataError."""
    if path is None:
        return Blocklist()
    path = Path(path)
    if not path.is_file():
        raise DataError(f"blocklist not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read blocklist {path}: {exc}") from None
    return parse_blocklist(text, source=str(path))


def render_proposed(table: pd.DataFrame) -> str:
    """Blocklist text from a manifest: proposed and dropped files as entries, other flagged files commented out."""
    buf = io.StringIO()
    buf.write(
        "# Proposed by `imgclf prepare`: review, edit, then save as blocklist.csv to apply it to training\n"
        "# (or run `imgclf prepare --apply-proposed`).\n"
        "# key = path relative to the dataset folder, or a sha256 to block every copy of those bytes.\n"
        "# Lines starting with '#' are ignored; the commented entries below were flagged but kept.\n"
    )
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["key", "reason"])
    flagged = table[table["flags"].astype(str) != ""]
    is_proposed = flagged["proposed"] if "proposed" in flagged.columns else pd.Series(False, index=flagged.index)
    active = flagged[~flagged["keep"] | is_proposed]
    for row in active.itertuples():
        writer.writerow([row.path, f"proposed: {row.reasons}" if row.keep else row.reasons])
    kept = flagged[flagged["keep"] & ~is_proposed]
    if len(kept):
        buf.write("# flagged, kept by policy:\n")
        for row in kept.itertuples():
            line = io.StringIO()
            csv.writer(line, lineterminator="").writerow([row.path, row.reasons])
            buf.write(f"# {line.getvalue()}\n")
    return buf.getvalue()


def write_proposed(dataset_dir: Path, table: pd.DataFrame) -> Path:
    path = Path(dataset_dir) / PROPOSED_NAME
    atomic_write_text(path, render_proposed(table))
    return path
