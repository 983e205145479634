import math

import numpy as np
import pytest

from imgclf.experiments.stats import mcnemar, mcnemar_pooled, mean_std_ci


def _pairs(b: int, c: int, both_right: int = 0, both_wrong: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Correctness vectors with exactly b (A right, B wrong) and c (A wrong, B right) images."""
    a = [True] * b + [False] * c + [True] * both_right + [False] * both_wrong
    bb = [False] * b + [True] * c + [True] * both_right + [False] * both_wrong
    return np.array(a), np.array(bb)


def test_mean_std_ci_matches_hand_computation():
    # values 1, 2, 3: mean 2, sample std sqrt(((1)^2 + 0 + 1^2) / 2) = 1;
    # t(0.975, df=2) = 4.302653, half-width = 4.302653 * 1 / sqrt(3) = 2.484138
    mean, std, lo, hi = mean_std_ci([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0)
    assert std == pytest.approx(1.0)
    assert lo == pytest.approx(2.0 - 2.484138, abs=1e-6)
    assert hi == pytest.approx(2.0 + 2.484138, abs=1e-6)


def test_mean_std_ci_other_confidence_level():
    # 0.90 with df=2: t(0.95, 2) = 2.919986 → half-width 2.919986 / sqrt(3) = 1.685854
    _, _, lo, hi = mean_std_ci([1.0, 2.0, 3.0], confidence=0.90)
    assert (hi - lo) / 2 == pytest.approx(1.685854, abs=1e-6)


def test_mean_std_ci_single_value_has_nan_spread():
    mean, std, lo, hi = mean_std_ci([0.93])
    assert mean == 0.93
    assert math.isnan(std) and math.isnan(lo) and math.isnan(hi)


def test_mean_std_ci_equal_values_give_zero_width():
    assert mean_std_ci([0.5, 0.5, 0.5]) == (0.5, 0.0, 0.5, 0.5)


@pytest.mark.parametrize("bad", [[], [[1.0, 2.0]]])
def test_mean_std_ci_rejects_empty_or_nested(bad):
    with pytest.raises(ValueError):
        mean_std_ci(bad)


def test_mcnemar_exact_small_counts():
    # b=10, c=2, n=12 < 25 → exact: P(X<=2 | 12, .5) = (1 + 12 + 66) / 4096 = 79/4096 = 0.019287;
    # p = 2 * 0.019287 = 0.038574. Concordant images must not change anything.
    a, b = _pairs(10, 2, both_right=50, both_wrong=7)
    result = mcnemar(a, b)
    assert result["b"] == 10 and result["c"] == 2
    assert result["method"] == "exact binomial"
    assert result["statistic"] == 2.0
    assert result["p_value"] == pytest.approx(79 / 4096 * 2, rel=1e-9)


def test_mcnemar_exact_is_symmetric_and_capped_at_one():
    # b=c=3: 2 * P(X<=3 | 6, .5) = 2 * 42/64 > 1 → 1.0
    assert mcnemar(*_pairs(3, 3))["p_value"] == 1.0
    assert mcnemar(*_pairs(2, 10))["p_value"] == pytest.approx(mcnemar(*_pairs(10, 2))["p_value"])


def test_mcnemar_chi_square_large_counts():
    # b=30, c=15, n=45 >= 25 → (|30-15| - 1)^2 / 45 = 196/45 = 4.355556; chi2(1) sf = 0.036888
    result = mcnemar(*_pairs(30, 15, both_right=100))
    assert result["method"] == "chi-square with continuity correction"
    assert result["statistic"] == pytest.approx(196 / 45)
    assert result["p_value"] == pytest.approx(0.036888, abs=1e-5)


def test_mcnemar_switches_method_at_25_discordant():
    assert mcnemar(*_pairs(20, 4))["method"] == "exact binomial"  # 24
    assert mcnemar(*_pairs(20, 5))["method"] == "chi-square with continuity correction"  # 25


def test_mcnemar_identical_runs_give_p_one():
    a, _ = _pairs(0, 0, both_right=5, both_wrong=5)
    assert mcnemar(a, a) == {"b": 0, "c": 0, "statistic": 0.0, "p_value": 1.0, "method": "exact binomial"}


def test_mcnemar_accepts_zero_one_ints():
    assert mcnemar([1, 1, 0, 1], [1, 0, 0, 0])["b"] == 2


def test_mcnemar_rejects_mismatched_lengths_and_non_boolean():
    with pytest.raises(ValueError, match="same images"):
        mcnemar([True, False], [True])
    with pytest.raises(ValueError, match="booleans"):
        mcnemar([0.7, 1.0], [1, 0])


def test_mcnemar_pooled_concatenates_seeds():
    # seed 0: b=6, c=1; seed 1: b=4, c=1 → pooled b=10, c=2 → the exact example above (p = 0.038574)
    result = mcnemar_pooled([_pairs(6, 1, both_right=3), _pairs(4, 1, both_wrong=2)])
    assert (result["b"], result["c"], result["seeds"]) == (10, 2, 2)
    assert result["p_value"] == pytest.approx(79 / 4096 * 2, rel=1e-9)


def test_mcnemar_pooled_rejects_empty_and_mismatched():
    with pytest.raises(ValueError):
        mcnemar_pooled([])
    with pytest.raises(ValueError, match="pair 1"):
        mcnemar_pooled([_pairs(1, 1), (np.ones(3, bool), np.ones(2, bool))])
