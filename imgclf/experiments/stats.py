"""Statistics for ablations: seed spread with a confidence interval, and McNemar's paired test.

Pure functions on plain arrays, so ``experiments.ablate`` / ``compare`` and the reports can
call them without a model in sight.

Example::

    mean, std, lo, hi = mean_std_ci([0.91, 0.93, 0.92])
    mcnemar(correct_a, correct_b)["p_value"]   # per-image correctness of two runs on the same images
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import stats

# Below this many discordant pairs the chi-square approximation is poor, so the exact
# binomial test is used instead (the usual textbook rule, e.g. Fagerland et al. 2013 use 25).
EXACT_BELOW = 25


def mean_std_ci(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float, float, float]:
    """Mean, sample standard deviation (ddof=1) and a Student-t confidence interval for the mean.

    With a single value the spread is unknown: ``std`` is nan and the interval is ``(nan, nan)``
    (the mean is still the value). All-equal values give std 0 and a zero-width interval.

    >>> [round(v, 4) for v in mean_std_ci([1.0, 2.0, 3.0])]  # half-width t(0.975, 2) * 1 / sqrt(3) = 2.4841
    [2.0, 1.0, -0.4841, 4.4841]
    """
    x = np.asarray(list(values), dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("mean_std_ci needs a non-empty 1-d sequence of numbers")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    mean = float(x.mean())
    if x.size == 1:
        return mean, math.nan, math.nan, math.nan
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=x.size - 1)) * std / math.sqrt(x.size)
    return mean, std, mean - half, mean + half


def paired_gap(smaller: np.ndarray, larger: np.ndarray) -> tuple[float, float]:
    """``(gap, se)``: how much more accurate ``larger`` (a larger size, a blend) is than ``smaller`` on the same images
    (per-image correctness), and the standard error of that paired difference (from the images one gets right and
    the other wrong).

    >>> gap, se = paired_gap(np.array([1, 1, 0, 0], bool), np.array([1, 1, 1, 0], bool))
    >>> gap, round(se, 3)
    (0.25, 0.217)
    """
    n = len(smaller)
    gained, lost = int((larger & ~smaller).sum()), int((smaller & ~larger).sum())
    return (gained - lost) / n, math.sqrt(max(gained + lost - (gained - lost) ** 2 / n, 0.0)) / n


def mcnemar(correct_a: Sequence[bool] | np.ndarray, correct_b: Sequence[bool] | np.ndarray) -> dict:
    """McNemar's test for two classifiers scored on the same images.

    ``correct_a[i]`` / ``correct_b[i]``: whether model A / B got image ``i`` right. Only the
    discordant images matter: ``b`` = A right and B wrong, ``c`` = A wrong and B right.

    - ``b + c < 25``: exact two-sided binomial test, ``p = min(1, 2 * P(X <= min(b, c)))`` with
      ``X ~ Binomial(b + c, 0.5)``; ``statistic`` is ``min(b, c)``.
    - otherwise: chi-square with continuity correction, ``(|b - c| - 1)^2 / (b + c)``, 1 dof.

    No discordant images at all gives ``p_value`` 1.0 (the runs cannot be told apart).

    >>> mcnemar([1, 1, 0, 1], [1, 0, 0, 0])
    {'b': 2, 'c': 0, 'statistic': 0.0, 'p_value': 0.5, 'method': 'exact binomial'}
    """
    a = _as_bool_vector(correct_a, "correct_a")
    bb = _as_bool_vector(correct_b, "correct_b")
    if a.shape != bb.shape:
        raise ValueError(f"correct_a and correct_b must cover the same images ({a.size} vs {bb.size} values)")
    b = int(np.sum(a & ~bb))
    c = int(np.sum(~a & bb))
    n = b + c
    if n < EXACT_BELOW:
        statistic = float(min(b, c))
        p = 1.0 if n == 0 else min(1.0, 2.0 * float(stats.binom.cdf(min(b, c), n, 0.5)))
        method = "exact binomial"
    else:
        statistic = (abs(b - c) - 1.0) ** 2 / n
        p = float(stats.chi2.sf(statistic, df=1))
        method = "chi-square with continuity correction"
    return {"b": b, "c": c, "statistic": statistic, "p_value": p, "method": method}


def mcnemar_pooled(pairs: Iterable[tuple[Sequence[bool] | np.ndarray, Sequence[bool] | np.ndarray]]) -> dict:
    """McNemar's test pooled across seeds: per-seed correctness vectors are concatenated, then tested once.

    Each pair is ``(correct_a, correct_b)`` for one seed on the same validation images (a fixed
    split). Pooling treats every (seed, image) as one paired observation; it is more sensitive than
    any one seed but the observations of one image across seeds are not independent, so read the
    p-value as a guide, not an exact error rate. The result also carries ``seeds`` (the pair count).
    """
    pairs = list(pairs)
    if not pairs:
        raise ValueError("mcnemar_pooled needs at least one (correct_a, correct_b) pair")
    for i, (a, b) in enumerate(pairs):
        if np.asarray(a).shape != np.asarray(b).shape:
            raise ValueError(f"pair {i}: correct_a and correct_b must cover the same images")
    result = mcnemar(
        np.concatenate([_as_bool_vector(a, "correct_a") for a, _ in pairs]),
        np.concatenate([_as_bool_vector(b, "correct_b") for _, b in pairs]),
    )
    result["seeds"] = len(pairs)
    return result


def _as_bool_vector(values: Sequence[bool] | np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(values)
    if x.ndim != 1:
        raise ValueError(f"{name} must be a 1-d vector of per-image correctness, got shape {x.shape}")
    if x.dtype != bool:
        if x.size and not np.isin(x, (0, 1)).all():
            raise ValueError(f"{name} must hold booleans (or 0/1)")
        x = x.astype(bool)
    return x
