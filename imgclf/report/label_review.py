"""A review page for ``cv``'s ``label_issues.csv``: each candidate as a thumbnail with why it was flagged.

The CSV (blocklist format, most suspicious first) is what a person edits; the page is what they look
at while doing it: rank, image, path and the out-of-fold evidence, in the CSV's order. It reads the CSV
and the dataset folder only, and is written next to the CSV (``label_issues.html``).

Example::

    write_label_review(Path("cv/lite0/label_issues.csv"), Path("data/cars"))   # cv/lite0/label_issues.html
"""

from __future__ import annotations

import html
from pathlib import Path

from imgclf.data.blocklist import load_blocklist
from imgclf.io import atomic_write_text
from imgclf.report.cleaning import thumbnail_uri

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}.grid{display:flex;flex-wrap:wrap;gap:12px}
.card{width:180px;border:1px solid #ddd;padding:8px;font-size:12px;word-break:break-word}
.card img{width:160px;height:160px;object-fit:contain;background:#f4f4f4}.rank{font-weight:bold}
.nothumb{width:160px;height:160px;background:#eee;display:flex;align-items:center;justify-content:center}
"""


def render_label_review(issues: dict[str, str], dataset_dir: Path) -> str:
    """The page for ``{path: reason}`` (in rank order), thumbnails read from ``dataset_dir``."""
    e = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Label-issue candidates</title><style>{_CSS}</style></head><body>",
        "<h1>Label-issue candidates</h1>",
        f"<p>{len(issues)} image(s) whose given label the out-of-fold model doubts most (cleanlab confident learning), most "
        "suspicious first. Look at each: where the label is right, delete its line from label_issues.csv; append the rest to "
        "the dataset's blocklist.csv (or fix their labels) and train again.</p><div class='grid'>",
    ]
    for rank, (path, reason) in enumerate(issues.items(), start=1):
        uri = thumbnail_uri(Path(dataset_dir) / path, size=160)
        thumb = f'<img src="{uri}" alt="{e(path)}">' if uri else '<div class="nothumb">no preview</div>'
        parts.append(
            f"<div class='card'><span class='rank'>#{rank}</span><br>{thumb}<br><code>{e(path)}</code><br>{e(reason)}</div>"
        )
    parts.append("</div></body></html>\n")
    return "\n".join(parts)


def write_label_review(issues_csv: Path, dataset_dir: Path) -> Path:
    """Write the review page of ``issues_csv`` next to it (same name, ``.html``); returns its path."""
    issues_csv = Path(issues_csv)
    page = issues_csv.with_suffix(".html")
    atomic_write_text(page, render_label_review(load_blocklist(issues_csv).by_path, Path(dataset_dir)))
    return page
