"""Temperature scaling, calibration error, and choosing the adaptive-TTA threshold."""

import numpy as np
import pytest
import torch

from imgclf.config import TTAConfig
from imgclf.errors import DataError
from imgclf.eval.calibration import expected_calibration_error, fit_temperature, reliability_curve
from imgclf.infer.tta_threshold import choose_adaptive_threshold
from imgclf.infer.tta import softmax


def _calibrated(n: int = 20000, classes: int = 10, scale: float = 2.0, seed: int = 0):
    """True logits and labels drawn from their softmax: calibrated by construction."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, classes)) * scale
    p = softmax(z)
    labels = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
    return z, labels


def test_fit_temperature_recovers_a_known_temperature():
    z, labels = _calibrated()
    t = fit_temperature(torch.tensor(z * 2.5), torch.tensor(labels))  # overconfident by T = 2.5
    assert t == pytest.approx(2.5, abs=0.1)
    assert fit_temperature(z, labels) == pytest.approx(1.0, abs=0.05)


def test_fit_temperature_stays_in_bounds_on_pure_noise():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(500, 5)) * 50
    t = fit_temperature(z, rng.integers(0, 5, 500))
    assert 0.05 <= t <= 20.0 and t > 10


@pytest.mark.parametrize(
    "logits,labels",
    [
        (np.zeros((3, 4)), np.array([0, 1])),
        (np.zeros((3, 4)), np.array([0, 1, 4])),
        (np.full((2, 3), np.nan), np.array([0, 1])),
        (np.zeros(3), np.array([0, 1, 2])),
    ],
)
def test_fit_temperature_rejects_bad_inputs(logits, labels):
    with pytest.raises(DataError):
        fit_temperature(logits, labels)


def test_ece_is_near_zero_when_calibrated_and_large_when_overconfident():
    z, labels = _calibrated()
    assert expected_calibration_error(softmax(z), labels) < 0.015
    assert expected_calibration_error(softmax(z * 3), labels) > 0.15


def test_temperature_scaling_reduces_ece():
    z, labels = _calibrated(seed=2)
    over = z * 2.5
    before = expected_calibration_error(softmax(over), labels)
    t = fit_temperature(over, labels)
    after = expected_calibration_error(softmax(over / t), labels)
    assert after < before / 5


def test_reliability_curve_and_ece_by_hand():
    probs = np.array([[0.95, 0.05], [0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
    labels = np.array([0, 1, 1, 0])
    conf, acc, count = reliability_curve(probs, labels, bins=5)  # bins (0,.2] ... (.8,1]
    assert count.tolist() == [0, 0, 1, 1, 2]
    assert np.isnan(conf[0]) and np.isnan(acc[1])
    assert conf[4] == pytest.approx(0.925) and acc[4] == pytest.approx(0.5)
    assert conf[2] == pytest.approx(0.6) and acc[2] == 1.0
    # ECE = 1/4 |1 - 0.6| + 1/4 |1 - 0.7| + 2/4 |0.5 - 0.925|
    assert expected_calibration_error(probs, labels, bins=5) == pytest.approx(0.1 + 0.075 + 0.2125)


def _tta_problem(n: int = 60, views: int = 6, seed: int = 0):
    """Images whose first view is right and confident, and images whose first two views are
    wrong but close, where the later views fix the prediction."""
    rng = np.random.default_rng(seed)
    z = np.zeros((n, views, 3))
    labels = rng.integers(0, 3, n)
    easy = np.arange(n) < n // 2
    for i in range(n):
        y = labels[i]
        if easy[i]:
            z[i, :, y] = 4.0
        else:
            wrong = (y + 1) % 3
            z[i, :2, wrong] = 0.3
            z[i, 2:, y] = 1.5
    return z, labels


def test_choose_adaptive_threshold_picks_the_cheapest_that_matches_full_tta():
    z, labels = _tta_problem()
    cfg = TTAConfig(mode="adaptive", first_views=2, max_views=6, stable_views=3, uncertainty="margin")
    choice = choose_adaptive_threshold(z, labels, cfg, thresholds=[0.0, 0.05, 0.2, 0.5, 0.9])
    assert choice.full_accuracy == 1.0 and choice.full_passes == 6
    assert choice.matched and choice.accuracy == 1.0
    assert choice.threshold == 0.2  # 0.05 leaves the hard images (margin ~0.10) wrong
    rows = {row["threshold"]: row for row in choice.table}
    assert rows[0.0]["accuracy"] == 0.5 and rows[0.0]["mean_passes"] == 2.0
    # hard images: views 3 and 4 (margin 0.22 > 0.2 after view 4); at 0.5 they go on until the top held 3 views
    assert choice.mean_passes == pytest.approx((30 * 2 + 30 * 4) / 60)
    assert rows[0.5]["mean_passes"] == rows[0.9]["mean_passes"] == pytest.approx((30 * 2 + 30 * 5) / 60)


def test_choose_adaptive_threshold_with_a_loose_tolerance_takes_the_cheapest():
    z, labels = _tta_problem()
    cfg = TTAConfig(mode="adaptive", first_views=2, max_views=6, stable_views=2)
    choice = choose_adaptive_threshold(z, labels, cfg, tolerance=0.6)
    assert choice.threshold == 0.0 and choice.mean_passes == 2.0 and len(choice.table) == 21
