"""Issue 29, second red team: bad inputs accepted silently, hangs and storms, and tracebacks where a
damaged input should get one line and exit 2. One test per case, named for it."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY, cli, make_dataset, make_image
from imgclf.errors import DataError
from imgclf.infer.submission import SubmissionFormat, match_sample_ids


def _one_error_line(err: str) -> str:
    """The one ``error:`` line of a command's stderr (a training command logs before it fails)."""
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- prepare: a numeric safety option of inf, nan or <= 0 -------------------------------------------


@pytest.mark.parametrize(
    "option, value",
    [
        ("--max-archive-ratio", "inf"),
        ("--max-archive-ratio", "nan"),
        ("--max-archive-ratio", "0"),
        ("--max-archive-gb", "inf"),
        ("--max-archive-gb", "-1"),
        ("--max-aspect", "inf"),
        ("--min-similarity", "nan"),
        ("--max-drop", "nan"),
    ],
)
def test_prepare_refuses_a_non_finite_or_non_positive_limit(tmp_path: Path, capsys, option: str, value: str):
    data = make_dataset(tmp_path / "src", per_class=2, test=0)
    code, _, err = cli(["prepare", data, "--out", tmp_path / "out", option, value], capsys)
    assert code == 2
    assert option in _one_error_line(err)
    assert not (tmp_path / "out").exists()


# --- predict: the sample submission ---------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    import imgclf

    data = make_dataset(tmp_path_factory.mktemp("data"), per_class=4, test=0)
    out = tmp_path_factory.mktemp("runs") / "run"
    imgclf.train(data, out, overrides=[*TINY, "train.epochs=1"], progress=False, report=False)
    return out


def _test_images(folder: Path, n: int) -> Path:
    rng = np.random.default_rng(3)
    folder.mkdir(parents=True)
    for i in range(n):
        make_image(rng, i % 3).save(folder / f"img_{i:03d}.png")
    return folder


@pytest.fixture
def no_inference(monkeypatch):
    """Fails the test if predict gets as far as loading a model."""
    import imgclf.infer.jobs

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the sample was checked")

    monkeypatch.setattr(imgclf.infer.jobs, "_predict_with_progress", refuse)


def test_header_only_sample_submission_is_one_line_error(run: Path, tmp_path: Path, capsys, no_inference):
    folder = _test_images(tmp_path / "test", 3)
    (tmp_path / "sample_submission.csv").write_text("Id,Category\n")
    code, _, err = cli(["predict", run, folder, "--out", tmp_path / "sub.csv"], capsys)
    assert code == 2 and "has a header but no rows" in _one_error_line(err)
    assert not (tmp_path / "sub.csv").exists()


def test_huge_sample_submission_fails_before_any_model_is_loaded(run: Path, tmp_path: Path, capsys, no_inference):
    folder = _test_images(tmp_path / "test", 5)
    rows = "".join(f"nothing_{i:07d}.jpg,0\n" for i in range(200_000))  # 200k ids naming no image: ~4 MB
    (tmp_path / "sample_submission.csv").write_text("Id,Category\n" + rows)
    code, _, err = cli(["predict", run, folder, "--out", tmp_path / "sub.csv"], capsys)
    line = _one_error_line(err)
    assert code == 2 and "MB, more than a sample for 5 image(s) can be" in line and len(line) < 300
    assert not (tmp_path / "sub.csv").exists()


def test_sample_submission_with_more_ids_than_images_fails_before_any_model_is_loaded(
    run: Path, tmp_path: Path, capsys, no_inference
):
    folder = _test_images(tmp_path / "test", 5)
    (tmp_path / "sample_submission.csv").write_text(
        "Id,Category\n" + "".join(f"img_{i:03d}.png,0\n" for i in range(40))
    )
    code, _, err = cli(["predict", run, folder, "--out", tmp_path / "sub.csv"], capsys)
    assert code == 2 and "lists more ids than the 5 image(s) given" in _one_error_line(err)


