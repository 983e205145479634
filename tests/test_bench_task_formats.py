"""bench/task_formats.py's scoring (per-image F2, the delta-method RMSE SE, the sign of paired gaps) and
bench/task_datasets.py's tiny multi-label and regression datasets (issue 33)."""

from __future__ import annotations

import ast
import csv
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import fbeta_score

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    # bench/ holds scripts, not a package: load each by path, under a name nothing else uses.
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


task_formats = _load("task_formats")
task_datasets = _load("task_datasets")
TRUTH = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1], [0, 0, 1]])


def test_f2_per_image_weighs_recall_and_matches_sklearns_samples_average():
    pred = np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 1]])
    f2 = task_formats.f2_per_image(TRUTH, pred)
    # recall 1/2 and precision 1 give 5/9; all right gives 1; nothing right gives 0; recall 1, precision 1/2: 5/6
    assert f2 == pytest.approx([5 / 9, 1.0, 0.0, 5 / 6])
    assert f2.mean() == pytest.approx(fbeta_score(TRUTH, pred, beta=2, average="samples", zero_division=1.0))


def test_bootstrap_micro_f1_is_sklearns_micro_f1_on_each_draw():
    rng = np.random.default_rng(1)
    truth, pred = rng.random((30, 4)) < 0.4, rng.random((30, 4)) < 0.4
    draws = task_formats.bootstrap_indices(30, draws=5)
    expected = [task_formats.micro_f1(truth[d], pred[d]) for d in draws]
    assert task_formats.bootstrap_micro_f1(truth, pred, draws) == pytest.approx(expected)


def test_rmse_se_is_the_se_of_the_mean_squared_error_over_twice_the_rmse():
    rmse, se = task_formats.rmse_se(np.zeros(4), np.array([1.0, -1.0, 3.0, -3.0]))  # squared errors 1, 1, 9, 9
    assert rmse == pytest.approx(math.sqrt(5))
    assert se == pytest.approx(math.sqrt(64 / 3) / 2 / (2 * math.sqrt(5)))


def test_mae_se_is_the_per_image_standard_error():
    scores = task_formats.regression_scores(np.zeros(4), np.array([1.0, -1.0, 3.0, -3.0]))
    assert scores["mae"] == pytest.approx((2.0, math.sqrt(4 / 3) / 2))


def test_paired_gaps_are_system_minus_naive():
    y = np.array([10.0, 20.0, 30.0, 40.0])
    better, worse = y + np.array([1.0, -1.0, 1.0, -1.0]), y + np.array([5.0, -4.0, 6.0, -5.0])
    reg = task_formats.regression_scores(y, better, naive=worse)
    assert reg["rmse_gap"][0] == pytest.approx(reg["rmse"][0] - task_formats.rmse_se(y, worse)[0])
    assert reg["rmse_gap"][0] < 0 and reg["mae_gap"][0] == pytest.approx(-4.0)
    assert reg["rmse_gap"][1] > 0 and reg["mae_gap"][1] > 0
    ml = task_formats.multilabel_scores(TRUTH, TRUTH, naive=np.zeros_like(TRUTH))
    assert ml["f2"] == (1.0, 0.0) and ml["f2_gap"][0] == pytest.approx(1.0)
    assert ml["micro_f1_gap"][0] == pytest.approx(1.0)


def test_threshold_reads_probabilities_and_tags_alike(tmp_path):
    probs, tags = tmp_path / "probs.csv", tmp_path / "sub.csv"
    probs.write_text("image_name,Bag,Coat\na,0.7,0.2\nb,0.5,0.9\n")
    tags.write_text("image_name,tags\nb,Bag Coat\na,Bag\n")
    assert task_formats.read_prediction(probs, ["a", "b"], True) == [{"Bag"}, {"Bag", "Coat"}]
    assert task_formats.read_prediction(tags, ["a", "b"], True) == [{"Bag"}, {"Bag", "Coat"}]
    with pytest.raises(ValueError, match="lacks 1"):
        task_formats.read_prediction(tags, ["a", "b", "c"], True)


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as fh:
        header, *rows = list(csv.reader(fh))
    return header, rows


@pytest.mark.skipif(
    not (task_datasets.UPSTREAM / "train-images-idx3-ubyte.gz").is_file(),
    reason="needs Debian's dataset-fashion-mnist in /usr/share/datasets/fashion-mnist",
)
def test_tiny_datasets_have_the_documented_columns_and_skewed_labels(tmp_path):
    ml = task_datasets.materialise("multilabel", tmp_path / "ml", n_train=20, n_test=10) / "dataset"
    header, train = _rows(ml / "train.csv")
    assert header == ["image_name", "tags"] and len(train) == 20 and all(tags for _, tags in train)
    assert all((ml / "train" / f"{i}.png").is_file() for i, _ in train)
    columns, onehot = _rows(ml / "train_columns.csv")
    assert columns == ["image_id", *task_datasets.CLASS_NAMES]
    assert [{c for c, v in zip(columns[1:], r[1:]) if v == "1"} for r in onehot] == [set(t.split()) for _, t in train]
    counts = {c: sum(c in t.split() for _, t in train) for c in task_datasets.CLASS_NAMES}
    assert max(counts.values()) >= 10 and min(counts.values()) <= 3  # a common label and a rare one
    assert _rows(ml / "sample_submission.csv")[0] == ["image_name", "tags"]
    answers = _rows(ml.parent / "answers" / "test_labels.csv")
    assert answers[0] == ["image_name", "tags"] and [r[0] for r in answers[1]] == [f"test_{i}" for i in range(10)]
    rg = task_datasets.materialise("regression", tmp_path / "rg", n_train=20, n_test=10) / "dataset"
    header, train = _rows(rg / "train.csv")
    assert header == ["Id", "price"] and all(0 <= int(p) <= 40 for _, p in train)
    assert _rows(rg / "sample_submission.csv")[0] == ["Id", "price"]
    assert _rows(rg.parent / "answers" / "test_labels.csv")[0] == ["Id", "price"]


def test_task_pair_reports_b_minus_a_paired_on_the_same_images(tmp_path, capsys):
    task_pair = _load("task_pair")
    y = np.arange(20, dtype=float)

    def write(name: str, values) -> Path:
        path = tmp_path / name
        with path.open("w", newline="") as fh:
            csv.writer(fh).writerows([["Id", "price"], *([f"t{i}", v] for i, v in enumerate(values))])
        return path

    answers = write("answers.csv", y)
    worse, better = write("a.csv", y + np.where(np.arange(20) % 2, 2.0, -2.0)), write("b.csv", y + 0.5)
    task_pair.main(["regression", str(answers), str(worse), str(better)])
    printed = capsys.readouterr().out
    scores = ast.literal_eval(printed.strip())  # a dict of (value, se) pairs
    assert scores["rmse"][0] == pytest.approx(0.5) and scores["rmse_gap"][0] == pytest.approx(0.5 - 2.0)
    assert scores["mae_gap"][0] == pytest.approx(-1.5)
