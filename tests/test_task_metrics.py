"""Multilabel and regression metrics (issue 33): hand-computed values on tiny arrays, directions, the task a
name belongs to, and the decisions (thresholds, cut-points) tuned on held-out predictions with their honest score."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from scipy.special import logit
from sklearn.metrics import log_loss

from imgclf.config import load_config
from imgclf.errors import ConfigError, DataError
from imgclf.eval.decisions import (
    apply_cutpoints,
    cut_grades,
    honest_tuned_score,
    tune_cutpoints,
    tune_thresholds,
)
from imgclf.eval.metrics import (
    METRIC_NAMES,
    default_metric,
    get_metric,
    metric_names,
    metric_of,
    monitor_direction,
)

# Four images, three labels; at 0.5 the only miss is image 2's label 1 (0.4 < 0.5).
Y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=float)
P = np.array([[0.9, 0.2, 0.6], [0.3, 0.7, 0.4], [0.6, 0.4, 0.2], [0.1, 0.45, 0.8]])


@pytest.mark.parametrize(
    "name, direction, expected",
    [
        ("f1_micro", "max", 10 / 11),  # TP 5, FP 0, FN 1
        ("f1_macro", "max", (1 + 2 / 3 + 1) / 3),  # label 1: precision 1, recall 1/2
        ("f1_samples", "max", (3 + 2 / 3) / 4),  # image 2: precision 1, recall 1/2
        ("f2_samples", "max", (3 + 5 / 9) / 4),  # image 2: 5PR / (4P + R) = 2.5 / 4.5
        ("exact_match", "max", 3 / 4),  # subset accuracy: three images exactly right
        ("mean_auc", "max", (1 + 3 / 4 + 1) / 3),  # label 1: positive 0.4 ranks below negative 0.45
        ("map", "max", (1 + (1 + 2 / 3) / 2 + 1) / 3),  # label 1: hits at ranks 1 and 3
        ("bce", "min", np.mean([log_loss(Y[:, j], P[:, j], labels=[0, 1]) for j in range(3)])),
    ],
)
def test_multilabel_metrics_match_hand_computed_values(name, direction, expected):
    metric = get_metric(name, task="multilabel")
    assert metric.direction == direction and metric.task == "multilabel"
    assert metric.score(Y, P) == pytest.approx(expected, rel=1e-9)
    assert metric.score(Y, logits=logit(P)) == pytest.approx(expected, rel=1e-9)  # logits: sigmoid, the same value
    assert monitor_direction(f"val_{name}", task="multilabel") == direction


def test_bce_is_the_mean_binary_cross_entropy_by_hand():
    by_hand = -np.mean(Y * np.log(P) + (1 - Y) * np.log(1 - P))
    assert get_metric("bce", task="multilabel").score(Y, P) == pytest.approx(by_hand)


def test_thresholded_metrics_read_per_label_thresholds_and_the_others_ignore_them():
    thresholds = np.array([0.5, 0.35, 0.5])  # label 1 now right for image 2, wrong for image 3 (0.45)
    f1 = get_metric("f1_micro", task="multilabel")
    assert f1.thresholded and f1.score(Y, P, decision=thresholds) == pytest.approx(12 / 13)  # TP 6, FP 1, FN 0
    assert get_metric("exact_match", task="multilabel").score(Y, P, decision=thresholds) == pytest.approx(3 / 4)
    auc = get_metric("mean_auc", task="multilabel")
    assert not auc.thresholded and auc.score(Y, P, decision=thresholds) == auc.score(Y, P)
    with pytest.raises(ValueError, match="expected 3 thresholds"):
        f1.score(Y, P, decision=[0.5, 0.5])


def test_ranking_metrics_skip_labels_that_cannot_be_scored_and_nan_when_none_can(caplog):
    y4 = np.hstack([Y, np.zeros((4, 1))])  # a fourth label with no positive
    p4 = np.hstack([P, np.full((4, 1), 0.3)])
    assert get_metric("mean_auc", task="multilabel").score(y4, p4) == pytest.approx((1 + 3 / 4 + 1) / 3)
    assert get_metric("map", task="multilabel").score(y4, p4) == pytest.approx((1 + 5 / 6 + 1) / 3)
    with caplog.at_level(logging.WARNING, logger="imgclf"):
        assert math.isnan(get_metric("mean_auc", task="multilabel").score(np.ones((4, 3)), P))
        assert math.isnan(get_metric("map", task="multilabel").score(np.zeros((4, 3)), P))
    assert "mean ROC AUC is undefined" in caplog.text and "average precision is undefined" in caplog.text


# Regression: errors 0.5, 0, 0, 1.
YR = np.array([3.0, 1.0, 2.0, 5.0])
V = np.array([2.5, 1.0, 2.0, 4.0])


@pytest.mark.parametrize(
    "name, direction, expected",
    [
        ("rmse", "min", math.sqrt(1.25 / 4)),
        ("mae", "min", 1.5 / 4),
        ("r2", "max", 1 - 1.25 / 8.75),
        # rounded (2.5 → 2, half to even) grades 2, 1, 2, 4 vs 3, 1, 2, 5: observed (i-j)² sum 2, expected 58/4
        ("qwk", "max", 1 - 2 / 14.5),
    ],
)
def test_regression_metrics_match_hand_computed_values(name, direction, expected):
    metric = get_metric(name, task="regression")
    assert metric.direction == direction and metric.needs == "values"
    assert metric.score(YR, V) == pytest.approx(expected, rel=1e-9)
    assert metric.score(YR[:, None], V[:, None]) == pytest.approx(expected, rel=1e-9)  # (n, 1) as the model gives


def test_regression_qwk_cuts_at_the_given_cut_points_and_clips_to_the_targets_range():
    qwk = get_metric("qwk", task="regression")
    cuts = np.array([1.5, 2.2, 3.5, 4.5])  # grades 1..5: 2.5 → 3, 1.0 → 1, 2.0 → 2, 4.0 → 4
    assert qwk.thresholded and list(cut_grades(cuts)) == [1, 2, 3, 4, 5]
    assert list(apply_cutpoints(V, cuts, cut_grades(cuts))) == [3, 1, 2, 4]
    assert qwk.score(YR, V, decision=cuts) == pytest.approx(1 - 1 / 14)
    # Rounded values beyond the targets' range are clipped into it: 7.2 → 5, -3 → 1.
    assert qwk.score(YR, [3.0, -3.0, 2.0, 7.2]) == pytest.approx(1.0)
    with pytest.raises(DataError, match="integer grades"):
        qwk.score(YR + 0.3, V)


def test_a_name_of_another_task_is_one_config_line_naming_the_task_s_metrics():
    with pytest.raises(ConfigError) as info:
        get_metric("log_loss", task="multilabel")
    message = str(info.value)
    assert message == (
        "metric 'log_loss' does not score multilabel targets; for multilabel choose one of "
        "f1_micro, f1_macro, f1_samples, f2_samples, exact_match, mean_auc, map, bce"
    )
    with pytest.raises(ConfigError, match=r"for regression choose one of rmse, mae, r2, qwk$"):
        get_metric("f2_samples", task="regression")
    with pytest.raises(ConfigError, match=r"for multiclass choose one of accuracy, log_loss"):
        get_metric("rmse")
    with pytest.raises(ConfigError, match=r"unknown metric 'f2_sample' \(did you mean 'f2_samples'\?\)"):
        get_metric("f2_sample", task="multilabel")
    with pytest.raises(ConfigError, match="unknown task 'ordinal'"):
        get_metric("rmse", task="ordinal")


def test_defaults_names_and_the_config_accept_every_task_s_metrics():
    assert [default_metric(t) for t in ("multiclass", "multilabel", "regression")] == ["accuracy", "map", "rmse"]
    assert metric_names("regression") == ("rmse", "mae", "r2", "qwk")
    assert set(METRIC_NAMES) == {n for t in ("multiclass", "multilabel", "regression") for n in metric_names(t)}
    train = load_config(None, ["train.metric=f2_samples"]).train
    assert metric_of(train, task="multilabel").name == "f2_samples"
    with pytest.raises(ConfigError, match="does not score multiclass"):
        metric_of(train)
    assert monitor_direction("val_loss", task="regression") == "min"


def test_multiclass_metrics_are_unchanged_where_a_name_is_shared():
    y, p = np.array([0, 1, 2, 1]), np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.5, 0.1, 0.4], [0.1, 0.8, 0.1]])
    accuracy = get_metric("accuracy")
    assert accuracy.task == "multiclass" and not accuracy.thresholded and accuracy.needs == "labels"
    assert accuracy.score(y, p) == pytest.approx(3 / 4)
    assert accuracy.score(y, p, decision=np.array([0.9, 0.9, 0.9])) == pytest.approx(3 / 4)  # no decision read
    assert accuracy.description == "share of images whose top class is right"
    assert get_metric("exact_match", task="multilabel").description.startswith("subset accuracy")
    with pytest.raises(ConfigError, match="exact_match"):  # accuracy is the classes' metric (and default)
        get_metric("accuracy", task="multilabel")
    assert get_metric("qwk").needs == "labels" and get_metric("qwk", task="regression").needs == "values"


def test_tuned_thresholds_find_the_obvious_0_8_and_beat_0_5():
    rng = np.random.default_rng(0)
    # Label 0: negatives up to 0.78, positives from 0.82 — the best threshold is 0.8, and 0.5 lets every
    # negative above 0.55 through. Label 1 has no positive and keeps 0.5.
    negatives, positives = rng.uniform(0.55, 0.78, 40), rng.uniform(0.82, 0.95, 20)
    negatives[[0, -1]], positives[0] = 0.78, 0.82
    p = np.column_stack([np.concatenate([negatives, positives]), rng.uniform(0, 0.4, 60)])
    y = np.column_stack([np.r_[np.zeros(40), np.ones(20)], np.zeros(60)])
    thresholds = tune_thresholds(y, p)
    assert thresholds == pytest.approx([0.80, 0.5])
    assert get_metric("f1_micro", task="multilabel").score(y, p, decision=thresholds) == 1.0
    f1 = get_metric("f1_macro", task="multilabel")  # label 1 (no positive, none predicted) counts 0 either way
    assert f1.score(y, p, decision=thresholds) == pytest.approx(0.5) and f1.score(y, p) == pytest.approx(0.25)


def test_tuned_thresholds_are_fast_and_deterministic_at_competition_size():
    import time

    rng = np.random.default_rng(1)
    y = (rng.random((10_000, 30)) < 0.2).astype(float)
    p = np.clip(0.3 * y + rng.random((10_000, 30)) * 0.7, 0, 1)
    start = time.perf_counter()
    first = tune_thresholds(y, p, beta=2.0)
    assert time.perf_counter() - start < 2.0
    assert np.array_equal(first, tune_thresholds(y, p, beta=2.0)) and first.shape == (30,)


def test_tuned_cut_points_recover_known_cuts():
    rng = np.random.default_rng(2)
    true_cuts = np.array([0.3, 1.6, 2.4, 3.7])
    values = rng.uniform(-0.5, 4.5, 5_000)
    grades = apply_cutpoints(values, true_cuts, [0, 1, 2, 3, 4])
    cuts = tune_cutpoints(grades, values)
    assert cuts == pytest.approx(true_cuts, abs=0.01) and np.all(np.diff(cuts) > 0)
    qwk = get_metric("qwk", task="regression")
    assert qwk.score(grades, values, decision=cuts) == pytest.approx(1.0)
    assert qwk.score(grades, values) < 0.99  # plain rounding cuts at k + 0.5 instead


def test_cross_fitting_takes_out_the_optimism_of_tuning_on_noise():
    rng = np.random.default_rng(3)
    grades, values = rng.integers(0, 5, 300), rng.uniform(0, 4, 300)  # values say nothing about the grades
    out = honest_tuned_score(get_metric("qwk", task="regression"), grades, values, tune_cutpoints, folds=2, seed=0)
    assert set(out) == {"untuned", "tuned_in_sample", "tuned_cross_fitted", "se", "decision"}
    assert out["tuned_in_sample"] > out["untuned"] + 0.03  # tuned on the rows it scores: it fits the noise
    assert out["tuned_cross_fitted"] <= out["untuned"] + 0.03 and out["tuned_cross_fitted"] < out["tuned_in_sample"]
    assert np.array_equal(out["decision"], tune_cutpoints(grades, values)) and out["se"] > 0
    again = honest_tuned_score(get_metric("qwk", task="regression"), grades, values, tune_cutpoints, seed=0)
    assert again["tuned_cross_fitted"] == out["tuned_cross_fitted"]  # seeded: the same split


def test_cross_fitted_thresholds_score_below_in_sample_on_noise():
    rng = np.random.default_rng(4)
    y, p = (rng.random((200, 4)) < 0.5).astype(float), rng.random((200, 4))
    f1 = get_metric("f1_macro", task="multilabel")
    out = honest_tuned_score(f1, y, p, tune_thresholds, folds=2, seed=0)
    assert out["tuned_in_sample"] > out["tuned_cross_fitted"] and out["decision"].shape == (4,)
