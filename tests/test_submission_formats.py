"""Submission formats competitions use: ids by file name, stem or number; wide probability samples;
names without a sample; files, globs and .tif as input. One tiny run is trained for the module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY, cli, make_dataset, make_image
from imgclf.errors import DataError
from imgclf.infer.submission import SubmissionFormat, match_sample_ids, read_format

CLASSES = ["alpha", "beta", "gamma"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    import imgclf

    data = make_dataset(tmp_path_factory.mktemp("data"), test=0)
    out = tmp_path_factory.mktemp("runs") / "run"
    imgclf.train(data, out, overrides=[*TINY, "train.epochs=1"], progress=False, report=False)
    return out


def _test_folder(root: Path, names: list[str]) -> Path:
    rng = np.random.default_rng(1)
    folder = root / "test"
    folder.mkdir(parents=True)
    for i, name in enumerate(names):
        make_image(rng, i % 3).save(folder / name)
    return folder


def _predict(run: Path, images, out: Path, capsys, *extra) -> str:
    code, _, err = cli(
        ["predict", run, *([images] if isinstance(images, (str, Path)) else images), "--out", out, *extra], capsys
    )
    assert code == 0, err
    return err


# --- id matching and format detection, no model -------------------------------------------------


def test_ids_match_by_name_stem_and_number(tmp_path: Path):
    paths = [tmp_path / "0001.jpg", tmp_path / "0002.jpg", tmp_path / "0010.jpg"]
    for ids, expected in (
        (("0002.jpg", "0001.jpg"), paths[1::-1]),
        (("0010", "0001"), [paths[2], paths[0]]),
        (("10", "2"), [paths[2], paths[1]]),
    ):
        assert match_sample_ids(SubmissionFormat(ids=ids), paths, tmp_path) == expected


def test_two_files_with_one_stem_are_an_error(tmp_path: Path):
    paths = [tmp_path / "0001.jpg", tmp_path / "0001.png"]
    with pytest.raises(DataError, match=r"id '0001' matches 2 images by stem \(0001.jpg, 0001.png\)"):
        match_sample_ids(SubmissionFormat(ids=("0001",)), paths, tmp_path)


def test_unknown_id_names_an_example(tmp_path: Path):
    with pytest.raises(DataError, match="1 id\\(s\\) with no image .* e.g. 'zzz'"):
        match_sample_ids(SubmissionFormat(ids=("a", "zzz")), [tmp_path / "a.jpg"], tmp_path)


def test_read_format_detects_the_four_sample_shapes(tmp_path: Path):
    shapes = {
        "Id,Category\n0001.jpg,0\n": ("Id", "index"),
        "image_id,label\n0001,alpha\n": ("image_id", "name"),
        "id,alpha,beta,gamma\n0001,0.33,0.33,0.34\n": ("id", "probs"),
        "id,label\n1,2\n": ("id", "index"),
    }
    for text, (id_col, category) in shapes.items():
        (tmp_path / "s.csv").write_text(text)
        fmt = read_format(tmp_path / "s.csv", CLASSES)
        assert (fmt.id_column, fmt.category) == (id_col, category), text
    assert read_format(None, CLASSES).category == "name"


def test_wide_sample_with_other_columns_is_one_line_error(tmp_path: Path):
    (tmp_path / "s.csv").write_text("id,cat,dog,fox\n1,0.3,0.3,0.4\n")
    with pytest.raises(DataError, match="not the run's 3 classes"):
        read_format(tmp_path / "s.csv", CLASSES)


# --- through the CLI with a trained run ----------------------------------------------------------


def test_id_category_sample_with_extensions(run: Path, tmp_path: Path, capsys):
    folder = _test_folder(tmp_path, ["b.jpg", "a.jpg", "c.jpg"])
    (tmp_path / "sample_submission.csv").write_text("Id,Category\nc.jpg,0\na.jpg,0\nb.jpg,0\n")
    _predict(run, folder, tmp_path / "sub.csv", capsys)
    sub = pd.read_csv(tmp_path / "sub.csv")
    assert list(sub.columns) == ["Id", "Category"] and list(sub["Id"]) == ["c.jpg", "a.jpg", "b.jpg"]
    assert set(sub["Category"]) <= {0, 1, 2}


def test_image_id_label_sample_with_stems(run: Path, tmp_path: Path, capsys):
    folder = _test_folder(tmp_path, ["0000.jpg", "0001.jpg", "0002.jpg", "extra.jpg"])
    (tmp_path / "sample_submission.csv").write_text("image_id,label\n0002,alpha\n0000,alpha\n0001,alpha\n")
    _predict(run, folder, tmp_path / "sub.csv", capsys)
    sub = pd.read_csv(tmp_path / "sub.csv", dtype=str)
    assert list(sub.columns) == ["image_id", "label"] and list(sub["image_id"]) == ["0002", "0000", "0001"]
    assert set(sub["label"]) <= set(CLASSES)


def test_wide_sample_gets_calibrated_probabilities_in_its_column_order(run: Path, tmp_path: Path, capsys):
    from imgclf.infer.predict import predict_paths
    from imgclf.run.load import load_run

    folder = _test_folder(tmp_path, ["0000.png", "0001.png", "0002.png"])
    (tmp_path / "sample_submission.csv").write_text(
        "id,gamma,alpha,beta\n0001,0.33,0.33,0.34\n0000,0.33,0.33,0.34\n0002,0.33,0.33,0.34\n"
    )
    _predict(run, folder, tmp_path / "sub.csv", capsys, "--tta", "none")
    sub = pd.read_csv(tmp_path / "sub.csv", dtype={"id": str})
    assert list(sub.columns) == ["id", "gamma", "alpha", "beta"] and list(sub["id"]) == ["0001", "0000", "0002"]
    loaded = load_run(run)
    assert loaded.temperature != 1.0  # the run was calibrated, so the check below is not trivial
    paths = [folder / f"{i}.png" for i in ("0001", "0000", "0002")]
    logits = torch.from_numpy(predict_paths(loaded, paths, root=tmp_path, calibrated=False).logits)
    expected = torch.softmax(logits / loaded.temperature, 1).numpy()[:, [2, 0, 1]]
    np.testing.assert_allclose(sub[["gamma", "alpha", "beta"]].to_numpy(), expected, atol=2e-6)


def test_numeric_id_sample_matches_zero_padded_files(run: Path, tmp_path: Path, capsys):
    folder = _test_folder(tmp_path, ["001.jpg", "002.jpg", "010.jpg"])
    (tmp_path / "sample_submission.csv").write_text("id,label\n10,0\n1,0\n2,0\n")
    _predict(run, folder, tmp_path / "sub.csv", capsys)
    sub = pd.read_csv(tmp_path / "sub.csv")
    assert list(sub["id"]) == [10, 1, 2] and set(sub["label"]) <= {0, 1, 2}


def test_bad_ids_fail_before_any_inference(run: Path, tmp_path: Path, capsys, monkeypatch):
    import imgclf.infer.jobs

    def no_inference(*args, **kwargs):
        raise AssertionError("inference ran before the id check")

    monkeypatch.setattr(imgclf.infer.jobs, "predict_paths", no_inference)
    folder = _test_folder(tmp_path, ["0000.jpg", "0000.png", "0001.jpg"])
    (tmp_path / "sample_submission.csv").write_text("image_id,label\n0000,alpha\n")
    code, _, err = cli(["predict", run, folder, "--out", tmp_path / "sub.csv", "--tta", "adaptive"], capsys)
    assert code == 2 and "matches 2 images by stem" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "sample_submission.csv").write_text("image_id,label\n0007,alpha\n")
    code, _, err = cli(["predict", run, folder, "--out", tmp_path / "sub.csv"], capsys)
    assert code == 2 and "e.g. '0007'" in err
    assert not (tmp_path / "sub.csv").exists()


def test_no_sample_writes_class_names(run: Path, tmp_path: Path, capsys):
    folder = _test_folder(tmp_path, ["x.jpg", "y.jpg"])
    _predict(run, folder, tmp_path / "sub.csv", capsys)
    sub = pd.read_csv(tmp_path / "sub.csv")
    assert list(sub["Id"]) == ["x.jpg", "y.jpg"] and set(sub["Category"]) <= set(CLASSES)


def test_predict_takes_files_globs_and_tif(run: Path, tmp_path: Path, capsys):
    folder = _test_folder(tmp_path, ["a.tif", "b.tiff", "c.jpg", "d.png"])
    _predict(run, [folder / "c.jpg", folder / "d.png"], tmp_path / "files.csv", capsys)
    assert list(pd.read_csv(tmp_path / "files.csv")["Id"]) == ["c.jpg", "d.png"]
    _predict(run, str(folder / "*.tif*"), tmp_path / "glob.csv", capsys)
    assert list(pd.read_csv(tmp_path / "glob.csv")["Id"]) == ["a.tif", "b.tiff"]
    _predict(run, folder, tmp_path / "folder.csv", capsys)
    assert len(pd.read_csv(tmp_path / "folder.csv")) == 4
    code, _, err = cli(["predict", run, str(folder / "*.gif"), "--out", tmp_path / "none.csv"], capsys)
    assert code == 2 and "no images match" in err
