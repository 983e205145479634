"""Multilabel stratified, grouped splits and folds (imgclf.data.split, iterstrat over duplicate groups)."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf.data.split import multilabel_group_folds, multilabel_group_split
from imgclf.errors import DataError

VAL = 0.2


def _skewed_set(seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """~800 images in 400 duplicate groups of 1 to 3 (members share labels); 6 labels from 50% down to 2%."""
    rng = np.random.default_rng(seed)
    group_targets = (rng.random((400, 6)) < np.array([0.5, 0.2, 0.1, 0.05, 0.03, 0.02])).astype(np.float32)
    sizes = rng.integers(1, 4, len(group_targets))
    groups = [f"g{g}" for g, size in enumerate(sizes) for _ in range(size)]
    return np.repeat(group_targets, sizes, axis=0), groups


def _worst_label_gap(targets: np.ndarray, is_val: np.ndarray) -> float:
    """The largest distance of a label's validation share from VAL."""
    return float(np.abs(targets[is_val].sum(axis=0) / targets.sum(axis=0) - VAL).max())


def _random_group_split(groups: list[str], seed: int) -> np.ndarray:
    names = np.array(sorted(set(groups)))
    chosen = set(np.random.default_rng(seed).choice(names, int(VAL * len(names)), replace=False))
    return np.array([g in chosen for g in groups])


def _straddles(groups: list[str], side: np.ndarray) -> list[str]:
    seen: dict[str, set] = {}
    for g, s in zip(groups, side.tolist()):
        seen.setdefault(g, set()).add(s)
    return [g for g, sides in seen.items() if len(sides) > 1]


def test_multilabel_split_keeps_groups_whole_and_every_label_near_its_share():
    targets, groups = _skewed_set()
    stratified = [multilabel_group_split(targets, groups, VAL, seed) for seed in range(5)]
    for is_val in stratified:
        assert not _straddles(groups, is_val)
        assert abs(is_val.mean() - VAL) < 0.05
    gaps = [_worst_label_gap(targets, is_val) for is_val in stratified]
    random_gaps = [_worst_label_gap(targets, _random_group_split(groups, seed)) for seed in range(20)]
    assert max(gaps) <= 0.1
    assert np.mean(gaps) < 0.5 * np.median(random_gaps)


def test_multilabel_split_is_seeded_and_empty_without_a_share():
    targets, groups = _skewed_set()
    assert (multilabel_group_split(targets, groups, VAL, 3) == multilabel_group_split(targets, groups, VAL, 3)).all()
    assert not multilabel_group_split(targets, groups, 0.0, 3).any()


def test_multilabel_folds_cover_everything_keep_groups_whole_and_spread_labels():
    targets, groups = _skewed_set()
    folds = multilabel_group_folds(targets, groups, 5, seed=0)
    assert folds.shape == (len(groups),) and set(folds.tolist()) == set(range(5))
    assert not _straddles(groups, folds)
    gaps = [_worst_label_gap(targets, folds == k) for k in range(5)]
    random_gaps = [_worst_label_gap(targets, _random_group_split(groups, seed)) for seed in range(20)]
    assert np.mean(gaps) <= 0.1 and np.mean(gaps) < 0.6 * np.median(random_gaps)


def test_multilabel_folds_refuse_more_folds_than_groups():
    with pytest.raises(DataError, match="3 folds need between 2 and 2"):
        multilabel_group_folds(np.eye(2), ["a", "b"], 3, seed=0)
