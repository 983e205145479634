"""Cleaning report: what ``prepare`` found, as Markdown and as one self-contained HTML page.

Both show counts per class (the HTML as a bar chart, so imbalance is visible at a glance), how the
copy search went (candidates checked on pixels: copies, look-alikes; whether the set is homogeneous),
what the two kinds of similarity mean for the user, every pair proposed for removal and a sample of
look-alike pairs side by side with their evidence, every flagged file with its reasons (the HTML with
a thumbnail) and duplicate groups. Input is the manifest table (plus ``table.attrs["duplicates"]``, the
search's summary, and ``table.attrs["pairs"]``, when the table comes straight from
:func:`imgclf.data.verdicts.assess`) and the dataset folder for thumbnails.

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
LOOKALIKE_SAMPLE = 12  # look-alike pairs shown side by side
_PROPOSAL_FLAGS = ("label_conflict", "train_test_leak", "exact_duplicate", "near_duplicate")


def class_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Per-class totals of the training split: ``label, total, kept, dropped`` (largest first); label sets or
    values (``table.attrs["task"]``) have one row for all the training images."""
    train = table[table["split"] == "train"]
    if table.attrs.get("task") in ("multilabel", "regression"):
        train = train.assign(label=f"all ({table.attrs['task']})")
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
    """Sentences on how copies were told from look-alikes; says so plainly when the set is homogeneous."""
    if not summary:
        return []
    nn = summary.get("median_nn_distance")
    lines = [
        f"Copy candidates: pairs within {summary['radius']} bits of 64-bit perceptual hash (whole image, or whole "
        f"against crops). No pair is reported on its hash alone: each was checked on pixels against its group's "
        f"representative, aligned at 64 px (scale, crop up to 10 % a side, brightness gain and offset), and is a copy only "
        f"when no 8x8 block keeps more than {summary['bound']:g} x its own detail energy as residual. Re-encoding, resizing "
        f"and brightness changes remove detail (at most 1 x); a different capture brings its own (about 2 x or more). "
        f"{summary['candidates']} pairs checked: {summary['verified']} copies, {summary['rejected']} look-alikes."
    ]
    if summary.get("highest_verified") is not None:
        lines.append(f"Largest residual among the copies: {summary['highest_verified']:.2f} x detail.")
    if summary.get("lowest_rejected") is not None:
        lines.append(f"Smallest residual among the look-alikes: {summary['lowest_rejected']:.2f} x detail.")
    if nn is not None:
        lines.append(f"Median nearest-neighbour hash distance between distinct images: {nn:g} bits.")
    if summary.get("homogeneous"):
        lines.append(
            "This set is homogeneous (look-alike images): distinct images often have close perceptual hashes, "
            "so hash matches alone were not trusted; only pixel-verified pairs are reported as copies."
        )
    return lines


def meaning_text(summary: dict | None) -> list[str]:
    """What each kind of similarity means for the user, and what was done about it."""
    grouped = bool(summary and summary.get("grouped_lookalikes"))
    return [
        "A copy is the same capture, identical or re-encoded, resized, cropped or brightened. Only copies are "
        "proposed for removal, flagged as train/test leaks (the same capture in train and test makes the test "
        "score optimistic) or counted as label conflicts.",
        "A label conflict is a pair of copies of one capture under two classes: real evidence that one of the two "
        "labels is wrong. Look at the pair and keep the right one.",
        "A look-alike is a different capture of a similar subject (the neighbouring cell, the next frame, the same "
        "product photographed again). It is a real, distinct training image: never proposed, never a leak or a "
        "conflict. Its risk is a different one: with one look-alike in training and the other in validation, the "
        "validation score measures recognising the same source, not new ones. "
        + (
            "Look-alikes were grouped (--group-lookalikes): they share a dup_group, so the split and the CV folds keep them on one side."
            if grouped
            else "They were not grouped; prepare again with --group-lookalikes to keep them on one side of the split and the CV folds."
        ),
    ]


def _summary(table: pd.DataFrame) -> list[tuple[str, str]]:
    train = table[table["split"] == "train"]
    proposed = int(table["proposed"].sum()) if "proposed" in table.columns else 0
    return [
        ("training images", str(len(train))),
        ("task", table.attrs["task"]) if "task" in table.attrs else ("classes", str(train["label"].nunique())),
        ("test images", str(int((table["split"] == "test").sum()))),
        ("flagged files", str(int((table["flags"] != "").sum()))),
        ("kept for training", str(int(train["keep"].sum()))),
        ("dropped by policy", str(int((~table["keep"]).sum()))),
        ("proposed for review (blocklist.proposed.csv)", str(proposed)),
        ("duplicate groups", str(table.loc[table["dup_group"] != "", "dup_group"].nunique())),
        (
            "files with a copy (identical or verified)",
            str(int(table["similarity"].isin(["identical", "copy"]).sum())) if "similarity" in table else "—",
        ),
        (
            "files with a look-alike only",
            str(int((table["similarity"] == "look-alike").sum())) if "similarity" in table else "—",
        ),
    ]