def test_sample_ids_naming_no_image_are_matched_in_linear_time_with_a_bounded_message(tmp_path: Path):
    # 20k ids against 20k images, none matching: the old error message compared every id with a set
    # rebuilt per id (ids x images); this test would not finish. The message names three ids at most.
    paths = [tmp_path / f"{i:07d}.jpg" for i in range(20_000)]
    ids = tuple(f"missing-{'x' * 500}-{i}" for i in range(20_000))
    with pytest.raises(DataError) as caught:
        match_sample_ids(SubmissionFormat(ids=ids), paths, tmp_path)
    message = str(caught.value)
    assert "20000 id(s) with no image among the 20000 given" in message
    assert len(message) < 400 and "\n" not in message


def test_a_sample_id_of_ten_thousand_digits_is_not_a_traceback(tmp_path: Path):
    paths = [tmp_path / "0001.jpg"]
    with pytest.raises(DataError, match="1 id\\(s\\) with no image"):
        match_sample_ids(SubmissionFormat(ids=("9" * 10_000,)), paths, tmp_path)


def _sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


# --- train --devices: more processes than the machine holds ---------------------------------------


def test_devices_999_on_the_cpu_is_refused_before_any_process_starts(
    tiny_dataset: Path, tmp_path: Path, capsys, monkeypatch
):
    import torch.multiprocessing as mp

    from imgclf.runtime import usable_cpus

    def refuse(*args, **kwargs):
        raise AssertionError("a process was started")

    monkeypatch.setattr(mp, "start_processes", refuse)
    out = tmp_path / "run"
    code, _, err = cli(
        ["train", tiny_dataset, "--out", out, "--devices", "999", *_sets([*TINY, "train.device=cpu"])], capsys
    )
    line = _one_error_line(err)
    assert code == 2 and "--devices 999" in line and f"may use {usable_cpus()} core(s)" in line
    assert not out.exists()


# --- train.epochs=1 with the default warm-up ------------------------------------------------------


def test_epochs_1_clamps_the_warmup_with_one_log_line(tiny_dataset: Path, tmp_path: Path, capsys):
    import json

    overrides = [o for o in TINY if not o.startswith(("train.warmup_epochs", "train.epochs"))]  # warm-up: the default 1
    out = tmp_path / "run"
    code, _, err = cli(
        ["train", tiny_dataset, "--out", out, *_sets([*overrides, "train.epochs=1", "train.max_steps_per_epoch=2"])],
        capsys,
    )
    assert code == 0, err
    text = " ".join(err.split())  # the log handler may wrap a long line
    assert (
        text.count("does not fit") == 1
        and "train.warmup_epochs=1 does not fit a 1-epoch run: the warm-up is 0 epoch(s)" in text
    )
    assert json.loads((out / "summary.json").read_text())["epochs_run"] == 1


# --- prepare: a PNG saved as .jpg -----------------------------------------------------------------


def test_png_saved_as_jpg_is_flagged_as_wrong_extension_and_kept(tmp_path: Path, capsys):
    from imgclf.data.manifest import read_manifest

    src = make_dataset(tmp_path / "src", per_class=3, test=0)
    png = src / "train" / "alpha" / "alpha_000.png"
    png.rename(png.with_suffix(".jpg"))  # PNG bytes under a JPEG name
    code, _, err = cli(["prepare", src, "--out", tmp_path / "out"], capsys)
    assert code == 0, err
    table = read_manifest(tmp_path / "out").set_index("path")
    row = table.loc["train/alpha/alpha_000.jpg"]
    assert row["format"] == "PNG" and row["flags"] == "wrong_extension" and bool(row["keep"])
    assert "PNG data in a .jpg file" in row["reasons"]
    assert (table.drop(index="train/alpha/alpha_000.jpg")["flags"].fillna("") == "").all()
    assert "wrong_extension" in (tmp_path / "out" / "cleaning_report.md").read_text()


