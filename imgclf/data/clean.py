"""Cleaning checks: what is wrong with each file, which files are duplicates, and what to keep.

Three layers, each testable on its own:

* :func:`analyze_file` reads one file and records raw facts (hash, size, mode, perceptual hash, or why
  it could not be decoded). It never raises for bad data: a bad image is a data problem, not a crash.
* :func:`file_flags` turns those facts into ``(flag, reason)`` pairs under :class:`CleanOptions`.
* :func:`assess` takes one record per file (path, label, split + facts), finds exact and near
  duplicates, label conflicts and train/test leakage, applies the per-flag policy and returns the
  manifest table.

Example::

    facts = analyze_file(Path("train/audi/001.jpg"))
    table = assess([{"path": "train/audi/001.jpg", "label": "audi", "split": "train", **facts.to_dict()}])
    table.loc[0, ["flags", "reasons", "keep"]]
"""

from __future__ import annotations

import difflib
import hashlib
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import imagehash
import numpy as np
import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from imgclf.data.images import to_rgb
from imgclf.errors import ConfigError

Policy = Literal["drop", "keep", "keep_one"]

#: Every flag, with what it means. File-level flags first, then the duplicate family.
FLAGS: dict[str, str] = {
    "zero_byte": "empty file",
    "not_image": "not an image despite its extension",
    "truncated": "image data ends early",
    "undecodable": "corrupt image data",
    "decompression_bomb": "more pixels than the safety limit (not decoded)",
    "tiny": "shorter side below the minimum",
    "extreme_aspect": "long side / short side above the maximum",
    "cmyk": "CMYK colour (converted to RGB)",
    "palette_alpha": "palette or transparency (converted to RGB on white)",
    "high_bit_depth": "16/32-bit samples (scaled to 8-bit RGB)",
    "greyscale": "greyscale (converted to RGB)",
    "exif_rotated": "EXIF orientation (applied)",
    "exact_duplicate": "byte-identical copy in the same class",
    "near_duplicate": "perceptually near-identical copy in the same class",
    "label_conflict": "the same image appears under another class",
    "train_test_leak": "the same image appears in both train and test",
}
DUPLICATE_FLAGS = ("exact_duplicate", "near_duplicate")
UNREADABLE_FLAGS = ("zero_byte", "not_image", "truncated", "undecodable", "decompression_bomb")

DEFAULT_POLICY: dict[str, Policy] = {
    "zero_byte": "drop",
    "not_image": "drop",
    "truncated": "drop",
    "undecodable": "drop",
    "decompression_bomb": "drop",
    "tiny": "keep",
    "extreme_aspect": "keep",
    "cmyk": "keep",
    "palette_alpha": "keep",
    "high_bit_depth": "keep",
    "greyscale": "keep",
    "exif_rotated": "keep",
    "exact_duplicate": "keep_one",
    "near_duplicate": "keep_one",
    # Which of two labels is right is a human call: drop both until someone reviews the report.
    "label_conflict": "drop",
    # Test files are never dropped; "drop" here removes the train copies of leaked images.
    "train_test_leak": "keep",
}

_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_EXIF_ORIENTATION = 0x0112
_ROTATION_TEXT = {2: "mirrored", 3: "rotated 180°", 4: "flipped", 5: "transposed", 6: "rotated 90°", 7: "transversed", 8: "rotated 270°"}
_PHASH_DRAFT = (256, 256)  # decode JPEGs at reduced scale for hashing: same verdict, several times faster


