"""A tiny builder for self-contained HTML pages: inline CSS, images as base64, no network.

Every function returns an HTML string; text passed in is escaped, HTML passed in (the result
of another function here) is not. Example::

    body = [
        section("Runs", table(frame, highlight="val_accuracy")),
        section("Learning curves", image(fig_to_base64(fig), "learning curves")),
    ]
    write_page(out / "compare.html", page("Run comparison", *body, subtitle="3 runs"))
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from imgclf.io import atomic_write_text

CSS = """
body{font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
.subtitle{color:#666;margin-top:0}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0;display:block;overflow-x:auto}
th,td{border:1px solid #ddd;padding:.3rem .55rem;text-align:right;white-space:nowrap}
th{background:#f4f4f4;position:sticky;top:0}td.text,th.text{text-align:left}
tr:nth-child(even) td{background:#fafafa}td.best{font-weight:bold;background:#e8f5e9 !important}
img{max-width:100%;height:auto}.note{color:#666;font-size:.85rem}
pre{background:#f6f8fa;padding:.6rem;overflow-x:auto;font-size:.8rem}
"""


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def format_value(value: Any, digits: int = 4) -> str:
    """Numbers short and aligned (floats to ``digits`` significant places), None/NaN as '—'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.{digits - 2}e}"
        return f"{value:.0f}" if abs(value) >= 10**digits else f"{value:.{digits}g}"
    return str(value)


def table(
    rows: Sequence[Mapping[str, Any]] | Any,
    columns: Sequence[str] | None = None,
    *,
    highlight: Mapping[str, str] | None = None,
    text_columns: Iterable[str] = (),
) -> str:
    """An HTML table from a list of dicts or a pandas DataFrame.

    ``highlight`` maps a column to ``"max"`` or ``"min"``: its best cell is shown in bold.
    """
    if hasattr(rows, "to_dict"):
        columns = list(columns or rows.columns)
        rows = rows.to_dict("records")
    rows = list(rows)
    columns = list(columns or (rows[0].keys() if rows else []))
    texts = set(text_columns) | {
        c for c in columns if rows and all(isinstance(r.get(c), str) or r.get(c) is None for r in rows)
    }
    best = {col: _best(rows, col, how) for col, how in (highlight or {}).items() if col in columns}
    head = "".join(f'<th class="{"text" if c in texts else ""}">{escape(c)}</th>' for c in columns)
    body = []
    for i, row in enumerate(rows):
        cells = []
        for c in columns:
            classes = [cls for cls, on in (("text", c in texts), ("best", best.get(c) == i)) if on]
            cells.append(f'<td class="{" ".join(classes)}">{escape(format_value(row.get(c)))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _best(rows: Sequence[Mapping[str, Any]], column: str, how: str) -> int | None:
    scored = [
        (r.get(column), i)
        for i, r in enumerate(rows)
        if isinstance(r.get(column), (int, float)) and not math.isnan(float(r.get(column)))
    ]
    if not scored:
        return None
    return (max(scored) if how == "max" else min(scored))[1]


def image(png_base64: str, alt: str = "") -> str:
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{png_base64}">'


def paragraph(text: str, css_class: str | None = None) -> str:
    cls = f' class="{escape(css_class)}"' if css_class else ""
    return f"<p{cls}>{escape(text)}</p>"


def link_paragraph(text: str, href: str, css_class: str | None = None) -> str:
    """A paragraph that is one link, ``href`` relative to the page (a file beside it)."""
    cls = f' class="{escape(css_class)}"' if css_class else ""
    return f'<p{cls}><a href="{escape(href)}">{escape(text)}</a></p>'


def preformatted(text: str) -> str:
    return f"<pre>{escape(text)}</pre>"


def section(title: str, *parts: str) -> str:
    return f"<section><h2>{escape(title)}</h2>{''.join(parts)}</section>"


def page(title: str, *parts: str, subtitle: str | None = None) -> str:
    """A whole HTML document: no scripts, no external links, so it opens anywhere offline."""
    sub = f'<p class="subtitle">{escape(subtitle)}</p>' if subtitle else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>{sub}{''.join(parts)}</body></html>\n"
    )


def write_page(path: str | Path, document: str) -> Path:
    atomic_write_text(path, document)
    return Path(path)