# --- data.augment=strong: posterize at the top magnitude ------------------------------------------


def _strong_with_only_posterize_at_magnitude_10():
    from timm.data.auto_augment import RandAugment

    from imgclf.data.transforms import Preprocessing, train_transform

    transform = train_transform(Preprocessing(32, (0.5,) * 3, (0.5,) * 3), "strong")
    rand = next(t for t in transform.transforms if isinstance(t, RandAugment))
    rand.ops = [op for op in rand.ops if op.name.startswith("Posterize")]
    assert rand.ops, "no posterize op in the strong preset"
    for op in rand.ops:
        op.prob, op.magnitude, op.magnitude_std = 1.0, 10, 0  # 4 - 4 * 10 / 10 = 0 bits asked for
    return transform


def test_strong_augment_posterize_at_zero_bits_gives_an_image_not_an_error():
    image = make_image(np.random.default_rng(0), 1)
    tensor = _strong_with_only_posterize_at_magnitude_10()(image)
    assert tuple(tensor.shape) == (3, 32, 32)


def test_an_augmentation_error_is_never_counted_as_an_unreadable_image(tmp_path: Path):
    from imgclf.data.datasets import ImageDataset

    path = tmp_path / "ok.png"
    make_image(np.random.default_rng(0), 0).save(path)

    def broken_augmentation(image):
        raise ValueError("bits must be between or equal to 1 and 8")

    with pytest.raises(ValueError, match="bits must be"):
        ImageDataset([path], [0], broken_augmentation)[0]
    tensor, label, index, ok = ImageDataset([path], [0], _strong_with_only_posterize_at_magnitude_10())[0]
    assert ok and tuple(tensor.shape) == (3, 32, 32)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert ImageDataset([tmp_path / "bad.png"], [0], broken_augmentation)[0][3] is False  # decoding still counts


# --- a full disk while writing the checkpoint -----------------------------------------------------


class _FullDisk:
    """A file on a disk that fills up after ``room`` bytes: writes then fail with ENOSPC, as the OS says."""

    def __init__(self, fh, room: int):
        self._fh, self._room = fh, room

    def write(self, data) -> int:
        if len(data) > self._room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._fh.write(data)

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


def test_full_disk_while_writing_the_checkpoint_is_one_line_and_keeps_the_previous_one(
    tiny_dataset: Path, tmp_path: Path, capsys, monkeypatch
):
    import builtins

    import imgclf.io
    from imgclf.run.checkpoint import load_training_state

    opened = []

    def open_on_a_filling_disk(path, mode="r", *args, **kwargs):
        fh = builtins.open(path, mode, *args, **kwargs)
        if "w" not in mode:
            return fh
        opened.append(path)
        return _FullDisk(fh, room=100) if len(opened) == 2 else fh  # epoch 2's last.pt: torch gets ENOSPC

    monkeypatch.setattr(imgclf.io, "open", open_on_a_filling_disk, raising=False)
    out = tmp_path / "run"
    code, _, err = cli(["train", tiny_dataset, "--out", out, *_sets([*TINY, "train.max_steps_per_epoch=1"])], capsys)
    line = _one_error_line(err)
    assert code == 2 and len(opened) == 2
    assert "no space left on the device to write" in line and "last.pt is kept" in line and "enforce fail" not in line
    assert load_training_state(out / "checkpoints" / "last.pt")["epoch"] == 0  # epoch 1's, intact
    assert not [p.name for p in (out / "checkpoints").iterdir() if p.name.endswith(".tmp")]


