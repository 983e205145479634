"""Safe unzip and source discovery (competition downloads, class folders, CSV of path,label)."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.data.ingest import ExtractLimits, discover, safe_extract
from imgclf.errors import DataError


def _jpeg(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(path)
    return path


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def _files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


# --------------------------------------------------------------------------- malicious archives


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("../evil.txt", "escapes the target folder"),
        ("ok/../../evil.txt", "escapes the target folder"),
        ("/tmp/evil.txt", "absolute path"),
    ],
)
def test_archive_with_escaping_entry_is_refused_and_nothing_written(tmp_path, entry, message):
    archive = _zip(tmp_path / "train.zip", {"good/a.txt": b"fine", entry: b"pwned"})
    before = _files_under(tmp_path)
    with pytest.raises(DataError, match=f"refusing archive train.zip: entry .* {message}"):
        safe_extract(archive, tmp_path / "sub" / "target")
    assert _files_under(tmp_path) - before <= {"sub"}  # at most the empty parent folder
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()
    assert not (tmp_path / "sub" / "target").exists()


def test_archive_with_symlink_entry_is_refused(tmp_path):
    archive = tmp_path / "train.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("good.txt", b"fine")
        link = zipfile.ZipInfo("link")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(DataError, match="entry 'link' is a symbolic link"):
        safe_extract(archive, tmp_path / "target")
    assert not (tmp_path / "target").exists()


def test_archive_over_total_size_cap_is_refused(tmp_path):
    archive = _zip(tmp_path / "big.zip", {"a.bin": b"\0" * 6000, "b.bin": b"\0" * 6000})  # compresses to ~nothing
    with pytest.raises(
        DataError, match=r"big.zip: its entries declare 12000 bytes, more than the 10000 left of 10000 bytes"
    ):
        safe_extract(archive, tmp_path / "target", ExtractLimits(max_total_bytes=10_000))
    assert _files_under(tmp_path) == {"big.zip"}


def test_archive_with_too_many_files_is_refused(tmp_path):
    archive = _zip(tmp_path / "many.zip", {f"f{i}.txt": b"x" for i in range(6)})
    with pytest.raises(DataError, match="more than 5 files"):
        safe_extract(archive, tmp_path / "target", ExtractLimits(max_files=5))
    assert _files_under(tmp_path) == {"many.zip"}


def test_corrupt_archive_is_a_data_error(tmp_path):
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="bad.zip: not a readable zip"):
        safe_extract(tmp_path / "bad.zip", tmp_path / "target")


def test_extract_skips_os_junk(tmp_path):
    archive = _zip(
        tmp_path / "a.zip",
        {
            "cat/1.jpg": b"x",
            "__MACOSX/cat/._1.jpg": b"x",
            "cat/.DS_Store": b"x",
            "cat/Thumbs.db": b"x",
            "cat/._2.jpg": b"x",
        },
    )
    target = safe_extract(archive, tmp_path / "target")
    assert _files_under(target) == {"cat", "cat/1.jpg"}


# --------------------------------------------------------------------------- discovery


def _rels(files) -> list[str]:
    return sorted(f.rel for f in files)


def test_discovers_nested_competition_download(tmp_path):
    src = tmp_path / "download" / "cars-competition"
    staging = tmp_path / "staging"
    for cls, seed in (("audi", 1), ("bmw", 2)):
        _jpeg(staging / "train" / "train" / cls / f"{cls}1.jpg", seed)
    _jpeg(staging / "test" / "t1.jpg", 3)
    src.mkdir(parents=True)
    with zipfile.ZipFile(src / "train.zip", "w") as zf:
        for f in (staging / "train").rglob("*.jpg"):
            zf.write(f, f.relative_to(staging).as_posix())
    with zipfile.ZipFile(src / "test.zip", "w") as zf:  # test zip without a test/ folder inside
        zf.write(staging / "test" / "t1.jpg", "t1.jpg")
    (src / "extra").mkdir()
    (src / "extra" / "sample_submission.csv").write_text("id,label\nt1,audi\n")

    plan = discover(tmp_path / "download", tmp_path / "work")

    assert _rels(plan.train) == ["train/audi/audi1.jpg", "train/bmw/bmw1.jpg"]
    assert [f.label for f in sorted(plan.train, key=lambda f: f.rel)] == ["audi", "bmw"]
    assert _rels(plan.test) == ["test/t1.jpg"]
    assert plan.sample_submission == src / "extra" / "sample_submission.csv"


def test_discovers_bare_folder_of_class_folders_and_ignores_junk(tmp_path):
    _jpeg(tmp_path / "src" / "cat" / "a.jpg")
    _jpeg(tmp_path / "src" / "dog" / "sub" / "b.png")
    (tmp_path / "src" / "cat" / ".DS_Store").write_bytes(b"x")
    (tmp_path / "src" / "cat" / "notes.txt").write_text("hello")
    (tmp_path / "src" / "__MACOSX").mkdir()
    plan = discover(tmp_path / "src", tmp_path / "work")
    assert _rels(plan.train) == ["train/cat/a.jpg", "train/dog/sub/b.png"]
    assert plan.test == [] and plan.sample_submission is None
    assert [Path(p).name for p in plan.ignored] == ["notes.txt"]


def test_discovers_csv_of_path_and_label(tmp_path):
    _jpeg(tmp_path / "imgs" / "x" / "1.jpg")
    _jpeg(tmp_path / "imgs" / "y" / "1.jpg", 1)
    (tmp_path / "labels.csv").write_text("path,label\nimgs/x/1.jpg,cat\nimgs/y/1.jpg,cat\n")
    plan = discover(tmp_path / "labels.csv", tmp_path / "work")
    assert _rels(plan.train) == ["train/cat/1.jpg", "train/cat/1__1.jpg"]  # same name, no overwrite


def test_csv_with_missing_file_names_the_row(tmp_path):
    (tmp_path / "labels.csv").write_text("path,label\nnope.jpg,cat\n")
    with pytest.raises(DataError, match=r"row 2: file not found: nope.jpg"):
        discover(tmp_path / "labels.csv", tmp_path / "work")


def test_discovers_flat_train_folder_with_labels_csv(tmp_path):
    _jpeg(tmp_path / "src" / "train" / "id1.jpg")
    _jpeg(tmp_path / "src" / "train" / "id2.jpg", 1)
    (tmp_path / "src" / "labels.csv").write_text("id,breed\nid1,beagle\nid2,pug\n")
    plan = discover(tmp_path / "src", tmp_path / "work")
    assert _rels(plan.train) == ["train/beagle/id1.jpg", "train/pug/id2.jpg"]


def test_source_without_images_is_a_data_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no training images found"):
        discover(tmp_path / "empty", tmp_path / "work")


def test_zip_is_extracted_once_per_version(tmp_path):
    _jpeg(tmp_path / "stage" / "cat" / "a.jpg")
    with zipfile.ZipFile(tmp_path / "data.zip", "w") as zf:
        zf.write(tmp_path / "stage" / "cat" / "a.jpg", "cat/a.jpg")
    first = discover(tmp_path / "data.zip", tmp_path / "work")
    mtime = first.train[0].src.stat().st_mtime_ns
    second = discover(tmp_path / "data.zip", tmp_path / "work")
    assert second.train[0].src == first.train[0].src
    assert second.train[0].src.stat().st_mtime_ns == mtime
