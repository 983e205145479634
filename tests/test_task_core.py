"""The task object, the multilabel/regression losses and the submission formats of issue 33."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from imgclf.config import load_config
from imgclf.errors import ConfigError, DataError, RunDirError
from imgclf.infer.submission import read_format, write_submission
from imgclf.task import Task
from imgclf.training.target_loss import TargetCriterion, label_pos_weight, resolve_loss


def test_outputs_are_softmax_sigmoid_or_values_in_target_units():
    logits = np.array([[2.0, 0.0]])
    assert np.allclose(Task("multiclass", ("a", "b")).outputs(logits).sum(1), 1.0)
    assert np.allclose(Task("multilabel", ("a", "b")).outputs(logits), [[1 / (1 + np.exp(-2)), 0.5]])
    assert np.allclose(Task("regression", ("y",), mean=10.0, std=2.0).outputs(np.array([[1.5]])), [[13.0]])


def test_regression_loss_is_on_the_standardised_scale():
    task = Task("regression", ("y",), mean=10.0, std=2.0)
    assert task.loss(torch.tensor([[1.5]]), torch.tensor([[13.0]])) == pytest.approx(0.0)
    assert task.loss(torch.tensor([[0.0]]), torch.tensor([[12.0]])) == pytest.approx(1.0)


def test_target_text_round_trips_for_each_task():
    ml = Task("multilabel", ("bag", "shirt", "shoe"))
    assert ml.target_text(np.array([1.0, 0.0, 1.0])) == "bag shoe"
    assert ml.parse_targets(["bag shoe", ""], "x").tolist() == [[1, 0, 1], [0, 0, 0]]
    reg = Task("regression", ("price",))
    assert reg.parse_targets([reg.target_text(np.array([12.25]))], "x").tolist() == [[12.25]]
    with pytest.raises(RunDirError, match="does not know"):
        ml.parse_targets(["hat"], "split.csv")


def test_task_json_is_validated():
    assert Task.from_dict(Task("regression", ("y",), 3.0, 2.0).to_dict()) == Task("regression", ("y",), 3.0, 2.0)
    with pytest.raises(RunDirError, match="kind must be"):
        Task.from_dict({"kind": "ranking"})
    with pytest.raises(RunDirError, match="std must be"):
        Task.from_dict({"kind": "regression", "std": 0})


def test_losses_follow_the_task_and_refuse_the_others():
    ml, reg, mc = Task("multilabel", ("a", "b")), Task("regression", ("y",)), Task("multiclass", ("a", "b"))
    assert resolve_loss(ml, "ce") == "bce" and resolve_loss(reg, "ce") == "mse" and resolve_loss(mc, "ce") == "ce"
    with pytest.raises(ConfigError, match="does not fit regression"):
        resolve_loss(reg, "bce")
    with pytest.raises(ConfigError, match="multiclass"):
        resolve_loss(mc, "mse")


def test_bce_smooths_label_sets_towards_one_half_as_timm_mixup_does():
    task = Task("multilabel", ("a", "b", "c", "d"))
    crit = TargetCriterion(task, "bce", label_smoothing=0.2)
    logits, targets = torch.tensor([[1.0, -1.0, 0.5, 2.0]]), torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    expected = F.binary_cross_entropy_with_logits(logits, torch.tensor([[0.9, 0.1, 0.1, 0.9]]))
    assert float(crit(logits, targets, None)) == pytest.approx(float(expected))
    mixed = TargetCriterion(task, "bce", label_smoothing=0.2, mixup=1.0)
    images = torch.zeros(2, 3, 4, 4)
    _, soft = mixed.mix(images, torch.tensor([[1.0, 0.0, 0.0, 1.0]] * 2))  # the same rows: mixing leaves them be
    torch.testing.assert_close(soft, torch.tensor([[0.9, 0.1, 0.1, 0.9]] * 2))
    assert load_config(None, []).train.smoothing("multilabel") == 0.0 and load_config(None, []).train.smoothing() == 0.1


def test_regression_loss_trains_on_standardised_targets_and_huber_is_linear_far_out():
    task = Task("regression", ("y",), mean=10.0, std=2.0)
    mse, huber = TargetCriterion(task, "mse"), TargetCriterion(task, "huber")
    far = torch.tensor([[0.0]]), torch.tensor([[20.0]])  # 5 standard deviations off
    assert float(mse(*far, None)) == pytest.approx(25.0)
    assert float(huber(*far, None)) == pytest.approx(4.5)  # delta * (|e| - delta / 2)


def test_asl_and_focal_give_finite_losses_that_fall_as_logits_improve():
    task = Task("multilabel", ("a", "b", "c"))
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    good, bad = targets * 8 - 4, 4 - targets * 8
    for loss in ("asl", "focal"):
        crit = TargetCriterion(task, loss)
        assert float(crit(good, targets, None)) < float(crit(bad, targets, None))


def test_mixup_blends_images_and_target_rows_with_one_lambda():
    torch.manual_seed(0)
    crit = TargetCriterion(Task("regression", ("y",), mean=0.0, std=1.0), "mse", mixup=1.0)
    images = torch.stack([torch.zeros(3, 4, 4), torch.ones(3, 4, 4)])
    mixed, soft = crit.mix(images.clone(), torch.tensor([[0.0], [10.0]]))
    lam = 1.0 - float(mixed[0].mean())  # image 0 = lam * 0 + (1 - lam) * 1
    assert soft is not None and float(soft[0, 0]) == pytest.approx((1 - lam) * 10.0, abs=1e-4)


def test_pos_weight_is_negatives_over_positives():
    assert label_pos_weight(np.array([[1, 0], [0, 0], [0, 0], [0, 1]])).tolist() == [3.0, 3.0]


def test_tags_submission_thresholds_each_label(tmp_path):
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("image_name,tags\ntest_0,bag\ntest_1,bag\n")
    fmt = read_format(sample, ["bag", "shirt"], max_rows=2, task="multilabel")
    thresholds = np.array([0.5, 0.2])
    frame = write_submission(
        tmp_path / "sub.csv", list(fmt.ids), np.array([[0.9, 0.3], [0.1, 0.1]]), ["bag", "shirt"], fmt,
        lambda p: p >= thresholds,
    )  # fmt: skip
    assert frame["tags"].fillna("").tolist() == ["bag shirt", ""]
    assert pd.read_csv(tmp_path / "sub.csv").columns.tolist() == ["image_name", "tags"]


def test_sample_with_an_unknown_tag_is_refused_before_inference(tmp_path):
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("image_name,tags\ntest_0,bag hat\n")
    with pytest.raises(DataError, match="never had: 'hat'"):
        read_format(sample, ["bag", "shirt"], max_rows=1, task="multilabel")


def test_regression_submission_writes_values_and_refuses_a_text_column(tmp_path):
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("Id,price\na,0\nb,0\n")
    fmt = read_format(sample, ["price"], max_rows=2, task="regression")
    frame = write_submission(tmp_path / "sub.csv", list(fmt.ids), np.array([[3.5], [7.25]]), ["price"], fmt)
    assert frame["price"].tolist() == [3.5, 7.25]
    sample.write_text("Id,label\na,cat\n")
    with pytest.raises(DataError, match="not a number"):
        read_format(sample, ["price"], max_rows=1, task="regression")


def test_wide_multilabel_sample_gets_one_probability_per_label(tmp_path):
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("image_id,shirt,bag\na,0,0\n")
    fmt = read_format(sample, ["bag", "shirt"], max_rows=1, task="multilabel")
    frame = write_submission(tmp_path / "sub.csv", list(fmt.ids), np.array([[0.9, 0.2]]), ["bag", "shirt"], fmt)
    assert frame.iloc[0].tolist() == ["a", 0.2, 0.9]
