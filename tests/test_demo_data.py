"""The embedded demo data and the competition folder built from it."""

from __future__ import annotations

import csv
import json
import os
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.data.demo import (
    CLASS_NAMES,
    DEMO_NPZ,
    SORTED_CLASS_NAMES,
    load_demo_arrays,
    materialise_demo,
    score_submission,
)
from imgclf.errors import ConfigError, DataError

PER_CLASS = 5
N_TEST = 1000


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return materialise_demo(tmp_path_factory.mktemp("demo") / "demo-data", train_per_class=PER_CLASS)


def test_embedded_npz_is_found_as_package_data_and_small():
    resource = resources.files("imgclf.data") / "demo_data" / DEMO_NPZ
    assert resource.is_file()
    assert len(resource.read_bytes()) < 5_000_000


def test_embedded_arrays_are_a_balanced_greyscale_subset():
    arrays = load_demo_arrays()
    assert arrays.x_train.shape == (3000, 28, 28) and arrays.x_train.dtype == np.uint8
    assert arrays.x_test.shape == (1000, 28, 28) and arrays.x_test.dtype == np.uint8
    assert np.bincount(arrays.y_train).tolist() == [300] * 10
    assert np.bincount(arrays.y_test).tolist() == [100] * 10


def test_layout_has_ten_class_folders_with_the_requested_count(demo):
    train = demo.dataset / "train"
    assert sorted(os.listdir(train)) == list(SORTED_CLASS_NAMES)
    assert set(CLASS_NAMES) == set(SORTED_CLASS_NAMES)
    for name in CLASS_NAMES:
        files = list((train / name).iterdir())
        assert len(files) == PER_CLASS
        assert all(f.suffix == ".png" for f in files)
    assert len(list((demo.dataset / "test").iterdir())) == N_TEST
    assert demo.answers == demo.root / "answers" / "test_labels.csv"
    assert not (demo.dataset / "answers").exists()  # labels are not handed out


def test_images_decode_as_28px_greyscale(demo):
    some_train = next((demo.dataset / "train" / "Bag").iterdir())
    some_test = demo.dataset / "test" / "test_00001.png"
    for path in (some_train, some_test):
        with Image.open(path) as image:
            assert image.format == "PNG" and image.mode == "L" and image.size == (28, 28)
            assert np.asarray(image).max() > 0  # not blank


def test_sample_submission_lists_every_test_file(demo):
    with open(demo.dataset / "sample_submission.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert header == ["Id", "Category"]
    rows = read_csv(demo.dataset / "sample_submission.csv")
    assert sorted(r["Id"] for r in rows) == sorted(os.listdir(demo.dataset / "test"))
    assert {r["Category"] for r in rows} == {"0"}


def test_answers_hold_sorted_order_indices_matching_names(demo):
    rows = read_csv(demo.answers)
    assert len(rows) == N_TEST
    assert [r["Id"] for r in rows] == [r["Id"] for r in read_csv(demo.dataset / "sample_submission.csv")]
    for r in rows:
        assert SORTED_CLASS_NAMES[int(r["Category"])] == r["label"]
    assert {r["label"] for r in rows} == set(CLASS_NAMES)


def test_rerun_with_same_parameters_touches_nothing(demo):
    probe = demo.dataset / "test" / "test_00001.png"
    before = (probe.stat().st_mtime_ns, demo.root.stat().st_mtime_ns, (demo.root / ".complete").stat().st_mtime_ns)
    again = materialise_demo(demo.root, train_per_class=PER_CLASS)
    assert again == demo
    after = (probe.stat().st_mtime_ns, demo.root.stat().st_mtime_ns, (demo.root / ".complete").stat().st_mtime_ns)
    assert after == before
    assert not [p for p in demo.root.parent.iterdir() if p.name.startswith(".")]  # no leftovers


def test_different_train_per_class_rebuilds(tmp_path):
    root = tmp_path / "d"
    materialise_demo(root, train_per_class=2)
    materialise_demo(root, train_per_class=3)
    assert len(list((root / "dataset" / "train" / "Coat").iterdir())) == 3
    assert json.loads((root / ".complete").read_text())["train_per_class"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # old copy and staging gone


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match="not an imgclf demo folder"):
        materialise_demo(tmp_path, train_per_class=1)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_incomplete_folder_from_a_crash_is_rebuilt(tmp_path):
    root = tmp_path / "d"
    materialise_demo(root, train_per_class=1)
    (root / ".complete").write_text("{}")  # as if a different or unfinished build
    materialise_demo(root, train_per_class=1)
    assert json.loads((root / ".complete").read_text())["train_per_class"] == 1


def test_train_per_class_out_of_range_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        materialise_demo(tmp_path / "d", train_per_class=0)
    with pytest.raises(ConfigError):
        materialise_demo(tmp_path / "d", train_per_class=301)


def test_perfect_submission_scores_one_by_index_or_name(demo, tmp_path):
    rows = read_csv(demo.answers)
    by_index = write_csv(tmp_path / "a.csv", ["Id", "Category"], [[r["Id"], r["Category"]] for r in reversed(rows)])
    by_name = write_csv(tmp_path / "b.csv", ["Id", "Category"], [[r["Id"], r["label"]] for r in rows])
    assert score_submission(by_index, demo.answers) == {"accuracy": 1.0, "correct": N_TEST, "count": N_TEST}
    assert score_submission(by_name, demo.answers)["accuracy"] == 1.0


def test_partly_wrong_submission_scores_the_right_fraction(demo, tmp_path):
    rows = read_csv(demo.answers)
    wrong = {r["Id"] for r in rows[:250]}
    sub = [[r["Id"], (int(r["Category"]) + 1) % 10 if r["Id"] in wrong else r["Category"]] for r in rows]
    result = score_submission(write_csv(tmp_path / "s.csv", ["Id", "Category"], sub), demo.answers)
    assert result == {"accuracy": 0.75, "correct": 750, "count": N_TEST}


def test_sample_submission_scores_as_class_zero_share(demo):
    result = score_submission(demo.dataset / "sample_submission.csv", demo.answers)
    assert result["accuracy"] == pytest.approx(0.1)  # balanced test set, all predicted class 0


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda rows: rows[1:], "lacks 1 of 1000"),
        (lambda rows: rows + [["test_99999.png", "0"]], "not in the test set"),
        (lambda rows: rows + [rows[0]], "twice"),
        (lambda rows: [[rows[0][0], "Jumper"]] + rows[1:], "neither a class index"),
        (lambda rows: [[rows[0][0], "10"]] + rows[1:], "neither a class index"),
    ],
)
def test_bad_submission_raises_one_line_data_error(demo, tmp_path, edit, message):
    rows = [[r["Id"], r["Category"]] for r in read_csv(demo.answers)]
    path = write_csv(tmp_path / "bad.csv", ["Id", "Category"], edit(rows))
    with pytest.raises(DataError, match=message) as info:
        score_submission(path, demo.answers)
    assert "\n" not in str(info.value)


def test_submission_without_category_column_is_a_data_error(demo, tmp_path):
    path = write_csv(tmp_path / "bad.csv", ["Id", "Label"], [["test_00001.png", "0"]])
    with pytest.raises(DataError, match="missing Category"):
        score_submission(path, demo.answers)
    with pytest.raises(DataError, match="does not exist"):
        score_submission(tmp_path / "nope.csv", demo.answers)
