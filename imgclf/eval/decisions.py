"""Decisions tuned on held-out predictions: per-label thresholds (multilabel), cut-points (regression → grades).

A multilabel model gives probabilities; a thresholded metric (F1, F2, subset accuracy) needs a yes/no per label,
made as ``probability >= threshold``. A regression model gives values; quadratic weighted kappa needs integer
grades, cut from the values at ascending cut-points. Both decisions can be tuned on the validation (or
out-of-fold) predictions — and both then overfit those rows, so :func:`honest_tuned_score` reports the gain
cross-fitted (tuned on one part, scored on another) beside the optimistic in-sample one::

    thresholds = tune_thresholds(val_targets, val_probs, beta=2.0)       # (K,)
    cuts = tune_cutpoints(val_grades, val_values)                         # ascending, grades - 1 of them
    grades = apply_cutpoints(test_values, cuts, cut_grades(cuts))

Cut-points convention: the grades are consecutive integers ``lo, lo+1, …, lo+m`` for ``m`` cuts, and cut ``k``
(separating ``lo+k`` from ``lo+k+1``) lies in ``[lo+k, lo+k+1)``, so the cuts alone say which grades they cut
into (:func:`cut_grades`: ``lo = floor(cuts[0])``). A value ``v`` gets grade ``lo + #{cuts <= v}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from sklearn.metrics import cohen_kappa_score

DEFAULT_THRESHOLD = 0.5


class _Scorer(Protocol):
    def score(self, labels: Any, probs: Any = None, *, logits: Any = None, decision: Any = None) -> float: ...


def apply_thresholds(probs: Any, thresholds: Any = None) -> np.ndarray:
    """0/1 predictions ``probs >= threshold`` per label; ``thresholds`` (K,), a scalar, or None for 0.5 each."""
    p = np.asarray(probs, dtype=np.float64)
    t = np.asarray(DEFAULT_THRESHOLD if thresholds is None else thresholds, dtype=np.float64)
    if t.ndim not in (0, 1) or (t.ndim == 1 and t.shape[0] != p.shape[-1]):
        raise ValueError(f"expected {p.shape[-1]} thresholds (one per label), got shape {np.shape(t)}")
    return (p >= t).astype(np.int64)


def tune_thresholds(targets: Any, probs: Any, beta: float = 1.0) -> np.ndarray:
    """Per label, the threshold that maximises that label's F-beta on these rows.

    Candidates are the midpoints between consecutive distinct predicted probabilities of the label (and half
    its lowest one, so that "every row positive" is a candidate), plus 0.5. Ties keep 0.5 if it is among the
    best, else the best candidate closest to 0.5; a label without positives keeps 0.5. One sort per column,
    no loop over candidates::

        tune_thresholds([[1, 0], [0, 0], [1, 1]], [[0.9, 0.2], [0.7, 0.1], [0.8, 0.3]])   # array([0.75, 0.25])
    """
    y = np.asarray(targets, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    if y.ndim != 2 or y.shape != p.shape:
        raise ValueError(f"expected targets and probabilities of one (samples, labels) shape, got {y.shape}, {p.shape}")
    n, n_labels = p.shape
    if n == 0:
        return np.full(n_labels, DEFAULT_THRESHOLD)
    b2 = beta * beta
    positives = y.sum(0)
    order = np.argsort(-p, axis=0, kind="stable")
    ps = np.take_along_axis(p, order, 0)
    tp = np.cumsum(np.take_along_axis(y, order, 0), 0)
    predicted = np.arange(1, n + 1, dtype=np.float64)[:, None]
    f = (1 + b2) * tp / np.maximum(b2 * positives + predicted, 1e-12)  # top i+1 rows predicted positive
    lower = np.vstack([ps[1:], np.zeros((1, n_labels))])  # the next lower probability (0 below the last)
    candidate = ps > lower  # a threshold between the two separates exactly the top i+1 rows
    mid = (ps + lower) / 2
    f = np.where(candidate, f, -np.inf)
    best = f.max(0)
    closest = np.where(f >= best - 1e-12, -np.abs(mid - DEFAULT_THRESHOLD), -np.inf).argmax(0)
    at_half = apply_thresholds(p, DEFAULT_THRESHOLD)
    tp_half = (at_half * y).sum(0)
    f_half = (1 + b2) * tp_half / np.maximum(b2 * positives + at_half.sum(0), 1e-12)
    chosen = mid[closest, np.arange(n_labels)]
    keep_half = (positives == 0) | (best <= f_half + 1e-12)
    return np.where(keep_half, DEFAULT_THRESHOLD, chosen)


def cut_grades(cuts: Any) -> np.ndarray:
    """The grades ``lo, …, lo+m`` that ``m`` cut-points separate (``lo = floor(cuts[0])``, the module's convention)."""
    c = np.asarray(cuts, dtype=np.float64).ravel()
    if c.size == 0:
        raise ValueError("cut-points: expected at least one")
    lo = int(np.floor(c[0]))
    return np.arange(lo, lo + c.size + 1)


def apply_cutpoints(values: Any, cuts: Any, grades: Any) -> np.ndarray:
    """Integer grades of ``values``: ``grades[#{cuts <= v}]`` (ascending ``cuts``, ``len(grades) == len(cuts) + 1``)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    c = np.asarray(cuts, dtype=np.float64).ravel()
    g = np.asarray(grades).ravel()
    if g.size != c.size + 1:
        raise ValueError(f"{c.size} cut-points separate {c.size + 1} grades, got {g.size} grades")
    if np.any(np.diff(c) < 0):
        raise ValueError("cut-points must be ascending")
    return g[np.searchsorted(c, v, side="right")].astype(np.int64)


def qwk(grades_true: np.ndarray, grades_pred: np.ndarray) -> float:
    """Quadratic weighted kappa over every integer between the lowest and highest grade present.

    scikit-learn weights by the position in its label list, so a grade absent from both would otherwise shrink
    the distance between its neighbours; listing the full integer range keeps the weights ``(i - j)**2``.
    """
    lo = int(min(grades_true.min(), grades_pred.min()))
    hi = int(max(grades_true.max(), grades_pred.max()))
    return float(cohen_kappa_score(grades_true, grades_pred, labels=list(range(lo, hi + 1)), weights="quadratic"))


def _kappa_parts(t: np.ndarray, pred: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The weight matrix, the observed confusion matrix and ``W.T @ hist(true)`` on grade indices 0..m."""
    idx = np.arange(m + 1)
    w = (idx[:, None] - idx[None, :]).astype(np.float64) ** 2
    observed = np.zeros((m + 1, m + 1))
    np.add.at(observed, (t, pred), 1.0)
    return w, observed, w.T @ np.bincount(t, minlength=m + 1).astype(np.float64)


def _best_cut(t: np.ndarray, v: np.ndarray, cuts: np.ndarray, k: int, lo: int) -> float:
    """Cut ``k`` (others fixed) at the kappa-best midpoint in ``[lo+k, lo+k+1)``, exactly, by cumulative sums.

    Moving the cut up past a value moves that row from grade k+1 to grade k: the observed disagreement changes by
    ``W[t, k] - W[t, k+1]`` and the expected one by ``(c[k] - c[k+1]) / n`` (``c = W.T @ hist(true)``).
    """
    n, m = len(v), len(cuts)
    # Start from the cut at the bottom of its range: every row in the range then takes grade k+1.
    start = cuts.copy()
    start[k] = lo + k
    base_pred = np.searchsorted(start, v, side="right")
    w, base_obs, c = _kappa_parts(t, base_pred, m)
    base_num = (w * base_obs).sum()
    base_den = (np.bincount(base_pred, minlength=m + 1) * c).sum() / n
    inside = np.flatnonzero(base_pred == k + 1)
    inside = inside[v[inside] < lo + k + 1]
    if k + 1 < m:
        inside = inside[v[inside] < cuts[k + 1]]
    order = inside[np.argsort(v[inside], kind="stable")]
    vs = v[order]
    num = base_num + np.concatenate([[0.0], np.cumsum(w[t[order], k] - w[t[order], k + 1])])
    den = base_den + np.arange(len(order) + 1) * (c[k] - c[k + 1]) / n
    kappa = np.where(den > 0, 1 - num / np.where(den > 0, den, 1.0), -np.inf)
    upper = np.concatenate([vs, [lo + k + 1.0]])
    lower = np.concatenate([[lo + k], vs])
    spots = np.where(np.arange(len(order) + 1) == 0, lo + k, (lower + upper) / 2)  # after j rows moved down
    valid = np.concatenate([[True], vs[1:] > vs[:-1], [True]]) if len(order) else np.array([True])
    valid &= spots < lo + k + 1
    kappa = np.where(valid, kappa, -np.inf)
    best = kappa.max()
    if not np.isfinite(best):
        return float(cuts[k])
    ties = np.flatnonzero(kappa >= best - 1e-12)
    return float(spots[ties[np.argmin(np.abs(spots[ties] - cuts[k]))]])


def tune_cutpoints(targets_int: Any, values: Any, rounds: int = 20) -> np.ndarray:
    """Cut-points that maximise QWK of the grades cut from ``values`` against the integer ``targets_int``.

    The grades are every integer from the lowest to the highest target; the cuts start at the midpoints
    ``k + 0.5`` and a coordinate search improves them one at a time (each exactly, over the midpoints between
    the values in its range ``[k, k+1)``) until a round changes nothing::

        cuts = tune_cutpoints(val_grades, val_values)      # e.g. array([0.62, 1.48, 2.55, 3.31]) for grades 0..4
    """
    t = np.asarray(targets_int, dtype=np.float64).ravel()
    v = np.asarray(values, dtype=np.float64).ravel()
    if t.size != v.size or t.size == 0:
        raise ValueError(f"expected one value per target, got {v.size} values for {t.size} targets")
    if not np.allclose(t, np.rint(t)):
        raise ValueError("cut-points separate integer grades; these targets hold non-integers")
    lo, hi = int(np.rint(t.min())), int(np.rint(t.max()))
    if hi == lo:
        raise ValueError(f"cut-points need two grades at least; every target here is {lo}")
    cuts = np.arange(lo, hi, dtype=np.float64) + 0.5
    t_idx = (np.rint(t) - lo).astype(np.int64)
    for _ in range(rounds):
        before = cuts.copy()
        for k in range(len(cuts)):
            cuts[k] = _best_cut(t_idx, v, cuts, k, lo)
        if np.array_equal(before, cuts):
            break
    return cuts


def _split_parts(n: int, folds: int, seed: int, repeats: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(repeats):
        parts = np.array_split(rng.permutation(n), folds)
        for i, part in enumerate(parts):
            rest = np.concatenate([q for j, q in enumerate(parts) if j != i])
            out.append((np.sort(rest), np.sort(part)))
    return out


def honest_tuned_score(
    metric: _Scorer,
    targets: Any,
    outputs: Any,
    tune: Callable[[np.ndarray, np.ndarray], Any],
    folds: int = 2,
    seed: int = 0,
    repeats: int = 5,
) -> dict[str, Any]:
    """What tuning a decision (thresholds, cut-points) is worth, with the in-sample optimism taken out.

    Returns ``untuned`` (the metric with its default decision), ``tuned_in_sample`` (tuned and scored on the
    same rows: optimistic, it overfits them), ``tuned_cross_fitted`` (the rows split at random into ``folds``
    parts, ``repeats`` times over; each part scored with the decision tuned on the other parts; the mean over
    all parts), ``se`` (the standard error of the cross-fitted gain: the paired differences, per part, between
    the tuned and the untuned score of that part, their sample standard deviation over ``sqrt`` of their count;
    parts of one split and splits of one set are not independent, so read it as a rough guide, on the small
    side) and ``decision`` (tuned on every row: what is saved and used at predict time). Example::

        from imgclf.eval.metrics import get_metric
        f2 = get_metric("f2_samples", task="multilabel")
        out = honest_tuned_score(f2, val_targets, val_probs, lambda y, p: tune_thresholds(y, p, beta=2.0))
        keep = out["tuned_cross_fitted"] - out["untuned"] > 2 * out["se"]   # tune only beyond the noise
    """
    y, o = np.asarray(targets), np.asarray(outputs)
    if folds < 2 or len(y) < folds:
        raise ValueError(f"honest_tuned_score: needs 2 <= folds <= rows, got folds={folds} for {len(y)} rows")
    decision = tune(y, o)
    tuned, gains = [], []
    for rest, part in _split_parts(len(y), folds, seed, repeats):
        score = metric.score(y[part], o[part], decision=tune(y[rest], o[rest]))
        tuned.append(score)
        gains.append(score - metric.score(y[part], o[part]))
    g = np.asarray(gains)
    return {
        "untuned": metric.score(y, o),
        "tuned_in_sample": metric.score(y, o, decision=decision),
        "tuned_cross_fitted": float(np.mean(tuned)),
        "se": float(g.std(ddof=1) / np.sqrt(len(g))) if len(g) > 1 else float("nan"),
        "decision": decision,
    }
