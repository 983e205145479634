"""The ensemble's nested OOF estimate (issue 29): each fold is scored with weights fitted on the other folds."""

from __future__ import annotations

import numpy as np

from imgclf.eval.metrics import get_metric
from imgclf.experiments.ensemble import blend, blend_weights, nested_blend
from imgclf.experiments.oof import Oof, scores


def _members(seed: int = 0, n: int = 120) -> list[Oof]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    good = np.full((n, 3), 0.15)
    good[np.arange(n), labels] = 0.7
    good = 0.7 * good + 0.3 * rng.dirichlet(np.ones(3), n)
    noise = 0.5 * good + 0.5 * rng.dirichlet(np.ones(3) * 0.5, n)  # weaker, but worth a weight of its own
    folds = np.arange(n) % 4
    paths = [f"train/x/{i}.png" for i in range(n)]
    return [Oof(paths, labels, good, ["a", "b", "c"], folds), Oof(paths, labels, noise, ["a", "b", "c"], folds)]


def test_a_folds_nested_blend_does_not_depend_on_its_own_labels():
    oofs = _members()
    before = nested_blend(oofs, "optimize", get_metric("log_loss"))
    changed = oofs[0].labels.copy()
    held = oofs[0].folds == 0
    changed[held] = (changed[held] + 1) % 3  # relabel fold 0 only
    after = nested_blend(
        [Oof(o.paths, changed, o.probs, o.classes, o.folds) for o in oofs], "optimize", get_metric("log_loss")
    )
    assert np.allclose(before[held], after[held])
    assert not np.allclose(before[~held], after[~held])


def test_the_nested_log_loss_is_no_better_than_the_in_sample_one():
    oofs = _members(seed=3)
    labels, probs = oofs[0].labels, [o.probs for o in oofs]
    in_sample = scores(labels, blend(probs, blend_weights(probs, labels)))["log_loss"]
    nested = scores(labels, nested_blend(oofs, "optimize", get_metric("log_loss")))["log_loss"]
    assert nested >= in_sample - 1e-6


def test_members_without_shared_folds_are_split_into_seeded_parts():
    oofs = [Oof(o.paths, o.labels, o.probs, o.classes, None) for o in _members(seed=5)]
    first = nested_blend(oofs, "optimize", get_metric("accuracy"))
    assert first is not None and first.shape == oofs[0].probs.shape
    assert np.array_equal(first, nested_blend(oofs, "optimize", get_metric("accuracy")))