class CleanOptions(BaseModel):
    """Thresholds and per-flag policy (``drop`` / ``keep`` / ``keep_one`` of each duplicate group)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_side: int = Field(32, ge=1, description="Images whose shorter side is below this are 'tiny'.")
    max_aspect: float = Field(5.0, gt=1.0, description="Long/short side ratio above which an image is 'extreme_aspect'.")
    max_pixels: int = Field(Image.MAX_IMAGE_PIXELS or 89_478_485, ge=1, description="Pixel count treated as a decompression bomb.")
    near_dup_threshold: int | None = Field(
        6, ge=0, le=64, description="Max Hamming distance of 64-bit perceptual hashes for near duplicates; None = off."
    )
    policy: dict[str, Policy] = Field(default_factory=lambda: dict(DEFAULT_POLICY))

    @field_validator("policy")
    @classmethod
    def _known_flags(cls, value: dict[str, Policy]) -> dict[str, Policy]:
        for flag, action in value.items():
            if flag not in FLAGS:
                close = difflib.get_close_matches(flag, FLAGS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(FLAGS)})"
                raise ValueError(f"unknown cleaning flag {flag!r}{hint}")
            if action == "keep_one" and flag not in DUPLICATE_FLAGS:
                raise ValueError(f"policy keep_one only applies to {' and '.join(DUPLICATE_FLAGS)}, not {flag!r}")
        return {**DEFAULT_POLICY, **value}


def parse_policy(items: list[str]) -> dict[str, Policy]:
    """``["tiny=keep", "near_duplicate=drop"]`` → ``{"tiny": "keep", ...}`` (CLI helper)."""
    out: dict[str, Policy] = {}
    for item in items:
        flag, sep, action = item.partition("=")
        if not sep or action not in ("drop", "keep", "keep_one"):
            raise ConfigError(f"policy {item!r}: expected FLAG=drop|keep|keep_one, e.g. tiny=keep")
        out[flag.strip()] = action  # type: ignore[assignment]
    return out


# --------------------------------------------------------------------------- one file


@dataclass
class FileAnalysis:
    """Raw facts about one file; flags are derived later so thresholds can change without re-reading."""

    sha256: str
    bytes: int
    format: str = ""
    mode: str = ""
    width: int = 0  # after EXIF orientation, i.e. as the model sees it
    height: int = 0
    orientation: int = 1
    transparency: bool = False
    phash: str = ""
    error: str = ""  # "" or one of UNREADABLE_FLAGS
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FileAnalysis":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _sniff(head: bytes) -> str:
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return ""


def _not_image_detail(head: bytes) -> str:
    lower = head.lstrip().lower()
    if lower.startswith((b"<!doctype html", b"<html")):
        return "the file is an HTML page"
    if head.startswith(b"%PDF"):
        return "the file is a PDF"
    if head.startswith(b"PK\x03\x04"):
        return "the file is a zip archive"
    try:
        head.decode("utf-8")
        return "the file is text"
    except UnicodeDecodeError:
        return "unrecognised binary content"


def analyze_file(path: Path, max_pixels: int = CleanOptions().max_pixels) -> FileAnalysis:
    """Hash, identify and fully decode one file. Never raises for bad image data.

    Images above ``max_pixels`` are not decoded (that is what a decompression bomb wants).
    """
    path = Path(path)
    size = path.stat().st_size
    facts = FileAnalysis(sha256=sha256_file(path), bytes=size)
    if size == 0:
        facts.error = "zero_byte"
        return facts
    with open(path, "rb") as fh:
        head = fh.read(64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DecompressionBombWarning, EXIF warnings: we report, not warn
        try:
            with Image.open(path) as image:
                facts.format, facts.mode = image.format or "", image.mode
                w, h = image.size
                facts.transparency = "transparency" in image.info or image.mode in ("RGBA", "LA", "PA")
                facts.orientation = int(image.getexif().get(_EXIF_ORIENTATION, 1) or 1)
                facts.width, facts.height = (h, w) if facts.orientation in (5, 6, 7, 8) else (w, h)
                if w * h > max_pixels:
                    facts.error, facts.detail = "decompression_bomb", f"{w}x{h} = {w * h} pixels"
                    return facts
                image.draft(None, _PHASH_DRAFT)  # type: ignore[arg-type]  # JPEG only; no-op otherwise
                image.load()
                rgb = to_rgb(ImageOps.exif_transpose(image))
                facts.phash = str(imagehash.phash(rgb))
        except Image.DecompressionBombError as exc:
            pixels = re.search(r"\((\d+) pixels\)", str(exc))
            facts.error, facts.detail = "decompression_bomb", f"{pixels.group(1) if pixels else 'too many'} pixels"
        except UnidentifiedImageError:
            fmt = _sniff(head)
            facts.error = "undecodable" if fmt else "not_image"
            facts.detail = f"{fmt} header but unreadable data" if fmt else _not_image_detail(head)
        except Exception as exc:  # noqa: BLE001 — any decoder failure is a data problem, never a crash
            message = str(exc) or type(exc).__name__
            facts.error = "truncated" if "truncat" in message.lower() else "undecodable"
            facts.detail = message
    return facts


def file_flags(facts: FileAnalysis, options: CleanOptions) -> list[tuple[str, str]]:
    """``(flag, reason)`` pairs for one file's own problems (duplicates are found by :func:`assess`)."""
    if facts.error == "decompression_bomb" or (facts.width * facts.height > options.max_pixels and not facts.error):
        detail = facts.detail or f"{facts.width}x{facts.height} pixels"
        return [("decompression_bomb", f"decompression bomb: {detail} exceeds the limit of {options.max_pixels}")]
    if facts.error == "zero_byte":
        return [("zero_byte", "zero-byte file")]
    if facts.error == "not_image":
        return [("not_image", f"not an image: {facts.detail}")]
    if facts.error in ("truncated", "undecodable"):
        label = "truncated image" if facts.error == "truncated" else "undecodable image"
        return [(facts.error, f"{label}: {facts.detail}")]
    out: list[tuple[str, str]] = []
    short, long = sorted((facts.width, facts.height))
    if short < options.min_side:
        out.append(("tiny", f"tiny image: {facts.width}x{facts.height}, shorter side < {options.min_side}"))
    if short and long / short > options.max_aspect:
        out.append(("extreme_aspect", f"extreme aspect ratio {long / short:.1f}:1 > {options.max_aspect:g}:1"))
    mode = facts.mode
    if mode == "CMYK":
        out.append(("cmyk", "CMYK colour, converted to RGB"))
    if mode in ("P", "PA") or facts.transparency:
        out.append(("palette_alpha", f"{'palette' if mode.startswith('P') else mode} image"
                    f"{' with transparency' if facts.transparency else ''}, converted to RGB"))
    if mode.startswith("I") or mode == "F":
        out.append(("high_bit_depth", f"{mode} samples, scaled to 8-bit RGB"))
    if mode in ("L", "LA", "1") or mode.startswith("I") or mode == "F":
        out.append(("greyscale", f"greyscale ({mode}), converted to RGB"))
    if facts.orientation != 1:
        text = _ROTATION_TEXT.get(facts.orientation, f"code {facts.orientation}")
        out.append(("exif_rotated", f"EXIF orientation {facts.orientation} ({text}) applied"))
    return out


