"""Labels CSVs with a class, tags, 0/1 label columns or a number (imgclf.data.targets), and how
load_training_set and the loaders carry multilabel and regression targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from imgclf.data.csvlist import read_path_label_csv
from imgclf.data.datasets import ImageDataset, collate_skip_bad
from imgclf.data.samples import load_training_set, multilabel_strata, regression_strata
from imgclf.data.targets import read_targets
from imgclf.errors import DataError
from conftest import make_dataset

PLANET_TAGS = [
    "clear primary",
    "haze primary",
    "agriculture clear primary",
    "clear water",
    "haze",
    "agriculture primary water",
]


def _images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"not decoded here")


def _csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "".join(row + "\n" for row in rows))
    return path


def _planet(tmp_path: Path) -> Path:
    _images(tmp_path / "train-jpg", [f"train_{i}.jpg" for i in range(len(PLANET_TAGS))])
    return _csv(tmp_path / "train_v2.csv", "image_name,tags", [f"train_{i},{t}" for i, t in enumerate(PLANET_TAGS)])


def _pathology(tmp_path: Path, rows: list[str] | None = None) -> Path:
    rows = rows or ["1,0,0,0", "0,1,0,0", "0,0,1,0", "0,0,0,1", "1,0,0,0", "0,0,1,1"]
    _images(tmp_path / "images", [f"Train_{i}.jpg" for i in range(len(rows))])
    header = "image_id,healthy,multiple_diseases,rust,scab"
    return _csv(tmp_path / "train.csv", header, [f"Train_{i},{r}" for i, r in enumerate(rows)])


def _pawpularity(tmp_path: Path, scores: list[str] | None = None) -> Path:
    scores = scores or [str(v) for v in range(1, 100, 4)]  # 25 distinct integers
    _images(tmp_path / "train", [f"{i:04x}.jpg" for i in range(len(scores))])
    rows = [f"{i:04x},{i % 2},{(i // 2) % 2},{s}" for i, s in enumerate(scores)]
    return _csv(tmp_path / "train.csv", "Id,Eyes,Blur,Pawpularity", rows)


def _one_line_error(match: str, *args, **kwargs) -> str:
    with pytest.raises(DataError, match=match) as info:
        read_targets(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# -- each layout, detected ---------------------------------------------------------------------------------------


def test_tags_layout_detected_with_stem_lookup(tmp_path):
    table = read_targets(_planet(tmp_path))
    assert (table.task, table.layout) == ("multilabel", "tags")
    assert table.names == ["agriculture", "clear", "haze", "primary", "water"]
    assert table.values.dtype == np.float32 and table.values.shape == (6, 5)
    assert table.values[2].tolist() == [1, 1, 0, 1, 0]
    assert table.paths[0] == tmp_path / "train-jpg" / "train_0.jpg"
    assert table.found.startswith("multilabel (tags) from column 'tags'")
    assert "5 labels, 2.2 per image, label frequency 33%–67%" in table.found


def test_label_columns_layout_detected_in_file_order(tmp_path):
    table = read_targets(_pathology(tmp_path))
    assert (table.task, table.layout) == ("multilabel", "columns")
    assert table.names == ["healthy", "multiple_diseases", "rust", "scab"]
    assert table.values[5].tolist() == [0, 0, 1, 1]
    assert table.paths[1] == tmp_path / "images" / "Train_1.jpg"
    assert table.found.startswith("multilabel (columns) from 4 columns of 0/1; 4 labels, 1.2 per image")


def test_id_columns_are_not_label_columns(tmp_path):
    _images(tmp_path, [f"{i}.png" for i in range(3)])
    csv = _csv(tmp_path / "t.csv", "StudyInstanceUID,a,b,PatientID", ["0.png,1,0,p1", "1.png,0,1,p2", "2.png,1,1,p1"])
    assert read_targets(csv).names == ["a", "b"]


def test_regression_detected_from_many_distinct_integers(tmp_path):
    table = read_targets(_pawpularity(tmp_path))
    assert (table.task, table.layout, table.names) == ("regression", "numeric", ["Pawpularity"])
    assert table.values.dtype == np.float32 and table.values.shape == (25, 1)
    assert table.values[:2, 0].tolist() == [1.0, 5.0]
    assert "column 'Pawpularity', the one numeric column that is not 0/1: 25 distinct integers" in table.found


def test_regression_detected_from_non_integer_values(tmp_path):
    _images(tmp_path, ["a.png", "b.png", "c.png"])
    table = read_targets(_csv(tmp_path / "t.csv", "path,target", ["a.png,0.5", "b.png,1", "c.png,2.25"]))
    assert table.task == "regression" and "non-integer numbers" in table.found


def test_digit_classes_and_integer_grades_stay_multiclass(tmp_path):
    _images(tmp_path, [f"{i}.png" for i in range(10)])
    table = read_targets(_csv(tmp_path / "t.csv", "id_code,diagnosis", [f"{i}.png,{i % 5}" for i in range(10)]))
    assert (table.task, table.layout, table.names) == ("multiclass", "label", ["0", "1", "2", "3", "4"])
    assert table.values.dtype == np.int64 and table.values[:6].tolist() == [0, 1, 2, 3, 4, 0]
    assert "5 distinct integers read as classes (task=regression to regress)" in table.found


def test_headerless_csv_is_multiclass(tmp_path):
    _images(tmp_path, ["a.png", "b.png"])
    table = read_targets(_csv(tmp_path / "t.csv", "a.png,cat", ["b.png,dog"]))
    assert (table.task, table.names, table.values.tolist()) == ("multiclass", ["cat", "dog"], [0, 1])
    assert table.found.startswith("multiclass (label) from no header")


# -- overrides -----------------------------------------------------------------------------------------------------


def test_task_regression_overrides_integer_grades(tmp_path):
    _images(tmp_path, [f"{i}.png" for i in range(5)])
    csv = _csv(tmp_path / "t.csv", "id_code,diagnosis", [f"{i}.png,{i}" for i in range(5)])
    table = read_targets(csv, task="regression")
    assert table.task == "regression" and table.values[:, 0].tolist() == [0, 1, 2, 3, 4]
    assert "task=regression" in table.found


def test_task_multilabel_on_single_tokens_reads_one_tag_each(tmp_path):
    _images(tmp_path, ["a.png", "b.png", "c.png"])
    table = read_targets(_csv(tmp_path / "t.csv", "path,label", ["a.png,cat", "b.png,dog", "c.png,cat"]), "multilabel")
    assert (table.layout, table.names, table.values.tolist()) == ("tags", ["cat", "dog"], [[1, 0], [0, 1], [1, 0]])


def test_task_multiclass_overrides_regression(tmp_path):
    table = read_targets(_pawpularity(tmp_path), task="multiclass", target_column="Pawpularity")
    assert table.task == "multiclass" and len(table.names) == 25


def test_target_column_picks_the_column(tmp_path):
    _images(tmp_path, ["a.png", "b.png", "c.png"])
    csv = _csv(tmp_path / "t.csv", "path,x,y", ["a.png,0.5,3.5", "b.png,1.5,2.5", "c.png,2.5,1.5"])
    _one_line_error(r"several numeric columns \('x', 'y'\).*data.target_column", csv)
    table = read_targets(csv, target_column="y")
    assert table.names == ["y"] and table.values[:, 0].tolist() == [3.5, 2.5, 1.5]
    _one_line_error(r"has no column 'z' \(data.target_column\); its columns: path, x, y", csv, target_column="z")


# -- bad input: one line naming the thing -------------------------------------------------------------------------


def test_non_numeric_value_with_task_regression_names_line_and_value(tmp_path):
    _images(tmp_path, ["a.png", "b.png"])
    csv = _csv(tmp_path / "t.csv", "path,label", ["a.png,1.5", "b.png,cat"])
    _one_line_error(r"row 3: 'cat' in column 'label' is not a number", csv, task="regression")


def test_blank_and_nan_targets_name_the_line(tmp_path):
    _images(tmp_path, ["a.png", "b.png", "c.png"])
    nan = _csv(tmp_path / "n.csv", "path,target", ["a.png,1.5", "b.png,nan", "c.png,2"])
    _one_line_error(r"row 3: target 'nan' in column 'target' is not finite", nan, task="regression")
    blank = _csv(tmp_path / "b.csv", "path,tags", ["a.png,x y", "b.png,", "c.png,y"])
    _one_line_error(r"row 3: blank tags in column 'tags'", blank, task="multilabel")
    blank01 = _csv(tmp_path / "c.csv", "path,a,b", ["a.png,1,0", "b.png,,1", "c.png,0,1"])
    _one_line_error(r"row 3: column 'a' holds a blank", blank01)


def test_label_column_all_zeros_or_all_ones_is_named(tmp_path):
    _pathology(tmp_path, ["1,0,0,0", "0,0,1,0", "0,0,0,1"])
    _one_line_error(r"label column 'multiple_diseases' is 0 on every row", tmp_path / "train.csv")
    _pathology(tmp_path, ["1,1,0,0", "0,1,1,0", "0,1,0,1"])
    _one_line_error(r"label 'multiple_diseases' is on every row; it carries no information", tmp_path / "train.csv")


def test_mixed_layouts_are_refused(tmp_path):
    rows = [f"{i},{r}" for i, r in enumerate(["1,0,0,0", "0,1,0,0", "0,0,2,0"] + ["1,0,0,1"] * 27)]
    _images(tmp_path, [f"{i}.png" for i in range(30)])
    typo = _csv(tmp_path / "t.csv", "image_id,healthy,multiple_diseases,rust,scab", rows)
    _one_line_error(r"row 4: column 'rust' holds '2' among 0/1 label columns", typo)
    tags = [f"{i}.png,{t},{i % 2}" for i, t in enumerate(PLANET_TAGS)]
    mixed = _csv(tmp_path / "m.csv", "path,tags,cloudy", tags)
    _one_line_error(r"mixes layouts: tags in column 'tags' and 0/1 column 'cloudy'", mixed)


def test_fewer_than_two_rows_are_refused(tmp_path):
    _images(tmp_path, ["a.png"])
    _one_line_error(
        r"1 data row\(s\); training needs at least 2", _csv(tmp_path / "t.csv", "path,target", ["a.png,1.5"])
    )


def test_duplicate_path_with_different_targets_is_refused(tmp_path):
    _images(tmp_path, ["a.png", "b.png"])
    csv = _csv(tmp_path / "t.csv", "path,target", ["a.png,1.5", "b.png,2", "a.png,3.5"])
    _one_line_error(r"row 4: 'a.png' is listed again with another target \(first on row 2\)", csv)
    same = _csv(tmp_path / "s.csv", "path,target", ["a.png,1.5", "b.png,2", "a.png,1.5"])
    assert len(read_targets(same).paths) == 2


def test_csv_without_header_is_refused_for_new_layouts(tmp_path):
    _images(tmp_path, ["a.png", "b.png"])
    csv = _csv(tmp_path / "t.csv", "a.png,1.5", ["b.png,2.5"])
    _one_line_error(r"no header row; task=regression needs one", csv, task="regression")


def test_missing_and_ambiguous_stems_are_one_line_errors(tmp_path):
    _images(tmp_path / "train", ["a.jpg", "b.jpg"])
    _images(tmp_path / "extra", ["b.png"])
    missing = _csv(tmp_path / "m.csv", "path,target", ["a,1.5", "x,2", "y,3"])
    _one_line_error(r"lists 2 missing file\(s\), e.g. 'x' on row 3", missing)
    ambiguous = _csv(tmp_path / "a.csv", "path,target", ["a,1.5", "b,2"])
    _one_line_error(r"row 3: 'b' matches 2 image files \(extra/b.png, train/b.jpg\)", ambiguous)


def test_stem_lookup_matches_a_name_with_extension_and_never_a_cell_with_a_folder(tmp_path):
    _images(tmp_path / "train_images", ["10.jpg", "11.jpg"])
    _images(tmp_path / "imgs" / "dog", ["1.jpg"])
    named = _csv(tmp_path / "n.csv", "image_id,target", ["10.jpg,0.5", "11.jpg,1.5"])
    assert read_targets(named).paths == [tmp_path / "train_images" / "10.jpg", tmp_path / "train_images" / "11.jpg"]
    other_ext = _csv(tmp_path / "e.csv", "image_id,target", ["10.png,0.5", "11.jpg,1.5"])
    _one_line_error(r"lists 1 missing file\(s\), e.g. '10.png' on row 2", other_ext)
    folder = _csv(tmp_path / "f.csv", "path,target", ["imgs/cat/1.jpg,0.5", "11.jpg,1.5"])
    _one_line_error(r"lists 1 missing file\(s\), e.g. 'imgs/cat/1.jpg' on row 2", folder)


def test_a_column_ending_in_valid_is_not_an_id(tmp_path):
    _images(tmp_path, ["a.png", "b.png", "c.png"])
    csv = _csv(tmp_path / "t.csv", "path,valid,PatientID,fluid", ["a.png,1,p,0", "b.png,0,q,1", "c.png,1,p,1"])
    assert read_targets(csv).names == ["valid", "fluid"]


# -- load_training_set ---------------------------------------------------------------------------------------------


def _old_training_set(csv: Path) -> tuple[list[Path], list[int], list[str]]:
    """What load_training_set gave for a path,label CSV before labels CSVs had layouts."""
    rows = read_path_label_csv(csv)
    classes = sorted({r.label for r in rows})
    return [r.path for r in rows], [classes.index(r.label) for r in rows], classes


def test_multiclass_csv_gives_the_old_training_set(tmp_path):
    root = make_dataset(tmp_path / "data", per_class=3, test=0)
    lines = [f"train/{p.parent.name}/{p.name},{p.parent.name}" for p in sorted((root / "train").rglob("*.png"))]
    for header in ("path,label", None):
        csv = _csv(root / "list.csv", header or lines[0], lines if header else lines[1:])
        got = load_training_set(csv)
        assert (got.paths, got.labels, got.classes) == _old_training_set(csv)
        assert (got.task, got.targets, got.groups[:2]) == ("multiclass", None, ["#0", "#1"])
        folder = load_training_set(root)
        assert (got.paths, got.labels, got.classes) == (folder.paths, folder.labels, folder.classes)


def test_kaggle_layout_folder_loads_through_its_csv(tmp_path):
    _pawpularity(tmp_path)
    (tmp_path / "blocklist.csv").write_text("path,reason\ntrain/0001.jpg,blurred\n")
    got = load_training_set(tmp_path)
    assert got.task == "regression" and got.classes == ["Pawpularity"] and len(got.paths) == 24
    assert got.targets.shape == (24, 1) and got.targets[0, 0] == 1.0 and got.targets[1, 0] == 9.0
    assert got.labels == regression_strata(got.targets) and max(got.labels) == 9
    assert got.excluded[0]["path"] == "train/0001.jpg" and "Pawpularity" in got.found


def test_kaggle_layout_folder_multilabel_and_class_folders_unchanged(tmp_path):
    _pathology(tmp_path)
    got = load_training_set(tmp_path)
    assert got.task == "multilabel" and got.labels == multilabel_strata(got.targets)
    make_dataset(tmp_path / "folders", per_class=2, test=0)
    (tmp_path / "folders" / "train.csv").write_text("path,target\nx,1.5\ny,2.5\n")
    assert load_training_set(tmp_path / "folders").task == "multiclass"


def test_strata_keys():
    assert regression_strata([1.0, 2.0, 3.0, 4.0], bins=2) == [0, 0, 1, 1]
    assert regression_strata([5.0, 5.0, 7.0]) == [0, 0, 1]
    assert sorted(set(regression_strata(np.arange(100.0)))) == list(range(10))
    assert multilabel_strata([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1]]) == [1, 0, 3, 2]


# -- loaders -------------------------------------------------------------------------------------------------------


def test_collate_builds_float_targets_for_array_labels_and_int64_classes_otherwise(tmp_path):
    make_dataset(tmp_path, classes=("a", "b"), per_class=1, test=0)
    paths = sorted((tmp_path / "train").rglob("*.png"))

    def to_tensor(image):
        return torch.zeros(3, 4, 4)

    rows = [np.array([1.0, 0.0, 1.0], dtype=np.float32), np.array([0.0, 1.0, 0.0], dtype=np.float32)]
    _, labels, _, _ = collate_skip_bad([ImageDataset(paths, rows, to_tensor)[i] for i in range(2)])
    assert labels.dtype == torch.float32 and labels.tolist() == [[1, 0, 1], [0, 1, 0]]
    _, labels, _, _ = collate_skip_bad([ImageDataset(paths, [1, 0], to_tensor)[i] for i in range(2)])
    assert labels.dtype == torch.int64 and labels.tolist() == [1, 0]
