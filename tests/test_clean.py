"""Cleaning checks, duplicate grouping, policy, blocklist and manifest round trip."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pydantic import ValidationError

from imgclf.data.blocklist import load_blocklist, parse_blocklist, render_proposed
from imgclf.data.clean import CleanOptions, analyze_file, file_flags, parse_policy
from imgclf.data.verdicts import assess
from imgclf.data.manifest import read_manifest, write_manifest
from imgclf.errors import ConfigError, DataError


def photo(seed: int, w: int = 64, h: int = 48) -> Image.Image:
    """Smooth random structure plus noise: distinct seeds give clearly different perceptual hashes."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
    arr = np.asarray(coarse, dtype=np.float64) + rng.normal(0, 8, (h, w, 3))
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def scene(seed: int, w: int = 128, h: int = 96) -> Image.Image:
    """Photo-like: a smooth field with a few sharp-edged shapes, so a resized copy keeps its detail."""
    rng = np.random.default_rng(seed)
    image = photo(seed, w, h)
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        box = (x, y, x + int(rng.integers(8, w // 2)), y + int(rng.integers(8, h // 2)))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(
            box, fill=tuple(int(c) for c in rng.integers(0, 256, 3))
        )
    return image


def _png_header_only(path: Path, w: int, h: int) -> Path:
    """A tiny PNG claiming w x h pixels: a decompression bomb that must never be decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )
    return path


def _flags(path: Path, **opts) -> dict[str, str]:
    return dict(file_flags(analyze_file(path), CleanOptions(**opts)))


# --------------------------------------------------------------------------- one file, one reason


def test_good_jpeg_has_no_flags_and_a_phash(tmp_path):
    photo(1).save(tmp_path / "a.jpg")
    facts = analyze_file(tmp_path / "a.jpg")
    assert (facts.format, facts.mode, facts.width, facts.height, facts.error) == ("JPEG", "RGB", 64, 48, "")
    assert len(facts.phash) == 16 and len(facts.sha256) == 64
    assert file_flags(facts, CleanOptions()) == []


def test_zero_byte_file(tmp_path):
    (tmp_path / "z.jpg").write_bytes(b"")
    assert _flags(tmp_path / "z.jpg") == {"zero_byte": "zero-byte file"}


def test_html_saved_as_jpg_is_not_an_image(tmp_path):
    (tmp_path / "h.jpg").write_bytes(b"<!DOCTYPE html><html>403 Forbidden</html>")
    assert _flags(tmp_path / "h.jpg") == {"not_image": "not an image: the file is an HTML page"}


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image(tmp_path, fmt):
    buf = io.BytesIO()
    photo(2).save(buf, format=fmt)
    path = tmp_path / f"t.{fmt.lower()}"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    flags = _flags(path)
    assert list(flags) == ["truncated"] and flags["truncated"].startswith("truncated image:")


def test_jpeg_header_with_garbage_is_undecodable(tmp_path):
    (tmp_path / "g.jpg").write_bytes(b"\xff\xd8\xff" + bytes(range(256)) * 2)
    assert _flags(tmp_path / "g.jpg") == {"undecodable": "undecodable image: JPEG header but unreadable data"}


def test_decompression_bomb_is_reported_not_raised(tmp_path):
    path = _png_header_only(tmp_path / "bomb.png", 30000, 30000)
    assert list(_flags(path)) == ["decompression_bomb"]
    photo(3).save(tmp_path / "small.png")  # under the default limit, over a configured one
    assert "exceeds the limit of 1000" in _flags(tmp_path / "small.png", max_pixels=1000)["decompression_bomb"]


def test_tiny_and_extreme_aspect_follow_thresholds(tmp_path):
    photo(4, 16, 16).save(tmp_path / "tiny.png")
    photo(5, 400, 40).save(tmp_path / "wide.png")
    assert list(_flags(tmp_path / "tiny.png")) == ["tiny"]
    assert _flags(tmp_path / "tiny.png", min_side=8) == {}
    assert _flags(tmp_path / "wide.png") == {"extreme_aspect": "extreme aspect ratio 10.0:1 > 5:1"}
    assert _flags(tmp_path / "wide.png", max_aspect=12, min_side=8) == {}


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: photo(6).convert("CMYK").save(p.with_suffix(".jpg")), {"cmyk"}),
        (lambda p: photo(7).convert("P").save(p.with_suffix(".png"), transparency=0), {"palette_alpha"}),
        (lambda p: photo(8).convert("RGBA").save(p.with_suffix(".png")), {"palette_alpha"}),
        (
            lambda p: Image.fromarray((np.arange(48 * 64).reshape(48, 64) * 20).astype(np.uint16)).save(
                p.with_suffix(".png")
            ),
            {"high_bit_depth", "greyscale"},
        ),
        (lambda p: photo(9).convert("L").save(p.with_suffix(".jpg")), {"greyscale"}),
    ],
)
def test_colour_modes_are_reported_and_still_decoded(tmp_path, make, expected):
    make(tmp_path / "img")
    path = next(tmp_path.iterdir())
    facts = analyze_file(path)
    assert set(dict(file_flags(facts, CleanOptions()))) == expected
    assert facts.phash and not facts.error


def test_exif_orientation_is_applied_to_reported_size(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    photo(10, 64, 48).save(tmp_path / "r.jpg", exif=exif)
    facts = analyze_file(tmp_path / "r.jpg")
    assert (facts.width, facts.height) == (48, 64)
    assert _flags(tmp_path / "r.jpg") == {"exif_rotated": "EXIF orientation 6 (rotated 90°) applied"}


# --------------------------------------------------------------------------- duplicates and policy


def _record(tmp_path: Path, rel: str, image: Image.Image | bytes, label: str, quality: int = 90) -> dict:
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(image, bytes):
        path.write_bytes(image)
    else:
        image.save(path, quality=quality)
    split = rel.split("/")[0]
    return {"path": rel, "label": label, "split": split, "file": str(path), **analyze_file(path).to_dict()}


@pytest.fixture
def dup_records(tmp_path):
    a = io.BytesIO()
    photo(20).save(a, format="JPEG", quality=90)
    return [
        _record(tmp_path, "train/cat/a.jpg", a.getvalue(), "cat"),
        _record(tmp_path, "train/cat/a_copy.jpg", a.getvalue(), "cat"),
        _record(tmp_path, "train/cat/b.jpg", scene(21), "cat"),
        _record(tmp_path, "train/cat/b_small.jpg", scene(21).resize((96, 72)), "cat"),
        _record(tmp_path, "train/cat/c.jpg", photo(22), "cat"),
        _record(tmp_path, "train/dog/c_as_dog.jpg", photo(22), "dog"),
        _record(tmp_path, "train/dog/d.jpg", photo(23), "dog"),
        _record(tmp_path, "test/d_leak.jpg", photo(23), ""),
        _record(tmp_path, "train/dog/ok.jpg", photo(24), "dog"),
    ]


def _by_path(table):
    return {r["path"]: r for r in table.to_dict("records")}


def test_assess_flags_duplicates_conflicts_and_leakage(dup_records):
    rows = _by_path(assess(dup_records))
    assert rows["train/cat/a.jpg"]["flags"] == "exact_duplicate"
    assert rows["train/cat/a.jpg"]["keep"] and not rows["train/cat/a_copy.jpg"]["keep"]
    assert (
        rows["train/cat/a_copy.jpg"]["reasons"]
        == "exact duplicate of train/cat/a.jpg: identical file (kept train/cat/a.jpg instead)"
    )
    # near copies are kept, and grouped so a split keeps them together
    assert rows["train/cat/b_small.jpg"]["flags"] == rows["train/cat/b.jpg"]["flags"] == "near_duplicate"
    assert rows["train/cat/b.jpg"]["keep"] and rows["train/cat/b_small.jpg"]["keep"]
    assert rows["train/cat/b.jpg"]["dup_group"] == rows["train/cat/b_small.jpg"]["dup_group"] != ""
    assert rows["train/cat/b_small.jpg"]["reasons"].startswith(
        "near duplicate of train/cat/b.jpg: near copy (detail correlation 0.9"
    )
    # label conflicts and leaks are kept and proposed for review, never dropped by default
    assert rows["train/cat/c.jpg"]["flags"] == rows["train/dog/c_as_dog.jpg"]["flags"] == "label_conflict"
    assert (
        rows["train/cat/c.jpg"]["reasons"]
        == "label conflict with train/dog/c_as_dog.jpg labelled 'dog': identical file"
    )
    assert rows["train/cat/c.jpg"]["keep"] and rows["train/dog/c_as_dog.jpg"]["keep"]
    assert rows["train/cat/c.jpg"]["proposed"] and rows["train/dog/c_as_dog.jpg"]["proposed"]
    assert rows["train/dog/d.jpg"]["flags"] == rows["test/d_leak.jpg"]["flags"] == "train_test_leak"
    assert rows["train/dog/d.jpg"]["keep"] and rows["test/d_leak.jpg"]["keep"]
    assert rows["train/dog/d.jpg"]["proposed"] and not rows["test/d_leak.jpg"]["proposed"]
    assert rows["train/dog/d.jpg"]["dup_group"] == rows["test/d_leak.jpg"]["dup_group"] != ""
    assert rows["train/dog/ok.jpg"]["flags"] == "" and rows["train/dog/ok.jpg"]["dup_group"] == ""
    groups = {r["dup_group"] for r in rows.values()} - {""}
    assert len(groups) == 4


def test_policy_overrides_change_the_verdict(dup_records):
    opts = CleanOptions(policy={"exact_duplicate": "keep", "near_duplicate": "keep_one", "train_test_leak": "drop"})
    rows = _by_path(assess(dup_records, opts))
    assert rows["train/cat/a_copy.jpg"]["keep"] and rows["train/cat/c.jpg"]["keep"]
    assert rows["train/cat/b.jpg"]["keep"] and not rows["train/cat/b_small.jpg"]["keep"]  # the larger one stays
    assert not rows["train/dog/d.jpg"]["keep"]
    assert rows["test/d_leak.jpg"]["keep"]  # test files are never dropped for duplication


def test_apply_proposed_drops_conflicts_and_leaked_train_copies(dup_records):
    rows = _by_path(assess(dup_records, CleanOptions().with_proposals_applied()))
    assert not rows["train/cat/c.jpg"]["keep"] and not rows["train/dog/c_as_dog.jpg"]["keep"]
    assert not rows["train/dog/d.jpg"]["keep"] and rows["test/d_leak.jpg"]["keep"]


def test_near_copy_search_off_keeps_only_exact_groups(dup_records):
    rows = _by_path(assess(dup_records, CleanOptions(hash_radius=None)))
    assert rows["train/cat/b_small.jpg"]["flags"] == "" and rows["train/cat/a_copy.jpg"]["flags"] == "exact_duplicate"


def test_unreadable_files_are_never_grouped_and_are_dropped(tmp_path):
    recs = [_record(tmp_path, f"train/cat/z{i}.jpg", b"", "cat") for i in range(2)]
    rows = assess(recs)
    assert list(rows["flags"]) == ["zero_byte", "zero_byte"] and list(rows["dup_group"]) == ["", ""]
    assert not rows["keep"].any()


def test_tiny_images_only_match_exact_copies(tmp_path):
    a = io.BytesIO()
    photo(30, 20, 20).save(a, format="PNG")
    recs = [
        _record(tmp_path, "train/cat/t.png", a.getvalue(), "cat"),
        _record(tmp_path, "train/cat/t_copy.png", a.getvalue(), "cat"),
        _record(tmp_path, "train/cat/t_small.jpg", photo(30, 18, 18), "cat"),
    ]
    recs[2]["phash"] = recs[0]["phash"]  # even an identical perceptual hash is not enough when tiny
    rows = _by_path(assess(recs))
    assert rows["train/cat/t_copy.png"]["flags"] == "tiny;exact_duplicate"
    assert rows["train/cat/t_small.jpg"]["flags"] == "tiny" and rows["train/cat/t_small.jpg"]["dup_group"] == ""


def test_unknown_policy_flag_suggests_the_right_one():
    with pytest.raises(ValidationError, match="did you mean 'tiny'"):
        CleanOptions(policy={"tyny": "keep"})
    with pytest.raises(ValidationError, match="keep_one only applies"):
        CleanOptions(policy={"tiny": "keep_one"})
    with pytest.raises(ConfigError, match="expected FLAG=drop"):
        parse_policy(["tiny:keep"])


# --------------------------------------------------------------------------- manifest and blocklist


def test_manifest_round_trip_types(tmp_path, dup_records):
    table = assess(dup_records)
    table["source"] = "/abs/somewhere"
    write_manifest(tmp_path, table)
    back = read_manifest(tmp_path)
    assert back["keep"].dtype == bool and back["width"].dtype.kind == "i"
    assert list(back["keep"]) == list(table["keep"])
    assert (back["flags"] == table["flags"]).all() and back["label"].isna().sum() == 0
    assert read_manifest(tmp_path / "nowhere") is None


def test_manifest_missing_columns_is_a_data_error(tmp_path):
    (tmp_path / "manifest.csv").write_text("path,label\na.jpg,cat\n")
    with pytest.raises(DataError, match="lacks columns split"):
        read_manifest(tmp_path)


def test_blocklist_matches_path_or_sha256(tmp_path):
    sha = "ab" * 32
    (tmp_path / "blocklist.csv").write_text(
        f'key,reason\n# reviewed 2024\n./train/cat/a.jpg,not a cat\n{sha.upper()},"dup, of x"\n'
    )
    bl = load_blocklist(tmp_path / "blocklist.csv")
    assert len(bl) == 2
    assert bl.reason("train/cat/a.jpg", None) == "not a cat"
    assert bl.reason("train/dog/other.jpg", sha) == "dup, of x"
    assert bl.reason("train/dog/other.jpg", "cd" * 32) is None
    assert len(load_blocklist(None)) == 0


def test_malformed_blocklist_is_one_line_data_error(tmp_path):
    (tmp_path / "b.csv").write_text("key,reason\ntrain/a.jpg\n")
    with pytest.raises(DataError, match=r"line 2: expected 'key,reason'") as err:
        load_blocklist(tmp_path / "b.csv")
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="blocklist not found"):
        load_blocklist(tmp_path / "missing.csv")


def test_proposed_blocklist_lists_proposals_and_drops_and_comments_out_the_rest(dup_records):
    text = render_proposed(assess(dup_records))
    bl = parse_blocklist(text)
    assert set(bl.by_path) == {"train/cat/a_copy.jpg", "train/cat/c.jpg", "train/dog/c_as_dog.jpg", "train/dog/d.jpg"}
    assert bl.reason("train/dog/d.jpg").startswith("proposed: train/test leak with test/d_leak.jpg")
    assert '# train/cat/b_small.jpg,"near duplicate of train/cat/b.jpg: near copy' in text  # flagged but kept: inactive