# --------------------------------------------------------------------------- duplicates


def duplicate_groups(sha256: list[str], phash: list[str], threshold: int | None) -> list[int]:
    """Group index per item (-1 = unique). Items with an empty ``phash`` only match byte-identically.

    Near duplicates are pairs whose 64-bit perceptual hashes differ in at most ``threshold`` bits;
    groups are the connected components of "exact or near" pairs.

    >>> duplicate_groups(["a", "a", "b"], ["0" * 16, "0" * 16, "f" * 16], 4)
    [0, 0, -1]
    """
    n = len(sha256)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    first: dict[str, int] = {}
    for i, key in enumerate(sha256):
        union(first.setdefault(key, i), i)
    idx = np.array([i for i, h in enumerate(phash) if h], dtype=np.int64)
    if threshold is not None and len(idx) > 1:
        hashes = np.array([int(phash[i], 16) for i in idx], dtype=np.uint64)
        block = max(1, (1 << 22) // len(hashes))  # bounds memory at ~32 MB per block
        for start in range(0, len(hashes), block):
            dist = np.bitwise_count(hashes[start : start + block, None] ^ hashes[None, :])
            rows, cols = np.nonzero(dist <= threshold)
            for r, c in zip(rows + start, cols):
                if c > r:
                    union(int(idx[r]), int(idx[c]))
    roots: dict[int, list[int]] = {}
    for i in range(n):
        roots.setdefault(find(i), []).append(i)
    out = [-1] * n
    for g, members in enumerate(m for m in roots.values() if len(m) > 1):
        for i in members:
            out[i] = g
    return out


def _hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1") if a and b else 64


def _group_flags(rows: list[dict], members: list[int]) -> dict[int, list[tuple[str, str]]]:
    out: dict[int, list[tuple[str, str]]] = {i: [] for i in members}
    for i in members:
        me = rows[i]
        others = [rows[j] for j in members if j != i]
        same = [o for o in others if o["split"] == me["split"] and o["label"] == me["label"]]
        exact = [o for o in same if o["sha256"] == me["sha256"]]
        if exact:
            out[i].append(("exact_duplicate", f"exact duplicate of {exact[0]['path']}"))
        elif same:
            near = min(same, key=lambda o: _hamming(o["phash"], me["phash"]))
            distance = _hamming(near["phash"], me["phash"])
            out[i].append(("near_duplicate", f"near duplicate of {near['path']} (Hamming distance {distance})"))
        if me["split"] == "train":
            conflict = [o for o in others if o["split"] == "train" and o["label"] != me["label"]]
            if conflict:
                out[i].append(("label_conflict", f"label conflict: same image as {conflict[0]['path']} labelled {conflict[0]['label']!r}"))
        leak = [o for o in others if o["split"] != me["split"]]
        if leak:
            out[i].append(("train_test_leak", f"train/test leakage: same image as {leak[0]['path']}"))
    return out


# --------------------------------------------------------------------------- the table


def assess(records: list[dict], options: CleanOptions = CleanOptions()) -> pd.DataFrame:
    """One manifest row per record (needs path, label, split and the :class:`FileAnalysis` fields).

    Adds ``flags`` (';'-joined), ``reasons`` ('; '-joined), ``dup_group`` and ``keep``. Test rows are
    only ever dropped for unreadable data: a submission needs a prediction for every test image.
    Tiny images only match byte-identical copies: their perceptual hash (computed on a 32x32
    upsample) carries too little detail, and unrelated thumbnails would pass as near duplicates.
    """
    rows = sorted(records, key=lambda r: (r["split"], r["path"]))
    flags = [file_flags(FileAnalysis.from_dict(r), options) for r in rows]
    names = [{f for f, _ in fl} for fl in flags]
    readable = [not (n & set(UNREADABLE_FLAGS)) for n in names]
    sha = [r["sha256"] if ok else f"unreadable-{i}" for i, (r, ok) in enumerate(zip(rows, readable))]
    phash = [r["phash"] if ok and "tiny" not in n else "" for r, ok, n in zip(rows, readable, names)]
    groups = duplicate_groups(sha, phash, options.near_dup_threshold)

    by_group: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        if g >= 0:
            by_group.setdefault(g, []).append(i)
    # Number groups in path order so the ids are stable across runs and sources.
    group_ids = {g: f"g{n + 1:04d}" for n, g in enumerate(sorted(by_group, key=lambda g: by_group[g][0]))}
    for members in by_group.values():
        for i, extra in _group_flags(rows, members).items():
            flags[i].extend(extra)

    policy = options.policy
    keep = []
    for row, fl in zip(rows, flags):
        relevant = [f for f, _ in fl if row["split"] == "train" or f in UNREADABLE_FLAGS]
        keep.append(not any(policy[f] == "drop" for f in relevant))
    _keep_one(rows, flags, by_group, keep, policy)

    table = pd.DataFrame.from_records(rows)
    table["flags"] = [";".join(f for f, _ in fl) for fl in flags]
    table["reasons"] = ["; ".join(r for _, r in fl) for fl in flags]
    table["dup_group"] = [group_ids.get(g, "") for g in groups]
    table["keep"] = keep
    return table


def _keep_one(rows: list[dict], flags: list[list[tuple[str, str]]], by_group: dict[int, list[int]], keep: list[bool], policy: dict[str, Policy]) -> None:
    """Within each group and class, keep the largest surviving train copy when policy says keep_one."""
    for members in by_group.values():
        classes: dict[str, list[int]] = {}
        for i in members:
            names = {f for f, _ in flags[i]}
            if rows[i]["split"] == "train" and any(policy[f] == "keep_one" for f in names & set(DUPLICATE_FLAGS)):
                classes.setdefault(rows[i]["label"], []).append(i)
        for same in classes.values():
            alive = [i for i in same if keep[i]] or same
            best = min(alive, key=lambda i: (-rows[i]["width"] * rows[i]["height"], -rows[i]["bytes"], rows[i]["path"]))
            for i in same:
                if i != best and keep[i]:
                    keep[i] = False
                    flags[i][:] = [(f, f"{r} (kept {rows[best]['path']} instead)" if f in DUPLICATE_FLAGS else r) for f, r in flags[i]]