def _md_escape(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(table: pd.DataFrame) -> str:
    lines = ["# Cleaning report", ""]
    lines += [f"- {k}: **{v}**" for k, v in _summary(table)]
    search = duplicate_search_text(table.attrs.get("duplicates"))
    if search:
        lines += ["", "## Copies and look-alikes", "", *search, "", *meaning_text(table.attrs.get("duplicates"))]
    proposals, lookalikes, total = review_pairs(table)
    if proposals or lookalikes:
        lines += ["", "## Pairs to review", "", "| kind | file | other | evidence |", "|---|---|---|---|"]
        lines += [
            f"| {p['flag']} | {_md_escape(p['path'])} | {_md_escape(p['other'])} | {_md_escape(p['evidence'])} |"
            for p in proposals + lookalikes
        ]
        if total > len(lookalikes):
            lines.append(f"\n{len(lookalikes)} of {total} look-alike pairs shown.")
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


def review_pairs(table: pd.DataFrame) -> tuple[list[dict], list[dict], int]:
    """``(pairs behind a proposal or a drop, a sample of look-alike pairs, how many look-alike pairs there are)``."""
    pairs = table.attrs.get("pairs") or []
    rows = table.set_index("path")
    acted = {
        p
        for p, keep, prop in zip(
            table["path"], table["keep"], table.get("proposed", pd.Series(False, index=table.index))
        )
        if prop or not keep
    }
    proposals = [p for p in pairs if p["flag"] in _PROPOSAL_FLAGS and p["path"] in acted and p["path"] in rows.index]
    lookalikes = [p for p in pairs if p["flag"] == "lookalike"]
    return proposals, lookalikes[:LOOKALIKE_SAMPLE], len(lookalikes)


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
.dropped{opacity:.55}code{font-size:12px}.pair{display:flex;gap:12px;align-items:flex-start;margin:8px 0;padding:8px;
border:1px solid #ddd}.pair figure{margin:0;width:150px;font-size:12px;word-break:break-all}.evidence{font-size:13px;max-width:560px}
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
        meaning = meaning_text(table.attrs.get("duplicates"))
        parts.append("<h2>Copies and look-alikes</h2>" + "".join(f"<p>{e(line)}</p>" for line in search + meaning))
    parts += _pairs_html(table, dataset_dir)
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


def _pairs_html(table: pd.DataFrame, dataset_dir: Path) -> list[str]:
    """Each proposed pair, then a sample of look-alike pairs: two thumbnails side by side, with the evidence."""
    proposals, lookalikes, total = review_pairs(table)
    rows = {r.path: r for r in table.itertuples()}
    out = []
    for title, pairs, note in (
        (
            "Proposed for removal: the pairs behind each proposal",
            proposals,
            "None: no copy is a label conflict or a leak.",
        ),
        ("Look-alikes: different captures, kept", lookalikes, "None found."),
    ):
        out.append(f"<h2>{html.escape(title)}</h2>")
        if title.startswith("Look") and total > len(lookalikes):
            out.append(f"<p>{len(lookalikes)} of {total} look-alike pairs shown.</p>")
        out += [_pair_html(p, rows, dataset_dir) for p in pairs] or [f"<p>{html.escape(note)}</p>"]
    return out


def _pair_html(pair: dict, rows: dict, dataset_dir: Path) -> str:
    e = html.escape
    figures = []
    for path in (pair["path"], pair["other"]):
        r = rows.get(path)
        caption = (
            "" if r is None else f"{e(r.split)}{' / ' + e(r.label) if r.label else ''}{'' if r.keep else ' — dropped'}"
        )
        thumb = _thumb_html(dataset_dir, r) if r is not None else '<div class="nothumb">no preview</div>'
        figures.append(f"<figure>{thumb}<figcaption><code>{e(path)}</code><br>{caption}</figcaption></figure>")
    return f"<div class='pair' data-flag='{e(pair['flag'])}'>{''.join(figures)}<p class='evidence'><b>{e(pair['flag'])}</b>: {e(pair['evidence'])}</p></div>"


def write_cleaning_report(dataset_dir: Path, table: pd.DataFrame) -> tuple[Path, Path]:
    """Write ``cleaning_report.md`` and ``cleaning_report.html`` into ``dataset_dir`` (atomically)."""
    dataset_dir = Path(dataset_dir)
    md, page = dataset_dir / MD_NAME, dataset_dir / HTML_NAME
    atomic_write_text(md, render_markdown(table))
    atomic_write_text(page, render_html(table, dataset_dir))
    return md, page