def test_full_disk_in_safetensors_is_a_disk_full_error(tmp_path: Path, monkeypatch):
    import torch
    from safetensors import SafetensorError

    import imgclf.run.checkpoint
    from imgclf.errors import DiskFullError

    def full(*args, **kwargs):
        raise SafetensorError(
            'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
        )

    monkeypatch.setattr(imgclf.run.checkpoint, "save_file", full)
    with pytest.raises(DiskFullError, match="no space left on the device to write .*best.safetensors"):
        imgclf.run.checkpoint.save_weights({"w": torch.zeros(2)}, tmp_path / "best.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_full_disk_while_writing_any_run_file_keeps_the_previous_one(tmp_path: Path, monkeypatch):
    import imgclf.io
    from imgclf.errors import DiskFullError

    (tmp_path / "summary.json").write_text('{"old": true}\n')

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # a disk with delayed allocation fails at fsync

    monkeypatch.setattr(imgclf.io.os, "fsync", full)
    with pytest.raises(
        DiskFullError, match="summary.json \\(nothing was half-written; the previous summary.json is kept\\)"
    ):
        imgclf.io.atomic_write_json(tmp_path / "summary.json", {"new": True})
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    assert (tmp_path / "summary.json").read_text() == '{"old": true}\n'


# --- a secret's value inside a config value -------------------------------------------------------

TOKEN = "tok-5ecret-98765"


@pytest.mark.parametrize("key", ["tracking.experiment", "data.cache_dir"])
def test_secret_inside_a_config_value_is_refused_and_written_nowhere(
    tiny_dataset: Path, tmp_path: Path, capsys, monkeypatch, key: str
):
    monkeypatch.setenv("IMGCLF_TEST_API_TOKEN", TOKEN)
    monkeypatch.chdir(tmp_path)
    value = f"exp-{TOKEN}" if key == "tracking.experiment" else str(tmp_path / f"cache-{TOKEN}")
    out = tmp_path / "run"
    code, stdout, err = cli(
        [
            "train",
            tiny_dataset,
            "--out",
            out,
            *_sets([*TINY, "tracking.enabled=true", "data.cache=true", f"{key}={value}"]),
        ],
        capsys,
    )
    line = _one_error_line(err)
    assert code == 2 and f"config key {key!r} holds the value of a secret" in line
    assert TOKEN not in stdout + err
    assert not out.exists()
    assert not [p for p in tmp_path.rglob("*") if TOKEN in p.name or (p.is_file() and TOKEN.encode() in p.read_bytes())]


def test_a_password_in_the_tracking_uri_is_not_a_secret_in_a_config_value(monkeypatch):
    from imgclf.config import load_config

    monkeypatch.setenv("IMGCLF_TEST_API_TOKEN", TOKEN)
    cfg = load_config(None, [f"tracking.uri=http://me:{TOKEN}@localhost:5000?token={TOKEN}"])
    assert TOKEN in cfg.tracking.uri  # mask_url hides it wherever the URI is written (config.yaml, MLflow tags)


@pytest.mark.parametrize("fmt, name", [("onnx", "model.onnx"), ("torchscript", "model.torchscript.pt")])
def test_full_disk_while_exporting_is_one_line_and_leaves_no_file(
    tiny_dataset: Path, tmp_path: Path, capsys, monkeypatch, fmt, name
):
    """torch.jit.save and torch.onnx.export report a full disk as their own RuntimeError; the export writes through a
    stream of ours instead, so it is the one-line disk-full error, and no half-written model is left behind."""
    import builtins

    import imgclf.io

    out = tmp_path / "run"
    assert (
        cli(
            ["train", tiny_dataset, "--out", out, *_sets([*TINY, "train.epochs=1", "train.max_steps_per_epoch=1"])],
            capsys,
        )[0]
        == 0
    )

    def open_on_a_full_disk(path, mode="r", *args, **kwargs):
        fh = builtins.open(path, mode, *args, **kwargs)
        return _FullDisk(fh, room=100) if "w" in mode and name in Path(path).name else fh

    monkeypatch.setattr(imgclf.io, "open", open_on_a_full_disk, raising=False)
    code, _, err = cli(["export", out, "--format", fmt], capsys)
    line = _one_error_line(err)
    assert code == 2 and "no space left on the device to write" in line and name in line
    assert not (out / "export").exists() or list((out / "export").iterdir()) == []
