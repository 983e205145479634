"""Cleaning report: what ``prepare`` found, as Markdown and as one self-contained HTML page.

Both show counts per class (the HTML as a bar chart, so imbalance is visible at a glance), how the
duplicate search went (candidates checked on pixels, rejected, whether the set is homogeneous), every
flagged file with its reasons and evidence (the HTML with a thumbnail) and duplicate groups side by
side. Input is the manifest table (plus the duplicate search's summary, ``table.attrs["duplicates"]``,
when the table comes straight from :func:`imgclf.data.verdicts.assess`) and the dataset folder for
thumbnails.

Example::

    md_path, html_path = write_cleaning_report(Path("data/cars"), table)
"""

from __future__ import annotations

import base64
import html
import io
import warnings
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageOps

from imgclf.data.images import to_rgb
from imgclf.io import atomic_write_text

MD_NAME = "cleaning_report.md"
HTML_NAME = "cleaning_report.html"
_NO_PREVIEW = {"zero_byte", "not_image", "truncated", "undecodable", "decompression_bomb"}
_THUMB = 96


def class_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Per-class totals of the training split: ``label, total, kept, dropped`` (largest first)."""
    train = table[table["split"] == "train"]
    out = train.groupby("label")["keep"].agg(total="size", kept="sum").reset_index()
    out["kept"] = out["kept"].astype(int)
    out["dropped"] = out["total"] - out["kept"]
    return out.sort_values(["total", "label"], ascending=[False, True], ignore_index=True)


def flag_counts(table: pd.DataFrame) -> dict[str, int]:
    counts: dict[str, int] = {}
    for flags in table["flags"]:
        for f in filter(None, str(flags).split(";")):
            counts[f] = counts.get(f, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def duplicate_search_text(summary: dict | None) -> list[str]:
    """Sentences on how near copies were found; says so plainly when the set is homogeneous."""
    if not summary:
        return []
    nn = summary.get("median_nn_distance")
    lines = [
        f"Near-copy candidates: pairs within {summary['radius']} bits of 64-bit perceptual hash (whole image, or whole "
        f"against crops). No pair is reported on its hash alone: each copy was checked on pixels against its group's "
        f"representative (detail correlation at 64 px, best alignment, threshold {summary['threshold']:.2f}): "
        f"{summary['candidates']} pairs checked, {summary['verified']} verified as near copies, {summary['rejected']} rejected as different images."
    ]
    if summary.get("best_rejected") is not None:
        lines.append(f"Highest correlation among rejected pairs: {summary['best_rejected']:.2f}.")
    if nn is not None:
        lines.append(f"Median nearest-neighbour hash distance between distinct images: {nn:g} bits.")
    if summary.get("homogeneous"):
        lines.append(
            "This set is homogeneous (look-alike images): distinct images often have close perceptual hashes, "
            "so hash matches alone were not trusted; only pixel-verified pairs are reported as copies."
        )
    return lines


def _summary(table: pd.DataFrame) -> list[tuple[str, str]]:
    train = table[table["split"] == "train"]
    proposed = int(table["proposed"].sum()) if "proposed" in table.columns else 0
    return [
        ("training images", str(len(train))),
        ("classes", str(train["label"].nunique())),
        ("test images", str(int((table["split"] == "test").sum()))),
        ("flagged files", str(int((table["flags"] != "").sum()))),
        ("kept for training", str(int(train["keep"].sum()))),
        ("dropped by policy", str(int((~table["keep"]).sum()))),
        ("proposed for review (blocklist.proposed.csv)", str(proposed)),
        ("duplicate groups", str(table.loc[table["dup_group"] != "", "dup_group"].nunique())),
    ]


def _md_escape(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(table: pd.DataFrame) -> str:
    lines = ["# Cleaning report", ""]
    lines += [f"- {k}: **{v}**" for k, v in _summary(table)]
    search = duplicate_search_text(table.attrs.get("duplicates"))
    if search:
        lines += ["", "## Duplicate search", "", *search]
    lines += ["", "## Flags", "", "| flag | files |", "|---|---:|"]
    lines += [f"| {f} | {n} |" for f, n in flag_counts(table).items()] or ["| (none) | 0 |"]
    lines += ["", "## Images per class (train)", "", "| class | total | kept | dropped |", "|---|---:|---:|---:|"]
    lines += [
        f"| {_md_escape(r.label)} | {r.total} | {r.kept} | {r.dropped} |" for r in class_counts(table).itertuples()
    ]
    flagged = table[table["flags"] != ""]
    lines += [
        "",
        "## Flagged files",
        "",
        "| file | split | label | flags | kept | reasons |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {_md_escape(r.path)} | {r.split} | {_md_escape(r.label)} | {r.flags} | {'yes' if r.keep else 'no'} | {_md_escape(r.reasons)} |"
        for r in flagged.itertuples()
    ]
    lines += ["", "## Duplicate groups", ""]
    for gid, group in _groups(table):
        members = ", ".join(
            f"`{r.path}` ({r.split}{', ' + r.label if r.label else ''}{'' if r.keep else ', dropped'})"
            for r in group.itertuples()
        )
        lines.append(f"- **{gid}**: {members}")
    if not _groups(table):
        lines.append("None found.")
    return "\n".join(lines) + "\n"


def _groups(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    dup = table[table["dup_group"] != ""]
    return [(str(g), rows) for g, rows in dup.groupby("dup_group", sort=True)]


def class_chart(table: pd.DataFrame) -> Figure:
    """Horizontal bar chart of kept/dropped training images per class, its legend above the bars."""
    counts = class_counts(table).iloc[::-1]
    fig = Figure(figsize=(7, max(2.5, 0.22 * len(counts) + 1.3)), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.barh(counts["label"].astype(str), counts["kept"], color="#4c78a8", label="kept")
    ax.barh(counts["label"].astype(str), counts["dropped"], left=counts["kept"], color="#e45756", label="dropped")
    ax.set_xlabel("training images")
    # Outside the axes: inside, it covered the longest bars (the largest classes reach the right edge).
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, frameon=False, borderaxespad=0.2)
    fig.tight_layout()
    return fig


def class_chart_png(table: pd.DataFrame) -> bytes:
    """:func:`class_chart` as PNG bytes."""
    fig = class_chart(table)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def thumbnail_uri(path: Path, size: int = _THUMB) -> str | None:
    """A small JPEG data URI of ``path`` (EXIF applied), or None when it cannot be decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                image.draft(None, (size * 2, size * 2))  # type: ignore[arg-type]
                image.load()
                thumb = to_rgb(ImageOps.exif_transpose(image))
        thumb.thumbnail((size, size))
        buf = io.BytesIO()
        thumb.save(buf, format="JPEG", quality=80)
    except Exception:  # noqa: BLE001 — a broken file gets "no preview", not a broken report
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _thumb_html(dataset_dir: Path, row) -> str:
    uri = None if set(str(row.flags).split(";")) & _NO_PREVIEW else thumbnail_uri(dataset_dir / row.path)
    if uri is None:
        return '<div class="nothumb">no preview</div>'
    return f'<img src="{uri}" alt="{html.escape(row.path)}">'


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}
td,th{border:1px solid #ddd;padding:4px 8px;vertical-align:top;text-align:left}
img{max-width:96px;max-height:96px}.nothumb{width:96px;height:64px;background:#eee;font-size:11px;
display:flex;align-items:center;justify-content:center}.group{display:flex;gap:12px;margin:8px 0;
padding:8px;border:1px solid #ddd;flex-wrap:wrap}.member{font-size:12px;width:150px;word-break:break-all}
.dropped{opacity:.55}code{font-size:12px}
"""


def render_html(table: pd.DataFrame, dataset_dir: Path) -> str:
    e = html.escape
    chart = base64.b64encode(class_chart_png(table)).decode("ascii")
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Cleaning report</title><style>{_CSS}</style></head><body>",
        "<h1>Cleaning report</h1><table>",
    ]
    parts += [f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _summary(table)]
    parts.append("</table>")
    search = duplicate_search_text(table.attrs.get("duplicates"))
    if search:
        parts.append("<h2>Duplicate search</h2>" + "".join(f"<p>{e(line)}</p>" for line in search))
    parts.append("<h2>Flags</h2><table><tr><th>flag</th><th>files</th></tr>")
    parts += [f"<tr><td>{e(f)}</td><td>{n}</td></tr>" for f, n in flag_counts(table).items()]
    parts.append(
        f"</table><h2>Images per class (train)</h2><img style='max-width:100%;max-height:none' src='data:image/png;base64,{chart}' alt='images per class'>"
    )
    parts.append(
        "<h2>Flagged files</h2><table><tr><th>preview</th><th>file</th><th>split / label</th><th>flags</th><th>kept</th><th>reasons</th></tr>"
    )
    for r in table[table["flags"] != ""].itertuples():
        parts.append(
            f"<tr class='{'' if r.keep else 'dropped'}'><td>{_thumb_html(dataset_dir, r)}</td><td><code>{e(r.path)}</code></td>"
            f"<td>{e(r.split)} / {e(r.label)}</td><td>{e(r.flags.replace(';', ', '))}</td><td>{'yes' if r.keep else 'no'}</td><td>{e(r.reasons)}</td></tr>"
        )
    parts.append("</table><h2>Duplicate groups</h2>")
    for gid, group in _groups(table):
        parts.append(f"<h3>{e(gid)}</h3><div class='group'>")
        for r in group.itertuples():
            caption = f"{e(r.split)}{' / ' + e(r.label) if r.label else ''}{'' if r.keep else ' — dropped'}"
            parts.append(
                f"<div class='member {'' if r.keep else 'dropped'}'>{_thumb_html(dataset_dir, r)}<br><code>{e(r.path)}</code><br>{caption}</div>"
            )
        parts.append("</div>")
    if not _groups(table):
        parts.append("<p>None found.</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_cleaning_report(dataset_dir: Path, table: pd.DataFrame) -> tuple[Path, Path]:
    """Write ``cleaning_report.md`` and ``cleaning_report.html`` into ``dataset_dir`` (atomically)."""
    dataset_dir = Path(dataset_dir)
    md, page = dataset_dir / MD_NAME, dataset_dir / HTML_NAME
    atomic_write_text(md, render_markdown(table))
    atomic_write_text(page, render_html(table, dataset_dir))
    return md, page
