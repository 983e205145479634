"""Class imbalance: train.class_weights, data.sampler=balanced and train.loss=focal."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight

from conftest import TINY, cli, make_dataset
from imgclf.config import load_config
from imgclf.data.balance import BalancedSampler, balanced_weights, class_weights, read_class_weight_file
from imgclf.errors import ConfigError
from imgclf.training.losses import soft_targets, weighted_focal_loss
from imgclf.training.step import Criterion

LABELS = [0] * 12 + [1] * 5 + [2] * 2 + [3] * 1  # 12:5:2:1


def test_balanced_weights_equal_sklearn():
    expected = compute_class_weight("balanced", classes=np.arange(4), y=np.array(LABELS))
    np.testing.assert_allclose(balanced_weights(LABELS, 4), expected)
    np.testing.assert_allclose(class_weights("balanced", LABELS, ["a", "b", "c", "d"]), expected)
    assert class_weights("none", LABELS, ["a", "b", "c", "d"]) is None


def test_a_class_missing_from_the_training_split_weighs_one():
    weights = balanced_weights([0, 0, 1], 3)
    np.testing.assert_allclose(
        weights[:2], compute_class_weight("balanced", classes=np.arange(2), y=np.array([0, 0, 1]))
    )
    assert weights[2] == 1.0


@pytest.mark.parametrize(
    "name, text",
    [
        ("w.yaml", "a: 2.0\nc: 0.5\n"),
        ("w.json", '{"a": 2, "c": 0.5}'),
        ("w.csv", "class,weight\na,2\nc,0.5\n"),
    ],
)
def test_a_weight_file_maps_class_names_and_unlisted_classes_weigh_one(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    np.testing.assert_allclose(class_weights(str(path), [], ["a", "b", "c"]), [2.0, 1.0, 0.5])


@pytest.mark.parametrize(
    "name, text, fragment",
    [
        ("w.yaml", "a: -1\n", "must be a finite number >= 0"),
        ("w.yaml", "a: [1\n", "not valid YAML"),
        ("w.json", '{"a": 1,', "not valid JSON"),
        ("w.csv", "a,1,2\n", "expected class,weight"),
        ("w.yaml", "a: 0\n", "every weight is 0"),
        ("w.txt", "a: 1\n", "must be none, balanced or a"),
        ("w.yaml", "- 1\n- 2\n", "mapping of class name to weight"),
    ],
)
def test_a_bad_weight_file_is_one_config_error(tmp_path, name, text, fragment):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        read_class_weight_file(path)


def test_a_weight_file_naming_an_unknown_class_is_refused(tmp_path):
    path = tmp_path / "w.yaml"
    path.write_text("a: 2\nzebra: 3\n")
    with pytest.raises(ConfigError, match="zebra"):
        class_weights(str(path), [], ["a", "b"])


def test_weighted_loss_equals_torch_weighted_ce_and_changes_the_gradient():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 3, requires_grad=True), torch.tensor([0, 0, 0, 0, 1, 2])
    weights = torch.tensor([0.5, 2.0, 3.0])
    weighted = Criterion(3, 0.0, class_weights=weights)(logits, labels, None)
    torch.testing.assert_close(weighted, F.cross_entropy(logits, labels, weight=weights))
    plain = Criterion(3, 0.0)(logits, labels, None)
    assert not torch.allclose(weighted, plain)
    (grad_w,) = torch.autograd.grad(weighted, logits)
    (grad_p,) = torch.autograd.grad(plain, logits)
    assert not torch.allclose(grad_w, grad_p)


def test_weights_act_on_soft_targets_by_the_target_distribution():
    torch.manual_seed(0)
    logits = torch.randn(2, 2)
    soft = torch.tensor([[0.7, 0.3], [0.2, 0.8]])
    weights = torch.tensor([1.0, 3.0])
    per_sample = -(soft * F.log_softmax(logits, 1)).sum(1)
    sample_weight = soft @ weights  # 1.6 and 2.6
    expected = (sample_weight * per_sample).sum() / sample_weight.sum()
    torch.testing.assert_close(
        Criterion(2, 0.0, mixup=1.0, class_weights=weights)(logits, torch.tensor([0, 1]), soft), expected
    )


def test_focal_at_gamma_zero_equals_cross_entropy_with_label_smoothing():
    torch.manual_seed(1)
    logits, labels = torch.randn(8, 5), torch.randint(0, 5, (8,))
    for smoothing in (0.0, 0.1):
        focal = Criterion(5, smoothing, focal_gamma=0.0)(logits, labels, None)
        torch.testing.assert_close(focal, F.cross_entropy(logits, labels, label_smoothing=smoothing))


def test_focal_down_weights_easy_examples_more_than_hard_ones():
    easy, hard = torch.tensor([[4.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.5, 0.0]])
    target = soft_targets(torch.tensor([0]), 3, 0.0)
    ratio_easy = weighted_focal_loss(easy, target, gamma=2.0) / weighted_focal_loss(easy, target)
    ratio_hard = weighted_focal_loss(hard, target, gamma=2.0) / weighted_focal_loss(hard, target)
    assert ratio_easy < 0.01 < 0.3 < ratio_hard < 1.0


def test_balanced_sampler_draws_rare_classes_about_as_often_as_common_ones():
    sampler = BalancedSampler(LABELS, 4, seed=7)
    counts = Counter()
    for epoch in range(500):  # 10,000 draws: each class expects 2,500, sd about 43
        sampler.set_epoch(epoch)
        counts.update(LABELS[i] for i in sampler)
    assert len(sampler) == len(LABELS)
    assert all(2_200 < counts[c] < 2_800 for c in range(4)), counts


def test_balanced_sampler_is_seeded_per_epoch_and_ranks_shard_one_draw():
    one = BalancedSampler(LABELS, 4, seed=3)
    one.set_epoch(2)
    first, again = list(one), list(one)
    one.set_epoch(3)
    assert first == again and list(one) != first
    ranks = [BalancedSampler(LABELS, 4, seed=3, rank=r, world_size=3) for r in range(3)]
    for r in ranks:
        r.set_epoch(2)
    shards = [list(r) for r in ranks]
    assert [len(s) for s in shards] == [len(LABELS) // 3] * 3
    assert [x for trio in zip(*shards) for x in trio] == first[: 3 * (len(LABELS) // 3)]


def test_config_rejects_unknown_loss_and_sampler_names():
    with pytest.raises(ConfigError, match="train.loss"):
        load_config(None, ["train.loss=dice"])
    with pytest.raises(ConfigError, match="data.sampler"):
        load_config(None, ["data.sampler=oversample"])


def test_train_with_a_bad_weight_file_is_one_line_and_exit_2(tmp_path, tiny_dataset, capsys):
    bad = tmp_path / "w.yaml"
    bad.write_text("alpha: -2\n")
    code, _, err = cli(
        [
            "train",
            tiny_dataset,
            "--out",
            tmp_path / "run",
            *sum([["--set", s] for s in [*TINY, f"train.class_weights={bad}"]], []),
        ],
        capsys,
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "alpha" in err, err
    assert not (tmp_path / "run").exists()


def test_train_with_a_weight_file_naming_an_unknown_class_writes_nothing(tmp_path, tiny_dataset, capsys):
    bad = tmp_path / "w.json"
    bad.write_text('{"alpha": 2, "omega": 1}')
    code, _, err = cli(
        [
            "train",
            tiny_dataset,
            "--out",
            tmp_path / "run",
            *sum([["--set", s] for s in [*TINY, f"train.class_weights={bad}"]], []),
        ],
        capsys,
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "omega" in err, err
    assert not (tmp_path / "run").exists()


def test_a_tiny_run_with_all_three_options_records_them(tmp_path, capsys):
    data = make_dataset(tmp_path / "data", per_class=4, test=0)
    make_dataset(tmp_path / "more", classes=("alpha",), per_class=8, test=0, seed=1)
    for path in (tmp_path / "more" / "train" / "alpha").iterdir():  # alpha: 12 images, beta and gamma 4
        shutil.copy(path, data / "train" / "alpha" / f"extra_{path.name}")
    out = tmp_path / "run"
    overrides = [
        *TINY,
        "train.epochs=1",
        "train.class_weights=balanced",
        "data.sampler=balanced",
        "train.loss=focal",
        "train.focal_gamma=1.5",
    ]
    code, _, err = cli(["train", data, "--out", out, *sum([["--set", s] for s in overrides], [])], capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["loss"] == "focal(gamma=1.5)" and summary["sampler"] == "balanced"
    assert set(summary["class_weights"]) == {"alpha", "beta", "gamma"}
    assert all(w > 0 for w in summary["class_weights"].values())


def test_the_imbalance_benchmark_scores_macro_f1_and_the_worst_class(tmp_path):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "bench_imbalance", Path(__file__).resolve().parents[1] / "bench" / "imbalance.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    answers, submission = tmp_path / "answers.csv", tmp_path / "sub.csv"
    answers.write_text("Id,Category,label\n1,0,a\n2,0,a\n3,1,b\n4,1,b\n")
    submission.write_text("Id,Category\n1,a\n2,a\n3,a\n")  # id 4 missing: wrong
    scores = bench.score(submission, answers)
    assert scores["accuracy"] == 0.5 and scores["worst_recall"] == 0.0
    assert scores["macro_f1"] == pytest.approx((2 * 2 / 3 * 1 / (2 / 3 + 1) + 0) / 2)
    table = bench.table({"baseline": [{**scores, "train_s": 1.0}]}, [0])
    assert "| baseline | 0.500 | 0.400 | 0.000 | seed 0: 0.500 / 0.400 | 1 |" in table


def test_class_weights_null_in_yaml_means_none(tmp_path):
    from imgclf.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text("train:\n  class_weights: null\n")
    assert load_config(path).train.class_weights == "none"
