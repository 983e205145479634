"""Cleaning checks: what is wrong with each file, and the options and policy that decide what to keep.

Three layers, each testable on its own:

* :func:`analyze_file` reads one file and records raw facts (hash, size, mode, perceptual hash, or why
  it could not be decoded). It never raises for bad data: a bad image is a data problem, not a crash.
* :func:`file_flags` turns those facts into ``(flag, reason)`` pairs under :class:`CleanOptions`.
* :func:`imgclf.data.verdicts.assess` takes one record per file (path, label, split + facts), finds
  identical files and verified near copies (:mod:`imgclf.data.duplicates`), label conflicts and
  train/test leaks, applies the per-flag policy and returns the manifest table.

Defaults remove only what cannot be used: unreadable files, and byte-identical copies within a class
(one is kept). Everything else is kept: near copies share a ``dup_group`` (so a split keeps them on
one side), label conflicts and leaks are *proposed* for the blocklist, for a person to review.

Example::

    facts = analyze_file(Path("train/audi/001.jpg"))
    file_flags(facts, CleanOptions())   # [] or [("tiny", "tiny image: 20x20, ..."), ...]
"""

from __future__ import annotations

import difflib
import hashlib
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from imgclf.data.images import to_rgb
from imgclf.data.near_copy import CANDIDATE_RADIUS, NEAR_COPY_THRESHOLD
from imgclf.errors import ConfigError

#: drop = leave out of training; keep = keep and report; propose = keep, and list in
#: blocklist.proposed.csv for review (``--apply-proposed`` turns it into drop); keep_one = of each set
#: of copies in a class keep the largest.
Policy = Literal["drop", "keep", "keep_one", "propose"]

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
    "wrong_extension": "the file's extension names another format (decoded by its content)",
    "exact_duplicate": "byte-identical copy in the same class",
    "near_duplicate": "the same photo, altered (verified on pixels), in the same class",
    "label_conflict": "the same photo (identical or verified near copy) appears under another class",
    "train_test_leak": "the same photo (identical or verified near copy) appears in both train and test",
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
    "wrong_extension": "keep",  # the decoder reads the content, not the name: informational
    "exact_duplicate": "keep_one",  # the same bytes twice in one class add nothing
    # Near copies stay (they are real training signal) but share a dup_group, so a split or fold never
    # puts one copy in train and another in validation.
    "near_duplicate": "keep",
    # Which of two labels is right is a human call: propose both for review, drop nothing.
    "label_conflict": "propose",
    # Test files are never dropped; "drop" (or an applied proposal) removes the train copies of leaked images.
    "train_test_leak": "propose",
}

_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
# The extensions each format Pillow reports may carry (MPO: a phone's multi-picture JPEG).
_JPEG_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif")
_FORMAT_EXTENSIONS = {
    "JPEG": _JPEG_EXTENSIONS,
    "MPO": _JPEG_EXTENSIONS,
    "PNG": (".png",),
    "WEBP": (".webp",),
    "BMP": (".bmp", ".dib"),
    "TIFF": (".tif", ".tiff"),
    "GIF": (".gif",),
}
_EXIF_ORIENTATION = 0x0112
_ROTATION_TEXT = {
    2: "mirrored",
    3: "rotated 180°",
    4: "flipped",
    5: "transposed",
    6: "rotated 90°",
    7: "transversed",
    8: "rotated 270°",
}
_PHASH_DRAFT = (256, 256)  # decode JPEGs at reduced scale for hashing: the hashes use 64 px anyway


class CleanOptions(BaseModel):
    """Thresholds and per-flag policy (``drop`` / ``keep`` / ``keep_one`` of each duplicate group)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False
    )  # a threshold of inf or nan checks nothing

    min_side: int = Field(32, ge=1, description="Images whose shorter side is below this are 'tiny'.")
    max_aspect: float = Field(
        5.0, gt=1.0, description="Long/short side ratio above which an image is 'extreme_aspect'."
    )
    max_pixels: int = Field(
        Image.MAX_IMAGE_PIXELS or 89_478_485, ge=1, description="Pixel count treated as a decompression bomb."
    )
    hash_radius: int | None = Field(
        CANDIDATE_RADIUS,
        ge=0,
        le=15,
        description="Max Hamming distance of 64-bit perceptual hashes for near-copy candidates; None = off.",
    )
    min_similarity: float = Field(
        NEAR_COPY_THRESHOLD,
        gt=0.0,
        le=1.0,
        description="Detail correlation a candidate pair needs to count as a near copy.",
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

    def with_proposals_applied(self) -> CleanOptions:
        """The same options with every ``propose`` turned into ``drop`` (``prepare --apply-proposed``)."""
        policy = {f: "drop" if a == "propose" else a for f, a in self.policy.items()}
        return self.model_copy(update={"policy": policy})


def parse_policy(items: list[str]) -> dict[str, Policy]:
    """``["tiny=keep", "near_duplicate=drop"]`` → ``{"tiny": "keep", ...}`` (CLI helper)."""
    out: dict[str, Policy] = {}
    for item in items:
        flag, sep, action = item.partition("=")
        if not sep or action not in ("drop", "keep", "keep_one", "propose"):
            raise ConfigError(f"policy {item!r}: expected FLAG=drop|keep|keep_one|propose, e.g. tiny=keep")
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
    crops: str = ""  # perceptual hashes of crops (see imgclf.data.hashing), space-separated hex
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
    from imgclf.data.hashing import pack_hashes, perceptual_hashes  # numpy: not on the path of `prepare --help`

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
                facts.phash, crops = perceptual_hashes(rgb)
                facts.crops = pack_hashes(crops)
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


def file_flags(facts: FileAnalysis, options: CleanOptions, name: str = "") -> list[tuple[str, str]]:
    """``(flag, reason)`` pairs for one file's own problems (duplicates are found by :func:`assess`);
    ``name`` (the file's name or path) is checked against the format found in it."""
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
        out.append(
            (
                "palette_alpha",
                f"{'palette' if mode.startswith('P') else mode} image"
                f"{' with transparency' if facts.transparency else ''}, converted to RGB",
            )
        )
    if mode.startswith("I") or mode == "F":
        out.append(("high_bit_depth", f"{mode} samples, scaled to 8-bit RGB"))
    if mode in ("L", "LA", "1") or mode.startswith("I") or mode == "F":
        out.append(("greyscale", f"greyscale ({mode}), converted to RGB"))
    if facts.orientation != 1:
        text = _ROTATION_TEXT.get(facts.orientation, f"code {facts.orientation}")
        out.append(("exif_rotated", f"EXIF orientation {facts.orientation} ({text}) applied"))
    return out + _extension_flags(facts.format, name)


def _extension_flags(fmt: str, name: str) -> list[tuple[str, str]]:
    """``wrong_extension`` when the name's extension is not one of the format's (a PNG saved as .jpg)."""
    suffix = Path(name).suffix.lower()
    expected = _FORMAT_EXTENSIONS.get(fmt)
    if not suffix or not expected or suffix in expected:
        return []
    return [("wrong_extension", f"{fmt} data in a {suffix} file (decoded as {fmt}; rename it {expected[0]})")]
