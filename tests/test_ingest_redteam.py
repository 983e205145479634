"""Hostile and careless input to `imgclf prepare` (issue 18, items 4, 6, 7, 8, 12, 14, 15).

Every test builds the bad input in ``tmp_path`` and checks the exit code, the single ``error:`` line
(under 300 characters), that the output stays short, and that nothing outside the target changed.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import shutil
import struct
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from imgclf.data.archives import ExtractBudget, ExtractLimits, safe_extract
from imgclf.data.manifest import read_manifest
from imgclf.data.samples import load_training_set
from imgclf.data.split import stratified_group_split
from imgclf.errors import DataError


def _png(seed: int, size: int = 36) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def _classes(root: Path, per_class: int = 2, seed: int = 0) -> Path:
    return _tree(
        root,
        {f"{c}/{c}{i}.png": _png(seed + 10 * k + i) for k, c in enumerate(("cat", "dog")) for i in range(per_class)},
    )


def _snapshot(root: Path, skip: Path | None = None) -> dict[str, tuple]:
    """Every path under ``root`` (``skip`` excluded) with its type, size, mtime and inode."""
    snap = {}
    for folder, dirs, files in os.walk(root):
        if skip is not None and Path(folder) == skip:
            dirs[:] = []
            continue
        for name in dirs + files:
            path = Path(folder) / name
            if skip is not None and path == skip:
                continue
            st = path.lstat()
            snap[path.relative_to(root).as_posix()] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino)
    return snap


def _fails(args: list, capsys, *pieces: str) -> str:
    """Run `imgclf ARGS`; assert exit 2 with one short error line containing ``pieces``; return it."""
    code, out, err = cli(args, capsys)
    assert code == 2, (out, err)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    line = errors[0]
    assert len(line) < 300, line
    assert len(out) + len(err) < 3000
    for piece in pieces:
        assert piece in line, line
    return line


@pytest.fixture
def imgclf_log(caplog):
    """Records of the "imgclf" logger (the CLI turns its propagation off)."""
    logger = logging.getLogger("imgclf")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="imgclf")
    yield caplog
    logger.removeHandler(caplog.handler)


# --------------------------------------------------------------------------- item 4: --out remit


def test_manifest_row_outside_out_is_never_deleted(tmp_path, capsys):
    src, out = _classes(tmp_path / "src"), tmp_path / "a" / "out"
    victim = _tree(tmp_path, {"victim.txt": b"precious"}) / "victim.txt"
    assert cli(["prepare", src, "--out", out, "--workers", "1"], capsys)[0] == 0
    manifest = (out / "manifest.csv").read_text()
    row = manifest.splitlines()[1].split(",", 1)[1]
    evil = [f"../../victim.txt,{row}", f"train/../../../victim.txt,{row}", f"{victim},{row}"]
    (out / "manifest.csv").write_text(manifest + "\n".join(evil) + "\n")
    before = _snapshot(tmp_path, skip=out)
    code, _, err = cli(["prepare", src, "--out", out, "--workers", "1"], capsys)
    assert code == 0, err
    assert victim.read_bytes() == b"precious" and _snapshot(tmp_path, skip=out) == before


def test_non_empty_folder_that_is_not_a_dataset_is_refused_untouched(tmp_path, capsys):
    src, out = _classes(tmp_path / "src"), tmp_path / "mine"
    _tree(out, {"manifest.csv": b"my,own\n1,2\n", "notes.txt": b"keep me", "train/cat/x.png": _png(99)})
    before = _snapshot(tmp_path)
    _fails(["prepare", src, "--out", out], capsys, "is not empty and is not an imgclf dataset")
    assert _snapshot(tmp_path) == before


def test_out_that_is_a_file_or_under_a_file_is_refused(tmp_path, capsys):
    src = _classes(tmp_path / "src")
    _tree(tmp_path, {"file.txt": b"x"})
    before = _snapshot(tmp_path)
    _fails(["prepare", src, "--out", tmp_path / "file.txt"], capsys, "is a file")
    _fails(["prepare", src, "--out", tmp_path / "file.txt" / "sub" / "out"], capsys, "which is a file")
    assert _snapshot(tmp_path) == before


def test_read_only_out_is_one_line(tmp_path, capsys, monkeypatch):
    src = _classes(tmp_path / "src")
    before = _snapshot(tmp_path)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    _fails(
        ["prepare", src, "--out", tmp_path / "new" / "out"], capsys, "cannot write to --out", "read-only file system"
    )
    assert _snapshot(tmp_path) == before  # the folders made for the probe are gone again


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_unwritable_out_folder_is_one_line(tmp_path, capsys):
    src = _classes(tmp_path / "src")
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    try:
        _fails(["prepare", src, "--out", tmp_path / "ro" / "out"], capsys, "--out")
    finally:
        (tmp_path / "ro").chmod(0o755)


def _disk_fills_after(monkeypatch, n_ok: int) -> None:
    calls = {"n": 0}
    real_copy = shutil.copy2

    def full(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > n_ok:
            raise OSError(errno.ENOSPC, "No space left on device", str(args[1]))
        return real_copy(*args, **kwargs)

    monkeypatch.setattr(shutil, "copy2", full)


def test_full_disk_leaves_no_partial_new_dataset(tmp_path, capsys, monkeypatch):
    src, out = _classes(tmp_path / "src"), tmp_path / "parent" / "out"
    _disk_fills_after(monkeypatch, 2)
    _fails(
        ["prepare", src, "--out", out, "--copy", "--workers", "1"], capsys, "no space left", "nothing was left behind"
    )
    assert not (tmp_path / "parent").exists()


def test_full_disk_marks_an_existing_dataset_incomplete_and_train_refuses_it(tmp_path, capsys, monkeypatch):
    src, out = _classes(tmp_path / "src"), tmp_path / "out"
    assert cli(["prepare", src, "--out", out, "--copy", "--workers", "1"], capsys)[0] == 0
    _tree(src, {"cat/new.png": _png(50), "dog/new.png": _png(51)})
    _disk_fills_after(monkeypatch, 1)
    _fails(["prepare", src, "--out", out, "--copy", "--workers", "1"], capsys, "no space left", "is incomplete")
    with pytest.raises(DataError, match="is incomplete"):
        load_training_set(out)
    monkeypatch.undo()
    assert cli(["prepare", src, "--out", out, "--copy", "--workers", "1"], capsys)[0] == 0
    assert len(load_training_set(out).paths) == 6


# --------------------------------------------------------------------------- item 6: CSV pulls in files


def _csv_source(tmp_path: Path, extra_rows: str) -> Path:
    _tree(
        tmp_path / "data", {"imgs/a.png": _png(1), "imgs/b.png": _png(2), "imgs/c.png": _png(3), "imgs/d.png": _png(4)}
    )
    csv = tmp_path / "data" / "labels.csv"
    csv.write_text("path,label\nimgs/a.png,cat\nimgs/b.png,cat\nimgs/c.png,dog\nimgs/d.png,dog\n" + extra_rows)
    return csv


@pytest.mark.parametrize("row", ["/etc/passwd,cat", "../outside.png,dog"])
def test_csv_row_outside_its_folder_is_refused(tmp_path, capsys, row):
    _tree(tmp_path, {"outside.png": _png(9)})
    csv = _csv_source(tmp_path, row + "\n")
    out = tmp_path / "out"
    _fails(["prepare", csv, "--out", out], capsys, "row 6", "outside the CSV's folder", "--allow-outside")
    assert not out.exists()


def test_allow_outside_takes_images_but_never_non_images(tmp_path, capsys):
    _tree(tmp_path, {"outside.png": _png(9)})
    csv = _csv_source(tmp_path, "../outside.png,dog\n/etc/passwd,cat\n")
    out = tmp_path / "out"
    code, _, err = cli(["prepare", csv, "--out", out, "--allow-outside", "--workers", "1"], capsys)
    assert code == 0, err
    paths = set(read_manifest(out)["path"])
    assert "train/dog/outside.png" in paths and not any("passwd" in p for p in paths)
    assert not list(out.rglob("passwd*"))


@pytest.mark.parametrize("name", ["kaggle.json", ".netrc", "server.pem", "id_rsa", "id_rsa.pub", ".env"])
def test_csv_row_naming_a_credential_file_is_refused(tmp_path, capsys, name):
    csv = _csv_source(tmp_path, f"imgs/{name},cat\n")
    _tree(tmp_path / "data", {f"imgs/{name}": b'{"username": "u", "key": "secret"}'})
    out = tmp_path / "out"
    _fails(["prepare", csv, "--out", out], capsys, "row 6", "credential-like")
    assert not out.exists()


def test_csv_row_naming_a_non_image_is_listed_not_copied(tmp_path, capsys, imgclf_log):
    csv = _csv_source(tmp_path, "imgs/notes.txt,cat\n")
    _tree(tmp_path / "data", {"imgs/notes.txt": b"hello"})
    out = tmp_path / "out"
    code, _, err = cli(["prepare", csv, "--out", out, "--workers", "1"], capsys)
    assert code == 0, err
    assert not list(out.rglob("notes.txt"))
    assert "skipped 1 file(s)" in err and "notes.txt" in err


def test_folder_source_never_takes_a_kaggle_json(tmp_path, capsys):
    src = _classes(tmp_path / "src")
    _tree(src, {"cat/kaggle.json": b'{"key": "secret"}'})
    out = tmp_path / "out"
    assert cli(["prepare", src, "--out", out, "--workers", "1"], capsys)[0] == 0
    assert not list(out.rglob("kaggle.json"))


def test_credential_file_in_a_zip_is_never_extracted(tmp_path, capsys):
    src = _tree(
        tmp_path / "dl",
        {
            "train.zip": _zip_bytes(
                {
                    "train/cat/a.png": _png(1),
                    "train/dog/b.png": _png(2),
                    "train/cat/kaggle.json": b'{"key": "secret"}',
                    "keys/id_rsa": b"secret",
                }
            )
        },
    )
    out = tmp_path / "out"
    code, _, err = cli(["prepare", src, "--out", out, "--workers", "1"], capsys)
    assert code == 0, err
    assert not list(out.rglob("kaggle.json")) and not list(out.rglob("id_rsa"))
    assert "not extracting 2 credential-like file(s)" in err


@pytest.mark.parametrize("value", ["0", "-1"])
def test_bad_archive_cap_is_a_config_error(tmp_path, capsys, value):
    src = _classes(tmp_path / "src")
    _fails(["prepare", src, "--out", tmp_path / "out", "--max-archive-gb", value], capsys, "--max-archive-gb")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- item 7: folder links


def test_folder_links_are_not_followed(tmp_path, capsys):
    src = _classes(tmp_path / "src", per_class=3)
    _tree(tmp_path / "elsewhere", {f"x{i}.png": _png(70 + i) for i in range(5)})
    (src / "dog" / "loop").symlink_to("..")
    (src / "cat" / "out").symlink_to(tmp_path / "elsewhere")
    (src / "cat" / "passwd.png").symlink_to("/etc/passwd")  # a file link out of the source
    out = tmp_path / "out"
    code, _, err = cli(["prepare", src, "--out", out, "--workers", "1"], capsys)
    assert code == 0, err
    table = read_manifest(out)
    assert sorted(table["path"]) == sorted(f"train/{c}/{c}{i}.png" for c in ("cat", "dog") for i in range(3))
    assert table["keep"].all()  # no mislabelled copies, so no label conflicts


# --------------------------------------------------------------------------- item 8: zip bombs


def _zip_bytes(entries: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_ratio_bomb_is_refused_before_extraction(tmp_path):
    archive = tmp_path / "bomb.zip"
    archive.write_bytes(_zip_bytes({"cat/a.png": _png(1), "zeros.bin": b"\0" * (3 << 20)}))
    budget = ExtractBudget(ExtractLimits(min_allowance=1 << 20))
    budget.add_source_archive(archive.stat().st_size)
    with pytest.raises(
        DataError, match=r"bomb.zip: its entries declare \d+ bytes, more than the \d+ left of 1048576 bytes, 20 x"
    ):
        safe_extract(archive, tmp_path / "work" / "x", budget=budget)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.zip"]


def test_header_sizes_are_not_trusted(tmp_path):
    data = bytearray(_zip_bytes({"cat/a.png": _png(1), "zeros.bin": b"\0" * (3 << 20)}))
    _patch_central(data, 24, 1)  # every entry claims 1 byte: reading stops there and the CRC-32 fails
    archive = tmp_path / "liar.zip"
    archive.write_bytes(bytes(data))
    with pytest.raises(DataError, match="refusing archive liar.zip: entry 'cat/a.png' is corrupt"):
        safe_extract(archive, tmp_path / "work" / "x", ExtractLimits(min_allowance=1 << 20))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["liar.zip"]


def test_streamed_bytes_are_charged_to_one_budget():
    budget = ExtractBudget(ExtractLimits(max_total_bytes=100, max_files=3))
    budget.charge(Path("a.zip"), "x", n_bytes=60, n_files=1)
    with pytest.raises(
        DataError, match="b.zip: entry 'y' takes the extracted size over 100 bytes, the --max-archive-gb cap"
    ):
        budget.charge(Path("b.zip"), "y", n_bytes=41)
    with pytest.raises(DataError, match="more than 3 files in all archives"):
        budget.charge(Path("b.zip"), "z", n_files=3)


def test_nested_bomb_draws_on_one_budget(tmp_path, capsys):
    inner = {f"inner{i}.zip": _zip_bytes({f"cat/z{i}.bin": b"\0" * (600 << 10)}) for i in range(3)}
    src = _tree(tmp_path / "dl", {"train.zip": _zip_bytes({"cat/a.png": _png(1), "dog/b.png": _png(2), **inner})})
    out = tmp_path / "out"
    before = _snapshot(tmp_path)
    # each archive alone is under 1 MiB; together they are not
    _fails(
        ["prepare", src, "--out", out, "--max-archive-gb", str(1 / 1024)],
        capsys,
        "1048576 bytes, the --max-archive-gb cap",
    )
    assert _snapshot(tmp_path) == before


# --------------------------------------------------------------------------- item 12: corrupt entries


def _patch_central(data: bytearray, offset: int, value: int, fmt: str = "<I") -> None:
    """Overwrite a field of every central-directory record (``offset`` from its signature)."""
    pos = data.find(b"PK\x01\x02")
    while pos != -1:
        struct.pack_into(fmt, data, pos + offset, value)
        pos = data.find(b"PK\x01\x02", pos + 4)


def _bad_crc() -> bytes:
    data = bytearray(_zip_bytes({"train/cat/a.png": _png(1), "train/dog/b.png": _png(2)}, zipfile.ZIP_STORED))
    data[200] ^= 0xFF  # inside the first entry's stored bytes
    return bytes(data)


def _method(code: int) -> bytes:
    data = bytearray(_zip_bytes({"train/cat/a.png": _png(1), "train/dog/b.png": _png(2)}, zipfile.ZIP_STORED))
    _patch_central(data, 10, code, "<H")
    return bytes(data)


def _short_size() -> bytes:
    data = bytearray(_zip_bytes({"train/cat/a.png": _png(1), "train/dog/b.png": _png(2)}))
    _patch_central(data, 24, 10)
    return bytes(data)


def _huge_size() -> bytes:
    data = bytearray(_zip_bytes({"train/cat/a.png": _png(1), "train/dog/b.png": _png(2)}))
    _patch_central(data, 24, 0xFFFFFFF0)
    return bytes(data)


CORRUPT = {
    "bad_crc": (_bad_crc, "is corrupt"),
    "deflate64": (lambda: _method(9), "unsupported compression method 'deflate64'"),
    "unknown_method": (lambda: _method(77), "unsupported compression method '77'"),
    "file_folder_clash": (
        lambda: _zip_bytes({"train/cat": b"x", "train/cat/a.png": _png(1)}),
        "is both a file and a folder",
    ),
    "long_name": (lambda: _zip_bytes({"train/cat/" + "n" * 300 + ".png": _png(1)}), "name too long"),
    "short_size_header": (_short_size, "is corrupt"),
    "huge_size_header": (_huge_size, "zip bomb?"),
    "not_a_zip": (lambda: b"PK\x03\x04" + b"\0" * 50, "not a readable zip"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_zip_is_one_line_and_leaves_no_work_folder(tmp_path, capsys, case):
    make, message = CORRUPT[case]
    src = _tree(tmp_path / "dl", {"train.zip": make()})
    out = tmp_path / "out"
    before = _snapshot(tmp_path)
    _fails(["prepare", src, "--out", out], capsys, "train.zip", message)
    assert _snapshot(tmp_path) == before and not out.exists()


def test_corrupt_zip_into_an_existing_dataset_keeps_it_usable(tmp_path, capsys):
    src, out = _classes(tmp_path / "src"), tmp_path / "out"
    assert cli(["prepare", src, "--out", out, "--workers", "1"], capsys)[0] == 0
    before = _snapshot(out)
    bad = _tree(tmp_path / "dl", {"train.zip": _bad_crc()})
    _fails(["prepare", bad, "--out", out], capsys, "is corrupt")
    after = _snapshot(out)
    assert {k: v for k, v in after.items() if ".imgclf-work" not in k} == {
        k: v for k, v in before.items() if ".imgclf-work" not in k
    }
    assert len(load_training_set(out).paths) == 4


# --------------------------------------------------------------------------- item 14: CSV datasets


def test_blank_label_is_refused_naming_the_row(tmp_path, capsys):
    csv = _csv_source(tmp_path, "\nimgs/a.png,  \n")  # a blank line first: the row number is the line number
    _fails(["prepare", csv, "--out", tmp_path / "out"], capsys, "row 7", "blank label")
    with pytest.raises(DataError, match="row 7: blank label"):
        load_training_set(csv)


def test_duplicate_rows_are_kept_once_with_a_warning(tmp_path, capsys, imgclf_log):
    csv = _csv_source(tmp_path, "imgs/a.png,cat\n./imgs/c.png,dog\n")
    training = load_training_set(csv)
    assert sorted(p.name for p in training.paths) == ["a.png", "b.png", "c.png", "d.png"]
    assert "ignored 2 duplicate row(s), e.g. row 6 repeats row 2" in imgclf_log.text
    out = tmp_path / "out"
    code, _, err = cli(["prepare", csv, "--out", out, "--workers", "1"], capsys)
    assert code == 0, err
    assert sorted(read_manifest(out)["path"]) == [
        "train/cat/a.png",
        "train/cat/b.png",
        "train/dog/c.png",
        "train/dog/d.png",
    ]


# ("cat\ndog" is two tags now: a CSV with such a cell is multilabel, its files flat, and no folder is named by it)
@pytest.mark.parametrize("label", ['"cat\x01dog"', "x" * 260, "..", "a/b"])
def test_label_that_cannot_be_a_folder_name_is_refused(tmp_path, capsys, label):
    csv = _csv_source(tmp_path, f"imgs/e.png,{label}\n")
    _tree(tmp_path / "data", {"imgs/e.png": _png(5)})
    _fails(["prepare", csv, "--out", tmp_path / "out"], capsys, "cannot be used as a class folder name")
    assert not (tmp_path / "out").exists()


def test_same_path_with_two_labels_is_refused(tmp_path, capsys):
    csv = _csv_source(tmp_path, "imgs/a.png,dog\n")
    _fails(["prepare", csv, "--out", tmp_path / "out"], capsys, "row 6", "another label")


def test_image_id_label_header_works_for_train_and_prepare(tmp_path, capsys):
    for i, (name, _cls) in enumerate((("a", "cat"), ("b", "cat"), ("c", "dog"), ("d", "dog"))):
        (tmp_path / "data" / "imgs").mkdir(parents=True, exist_ok=True)
        Image.open(io.BytesIO(_png(i))).save(tmp_path / "data" / "imgs" / f"{name}.tif")
    csv = tmp_path / "data" / "train.csv"
    csv.write_text("image_id,label\nimgs/a.tif,cat\nimgs/b.tif,cat\nimgs/c.tif,dog\nimgs/d.tif,dog\n")
    assert sorted(load_training_set(csv).classes) == ["cat", "dog"]
    out = tmp_path / "out"
    code, _, err = cli(["prepare", csv, "--out", out, "--workers", "1"], capsys)
    assert code == 0, err
    table = read_manifest(out)
    assert len(table) == 4 and table["keep"].all()


@pytest.mark.parametrize(
    ("rows", "message"), [("a,cat\nb,\n", "row 3: label ''"), ("a,cat\nb,dog\na,dog\n", "row 4: 'a' has two labels")]
)
def test_flat_train_folder_labels_csv_names_the_bad_row(tmp_path, capsys, rows, message):
    src = _tree(tmp_path / "dl", {"train/a.png": _png(1), "train/b.png": _png(2)})
    (src / "train.csv").write_text("image_id,label\n" + rows)
    _fails(["prepare", src, "--out", tmp_path / "out"], capsys, message)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- item 15: one-image class


def test_class_with_one_image_gets_a_warning_at_the_split(imgclf_log):
    is_val = stratified_group_split([0, 0, 0, 1], ["a", "b", "c", "d"], 0.3, seed=0, class_names=["cat", "lonely"])
    assert not is_val[3]
    assert "1 class(es) have a single image" in imgclf_log.text and "lonely" in imgclf_log.text


# --------------------------------------------------------------------------- property: corrupted zips


def _base_zip() -> bytes:
    nested = _zip_bytes({"test/t0.png": _png(30), "test/t1.png": _png(31)})
    files = {f"train/{c}/{c}{i}.png": _png(10 * k + i) for k, c in enumerate(("cat", "dog")) for i in range(2)}
    return _zip_bytes({**files, "sample_submission.csv": b"id,label\nt0,cat\n", "test.zip": nested})


_BASE = _base_zip()

_mutation = st.one_of(
    st.tuples(
        st.just("flip"),
        st.lists(st.tuples(st.integers(0, len(_BASE) - 1), st.integers(1, 255)), min_size=1, max_size=8),
    ),
    st.tuples(st.just("truncate"), st.integers(0, len(_BASE) - 1)),
    st.tuples(st.just("insert"), st.tuples(st.integers(0, len(_BASE)), st.binary(min_size=1, max_size=64))),
    st.tuples(st.just("field"), st.tuples(st.sampled_from([10, 20, 24, 28]), st.integers(0, 0xFFFF))),
)


def _mutate(kind: str, arg) -> bytes:
    data = bytearray(_BASE)
    if kind == "flip":
        for pos, mask in arg:
            data[pos] ^= mask
    elif kind == "truncate":
        del data[arg:]
    elif kind == "insert":
        data[arg[0] : arg[0]] = arg[1]
    else:  # a central-directory field: method (10), CRC-32 (16..), sizes (20, 24), name length (28)
        _patch_central(data, arg[0], arg[1], "<H")
    return bytes(data)


@settings(
    max_examples=20, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
@given(mutation=_mutation)
def test_prepare_on_a_corrupted_zip_exits_0_or_2_and_stays_inside_out(tmp_path, capsys, mutation):
    case = Path(tempfile.mkdtemp(dir=tmp_path))
    src = _tree(case / "dl", {"comp.zip": _mutate(*mutation)})
    out = case / "out"
    before = _snapshot(case)
    code, stdout, err = cli(["prepare", src, "--out", out, "--workers", "1"], capsys)
    assert code in (0, 2), err
    assert "Traceback" not in err and len(stdout) + len(err) < 20_000
    assert _snapshot(case, skip=out) == before
    if code == 2:
        assert not out.exists(), sorted(p.name for p in out.rglob("*"))
        assert len([ln for ln in err.splitlines() if ln.startswith("error:")]) == 1
    else:
        assert read_manifest(out) is not None
