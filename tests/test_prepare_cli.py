"""`imgclf prepare` end to end on a corpus that exercises every cleaning check."""

from __future__ import annotations

import io
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from imgclf.cli.prepare import prepare_command
from imgclf.data.blocklist import load_blocklist
from imgclf.data.manifest import MANIFEST_COLUMNS, read_manifest
from imgclf.data.prepare import PrepareOptions, prepare
from imgclf.errors import ConfigError, DataError
from imgclf.report.cleaning import write_cleaning_report


def _photo(seed: int, w: int = 64, h: int = 48) -> Image.Image:
    """A smooth field with a few sharp-edged shapes and noise (resized copies keep their detail)."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(coarse)
    for _ in range(5):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        box = (x, y, x + int(rng.integers(6, max(7, w // 2))), y + int(rng.integers(6, max(7, h // 2))))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(
            box, fill=tuple(int(c) for c in rng.integers(0, 256, 3))
        )
    arr = np.asarray(coarse, dtype=np.float64) + rng.normal(0, 4, (h, w, 3))
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def _bomb_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _jpeg_bytes(image: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=kw.pop("quality", 90), **kw)
    return buf.getvalue()


# path -> (expected flags, expected keep). Every check of the issue appears at least once.
EXPECTED: dict[str, tuple[str, bool]] = {
    "train/cat/c0.jpg": ("exact_duplicate", True),
    "train/cat/c0_copy.jpg": ("exact_duplicate", False),
    "train/cat/c1.jpg": ("near_duplicate", True),
    "train/cat/c1_small.jpg": ("near_duplicate", True),
    "train/cat/c2.jpg": ("", True),
    "train/cat/empty.jpg": ("zero_byte", False),
    "train/cat/page.jpg": ("not_image", False),
    "train/cat/tiny.png": ("tiny", True),
    "train/cat/cmyk.jpg": ("cmyk", True),
    "train/cat/rotated.jpg": ("exif_rotated", True),
    "train/dog/d0.jpg": ("train_test_leak", True),
    "train/dog/d1.jpg": ("", True),
    "train/dog/cut.jpg": ("truncated", False),
    "train/dog/garbage.jpg": ("undecodable", False),
    "train/dog/wide.png": ("extreme_aspect", True),
    "train/dog/palette.png": ("palette_alpha", True),
    "train/dog/b0_as_dog.jpg": ("label_conflict", True),
    "train/bird/b0.jpg": ("label_conflict", True),
    "train/bird/b1.jpg": ("", True),
    "train/bird/bomb.png": ("decompression_bomb", False),
    "train/bird/deep16.png": ("high_bit_depth;greyscale", True),
    "train/bird/grey.jpg": ("greyscale", True),
    "test/t0.jpg": ("", True),
    "test/t1.jpg": ("", True),
    "test/d0_again.jpg": ("train_test_leak", True),
    "test/small.png": ("tiny", True),  # test images are dropped only when unreadable
    "test/broken.jpg": ("zero_byte", False),
}


def make_corpus(root: Path) -> Path:
    """A competition-style folder: train/<class>/, test/, sample_submission.csv, plus OS junk."""
    files: dict[str, bytes] = {}
    for name, seed in (
        ("cat/c0", 1),
        ("cat/c1", 2),
        ("cat/c2", 3),
        ("dog/d0", 4),
        ("dog/d1", 5),
        ("bird/b0", 6),
        ("bird/b1", 7),
    ):
        files[f"train/{name}.jpg"] = _jpeg_bytes(_photo(seed))
    files["train/cat/c0_copy.jpg"] = files["train/cat/c0.jpg"]
    files["train/cat/c1_small.jpg"] = _jpeg_bytes(_photo(2, 128, 96).resize((96, 72)))
    files["train/cat/c1.jpg"] = _jpeg_bytes(_photo(2, 128, 96))
    files["train/dog/b0_as_dog.jpg"] = files["train/bird/b0.jpg"]
    files["test/d0_again.jpg"] = files["train/dog/d0.jpg"]
    files["test/t0.jpg"] = _jpeg_bytes(_photo(8))
    files["test/t1.jpg"] = _jpeg_bytes(_photo(9))
    files["train/cat/empty.jpg"] = files["test/broken.jpg"] = b""
    files["train/cat/page.jpg"] = b"<html><body>Access denied</body></html>"
    files["train/dog/cut.jpg"] = _jpeg_bytes(_photo(10))[:600]
    files["train/dog/garbage.jpg"] = b"\xff\xd8\xff" + bytes(range(256)) * 3
    files["train/bird/bomb.png"] = _bomb_png()
    files["train/cat/cmyk.jpg"] = _jpeg_bytes(_photo(11).convert("CMYK"))
    exif = Image.Exif()
    exif[0x0112] = 6
    files["train/cat/rotated.jpg"] = _jpeg_bytes(_photo(12), exif=exif)
    files["train/bird/grey.jpg"] = _jpeg_bytes(_photo(13).convert("L"))
    for name, image, kw in (
        ("train/cat/tiny.png", _photo(14, 16, 16), {}),
        ("test/small.png", _photo(17, 20, 20), {}),
        ("train/dog/wide.png", _photo(15, 400, 40), {}),
        ("train/dog/palette.png", _photo(16).convert("P"), {"transparency": 0}),
        ("train/bird/deep16.png", Image.fromarray((np.arange(48 * 64).reshape(48, 64) * 20).astype(np.uint16)), {}),
    ):
        buf = io.BytesIO()
        image.save(buf, format="PNG", **kw)
        files[name] = buf.getvalue()
    files["train/cat/.DS_Store"] = b"junk"
    files["__MACOSX/train/cat/._c0.jpg"] = b"junk"
    files["train/dog/Thumbs.db"] = b"junk"
    files["sample_submission.csv"] = b"id,label\nt0,cat\nt1,cat\nd0_again,cat\n"
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def _app() -> typer.Typer:
    """Stand-in for imgclf.cli.main: the real app registers the command the same way."""
    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("prepare")(prepare_command)
    return app


def _run(*args: str):
    return CliRunner().invoke(_app(), ["prepare", *args])


def test_prepare_reports_every_bad_file_keeps_good_ones_and_exits_0(tmp_path):
    src, out = make_corpus(tmp_path / "download"), tmp_path / "dataset"
    result = _run(str(src), "--out", str(out), "--workers", "1", "--max-drop", "1.0")
    assert result.exit_code == 0, result.output
    table = read_manifest(out)
    rows = {r["path"]: r for r in table.to_dict("records")}
    assert set(rows) == set(EXPECTED)  # junk skipped
    for path, (flags, keep) in EXPECTED.items():
        assert (rows[path]["flags"], rows[path]["keep"]) == (flags, keep), path
        assert bool(rows[path]["reasons"]) == bool(flags), path
    assert rows["train/bird/bomb.png"]["reasons"].startswith("decompression bomb: 900000000 pixels")
    assert rows["train/cat/rotated.jpg"]["width"] == 48 and rows["train/cat/rotated.jpg"]["height"] == 64
    assert set(MANIFEST_COLUMNS) <= set(table.columns)
    for name in ("sample_submission.csv", "blocklist.proposed.csv", "cleaning_report.md", "cleaning_report.html"):
        assert (out / name).is_file(), name
    assert (out / "train/cat/c0.jpg").read_bytes() == (src / "train/cat/c0.jpg").read_bytes()
    assert "dropped by policy" in result.output


def test_proposed_blocklist_and_report_cover_flagged_files(tmp_path):
    src, out = make_corpus(tmp_path / "src"), tmp_path / "out"
    prepare(src, out, PrepareOptions(workers=1, max_drop=1.0), write_report=write_cleaning_report)
    blocked = load_blocklist(out / "blocklist.proposed.csv")
    dropped = {p for p, (_, keep) in EXPECTED.items() if not keep}
    proposed = {"train/bird/b0.jpg", "train/dog/b0_as_dog.jpg", "train/dog/d0.jpg"}  # conflicts, the leaked train copy
    assert set(blocked.by_path) == dropped | proposed
    assert blocked.reason("train/cat/empty.jpg") == "zero-byte file"
    assert blocked.reason("train/dog/d0.jpg") == "proposed: train/test leak with test/d0_again.jpg: identical file"
    md = (out / "cleaning_report.md").read_text()
    page = (out / "cleaning_report.html").read_text()
    for path, (flags, _) in EXPECTED.items():
        if flags:
            assert path in md and path in page, path
    assert "| cat | 10 | 7 | 3 |" in md
    assert page.count("data:image/png;base64,") == 1  # the class chart, embedded
    assert page.count("data:image/jpeg;base64,") >= 10  # thumbnails of decodable flagged files
    assert "no preview" in page and 'src="http' not in page  # self-contained


def test_rerun_does_no_work_twice(tmp_path):
    src, out = make_corpus(tmp_path / "src"), tmp_path / "out"
    first = prepare(src, out, PrepareOptions(workers=1, max_drop=1.0))
    before = (out / "manifest.csv").read_text()
    second = prepare(src, out, PrepareOptions(workers=1, max_drop=1.0))
    assert (first.analysed, first.copied) == (len(EXPECTED), len(EXPECTED) + 1)
    assert (second.analysed, second.copied, second.removed) == (0, 0, 0)
    assert (out / "manifest.csv").read_text() == before


def test_rerun_after_source_change_only_redoes_the_change(tmp_path):
    src, out = make_corpus(tmp_path / "src"), tmp_path / "out"
    prepare(src, out, PrepareOptions(workers=1, link=False, max_drop=1.0))
    (src / "train/cat/c2.jpg").unlink()
    _photo(40).save(src / "train/dog/new.jpg")
    again = prepare(src, out, PrepareOptions(workers=1, link=False, max_drop=1.0))
    assert (again.analysed, again.copied, again.removed) == (1, 1, 1)
    assert not (out / "train/cat/c2.jpg").exists()
    assert "train/dog/new.jpg" in set(read_manifest(out)["path"])


def test_folder_and_zip_of_it_give_the_same_manifest(tmp_path):
    src = make_corpus(tmp_path / "demo-data")
    archive = shutil.make_archive(str(tmp_path / "demo"), "zip", root_dir=tmp_path, base_dir="demo-data")
    prepare(src, tmp_path / "from_folder", PrepareOptions(workers=1, max_drop=1.0))
    assert _run(archive, "--out", str(tmp_path / "from_zip"), "--workers", "1", "--max-drop", "1.0").exit_code == 0
    a = read_manifest(tmp_path / "from_folder").drop(columns="source")
    b = read_manifest(tmp_path / "from_zip").drop(columns="source")
    pd.testing.assert_frame_equal(a, b)


def test_cache_size_fills_the_resize_cache_for_kept_files(tmp_path):
    src, out = make_corpus(tmp_path / "src"), tmp_path / "out"
    result = prepare(src, out, PrepareOptions(workers=1, cache_image_size=32, max_drop=1.0))
    kept = int(read_manifest(out)["keep"].sum())
    assert result.cache is not None and (result.cache.built, result.cache.failed) == (kept, 0)
    assert len(list((out / ".imgclf-cache" / "37").rglob("*.jpg"))) == kept


def test_malicious_zip_is_refused_and_nothing_escapes(tmp_path):
    archive = tmp_path / "dl" / "train.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("train/cat/a.jpg", _jpeg_bytes(_photo(1)))
        zf.writestr("../../evil.txt", b"pwned")
    result = _run(str(archive.parent), "--out", str(tmp_path / "out"))
    assert isinstance(result.exception, DataError)
    assert str(result.exception) == "refusing archive train.zip: entry '../../evil.txt' escapes the target folder"
    assert not list(tmp_path.rglob("evil.txt")) and not (tmp_path.parent / "evil.txt").exists()
    assert not list((tmp_path / "out").rglob("*.jpg"))


def test_out_inside_source_is_refused(tmp_path):
    src = make_corpus(tmp_path / "src")
    with pytest.raises(DataError, match="must not be inside the source"):
        prepare(src, src / "prepared")


def test_bad_policy_option_is_a_config_error(tmp_path):
    result = _run(str(tmp_path), "--out", str(tmp_path / "o"), "--policy", "tyny=keep")
    assert isinstance(result.exception, ConfigError) and "did you mean 'tiny'" in str(result.exception)


def test_help_lists_the_options():
    text = CliRunner().invoke(_app(), ["prepare", "--help"], terminal_width=200).output
    for option in (
        "--out",
        "--policy",
        "--min-side",
        "--hash-radius",
        "--min-similarity",
        "--max-drop",
        "--apply-proposed",
        "--cache-size",
        "--max-archive-gb",
    ):
        assert option in text


def test_parallel_analysis_gives_the_same_manifest(tmp_path):
    src = make_corpus(tmp_path / "src")
    prepare(src, tmp_path / "one", PrepareOptions(workers=1, max_drop=1.0))
    prepare(src, tmp_path / "two", PrepareOptions(workers=2, max_drop=1.0))
    a = read_manifest(tmp_path / "one").drop(columns="source")
    pd.testing.assert_frame_equal(a, read_manifest(tmp_path / "two").drop(columns="source"))
