"""train.metric: the registry agrees with scikit-learn, knows its direction, and drives the kept
checkpoint, early stopping, sweeps, CV/ensemble scores, evaluate and the TTA comparison."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pandas as pd
import pytest
from conftest import TINY, cli
from scipy.special import softmax
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    f1_score,
    log_loss,
    roc_auc_score,
    top_k_accuracy_score,
)

from imgclf.config import METRICS, TrainConfig, load_config
from imgclf.errors import ConfigError
from imgclf.eval.metrics import METRIC_NAMES, get_metric, monitor_direction
from imgclf.training.early_stopping import stopper_for

Y = np.array([0, 1, 2, 2, 1, 0, 3, 3, 1, 2])
LOGITS = np.array(
    [
        [2.0, 0.1, 0.3, -1.0],
        [0.2, 1.5, 1.4, 0.0],
        [0.1, 0.3, 2.2, 0.9],
        [0.0, 1.1, 0.9, 0.2],
        [1.2, 1.0, 0.1, 0.0],
        [1.9, 0.4, 0.2, 0.1],
        [0.1, 0.2, 0.3, 1.7],
        [0.3, 0.1, 1.3, 1.2],
        [0.0, 2.0, 0.1, 0.4],
        [0.5, 0.4, 0.6, 0.3],
    ]
)
P = softmax(LOGITS, axis=1)
PRED = P.argmax(1)


@pytest.mark.parametrize(
    "name, direction, expected",
    [
        ("accuracy", "max", accuracy_score(Y, PRED)),
        ("log_loss", "min", log_loss(Y, P)),
        ("macro_f1", "max", f1_score(Y, PRED, average="macro")),
        ("qwk", "max", cohen_kappa_score(Y, PRED, weights="quadratic")),
        ("roc_auc", "max", roc_auc_score(Y, P, multi_class="ovr", average="macro")),
        ("top_k", "max", top_k_accuracy_score(Y, P, k=2)),
    ],
)
def test_every_metric_matches_sklearn_and_knows_its_direction(name, direction, expected):
    metric = get_metric(name, k=2)
    assert metric.direction == direction
    assert metric.score(Y, logits=LOGITS) == pytest.approx(expected, rel=1e-9)
    assert metric.score(Y, P) == pytest.approx(expected, rel=1e-9)  # probabilities or logits: the same value
    worse, better = (expected - 0.1, expected) if direction == "max" else (expected + 0.1, expected)
    assert metric.better(better, worse) and not metric.better(worse, better)
    assert monitor_direction(f"val_{name}") == direction and metric.column == f"val_{name}"


def test_the_registry_and_the_config_name_the_same_metrics():
    assert METRIC_NAMES == METRICS
    assert monitor_direction("val_loss") == "min" and monitor_direction("val_accuracy") == "max"


def test_an_unknown_metric_is_one_config_line_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"unknown metric 'logloss' \(did you mean 'log_loss'\?\)"):
        get_metric("logloss")
    with pytest.raises(ConfigError) as info:
        load_config(None, ["train.metric=logloss"])
    assert str(info.value).startswith(
        "train.metric: unknown metric 'logloss' (did you mean 'log_loss'?); choose one of accuracy,"
    )
    assert "\n" not in str(info.value)


def test_undefined_scores_are_nan_with_a_warning_never_a_crash(caplog):
    one_class = np.zeros(4, dtype=int)
    with caplog.at_level(logging.WARNING, logger="imgclf"):
        assert math.isnan(get_metric("roc_auc").score(one_class, P[:4]))
        assert math.isnan(get_metric("qwk").score(one_class, np.tile([[1.0, 0, 0, 0]], (4, 1))))
    assert "ROC AUC is undefined" in caplog.text and "kappa is undefined" in caplog.text
    # Two of four classes present: the macro mean runs over those two, and says so.
    y, p = np.array([0, 1, 0, 1]), P[[0, 1, 5, 8]]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="imgclf"):
        value = get_metric("roc_auc").score(y, p)
    expected = np.mean([roc_auc_score(y == c, p[:, c]) for c in (0, 1)])
    assert value == pytest.approx(expected) and "only 2 of 4 classes" in caplog.text


def test_binary_and_too_large_k_cases():
    y, p = np.array([0, 1, 1, 0]), np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.4, 0.6]])
    assert get_metric("roc_auc").score(y, p) == pytest.approx(roc_auc_score(y, p[:, 1]))
    assert get_metric("top_k", k=1).score(y, p) == pytest.approx(0.5)
    assert get_metric("top_k", k=4).score(Y, P) == 1.0  # k >= classes: trivially 1, with a warning


# Epoch rows where the accuracy-best epoch (2) is not the log-loss-best epoch (3).
ROWS = [
    {"epoch": 1, "val_loss": 0.90, "val_accuracy": 0.70, "val_log_loss": 0.90},
    {"epoch": 2, "val_loss": 0.80, "val_accuracy": 0.85, "val_log_loss": 0.80},
    {"epoch": 3, "val_loss": 0.60, "val_accuracy": 0.80, "val_log_loss": 0.60},
    {"epoch": 4, "val_loss": 0.70, "val_accuracy": 0.82, "val_log_loss": 0.70},
]


def _kept(train: TrainConfig) -> tuple[int, bool]:
    stopper = stopper_for(train)
    for i, row in enumerate(ROWS):
        stopper.update(i, row[train.monitored])
    return stopper.best_epoch + 1, stopper.should_stop


def test_train_metric_log_loss_changes_the_kept_checkpoint_and_early_stopping():
    assert _kept(TrainConfig(patience=2)) == (2, True)  # default: accuracy, stopped after epochs 3 and 4
    assert _kept(TrainConfig(metric="log_loss", patience=2)) == (3, False)
    assert TrainConfig(metric="log_loss").monitored == "val_log_loss"
    # train.monitor still wins when it is set (back-compatibility).
    assert _kept(TrainConfig(metric="log_loss", monitor="val_accuracy", patience=2)) == (2, True)


def test_an_undefined_epoch_never_beats_a_defined_one():
    stopper = stopper_for(TrainConfig(metric="roc_auc", patience=None))
    assert [stopper.update(e, v) for e, v in enumerate([math.nan, 0.6, math.nan, 0.5, 0.7])] == [
        True,
        True,
        False,
        False,
        True,
    ]
    assert stopper.best_epoch == 4


def test_sweeps_optimise_in_the_metric_s_direction():
    from imgclf.experiments.sweep import direction_for

    assert direction_for(TrainConfig(metric="log_loss").monitored) == "minimize"
    assert direction_for(TrainConfig(metric="qwk").monitored) == "maximize"
    assert direction_for("val_loss") == "minimize" and direction_for("val_accuracy") == "maximize"


def test_oof_scores_and_ensemble_weights_use_the_metric():
    from imgclf.experiments.ensemble import choose_weights
    from imgclf.experiments.oof import scores

    out = scores(Y, P, get_metric("qwk"))
    assert out["qwk"] == pytest.approx(cohen_kappa_score(Y, PRED, weights="quadratic"))
    assert {"accuracy", "macro_f1", "log_loss"} <= set(out) and "qwk" not in scores(Y, P)
    rng = np.random.default_rng(0)
    members = [softmax(LOGITS + rng.normal(0, 1.5, LOGITS.shape), axis=1) for _ in range(3)]
    _, how = choose_weights(members, Y, "optimize", get_metric("log_loss"))
    assert how == "log-loss optimal"
    acc = get_metric("accuracy")
    weights, how = choose_weights(members, Y, "optimize", acc)
    blended = np.tensordot(weights, np.stack(members), axes=1)
    assert acc.score(Y, blended) >= acc.score(Y, np.mean(members, axis=0))  # never below the equal blend on the metric


@pytest.fixture(scope="module")
def macro_f1_run(tmp_path_factory):
    from conftest import make_dataset

    from imgclf.training.loop import fit

    root = tmp_path_factory.mktemp("metric")
    data = make_dataset(root / "data")
    out = root / "run"
    fit(load_config(None, [*TINY, "train.metric=macro_f1", "train.epochs=3", "train.patience=null"]), data, out)
    return out


def test_train_with_macro_f1_records_it_per_epoch_and_in_the_summary(macro_f1_run):
    metrics = pd.read_csv(macro_f1_run / "metrics.csv")
    assert list(metrics.columns[4:7]) == ["val_loss", "val_accuracy", "val_macro_f1"]  # val_accuracy and val_loss stay
    assert metrics["val_macro_f1"].between(0, 1).all()
    summary = json.loads((macro_f1_run / "summary.json").read_text())
    assert summary["metric"] == "macro_f1" and summary["monitor"] == "val_macro_f1"
    best = int(metrics["val_macro_f1"].idxmax())  # the first epoch with the highest macro-F1 is the one kept
    assert summary["best_epoch"] == best + 1
    assert summary["best_value"] == pytest.approx(metrics["val_macro_f1"][best], abs=1e-5)
    assert summary["val_macro_f1"] == pytest.approx(summary["best_value"], abs=1e-5)


def test_evaluate_writes_the_metric_and_log_loss_around_temperature_scaling(macro_f1_run, tmp_path, capsys):
    code, out, err = cli(["evaluate", macro_f1_run, "--out", tmp_path / "eval"], capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["metric"] == "macro_f1" and "log_loss" in metrics
    assert "macro-F1" in out and "(the run's metric)" in out
    if "temperature" in metrics:  # a fitted temperature: log-loss before and after it
        assert metrics["log_loss_after"] <= metrics["log_loss_before"] + 1e-6
        assert metrics["log_loss_after"] == pytest.approx(metrics["log_loss"], abs=1e-6)
        assert "log-loss" in out


def test_tta_compare_scores_every_row_with_the_metric(macro_f1_run, tmp_path, capsys):
    code, _, err = cli(["evaluate", macro_f1_run, "--out", tmp_path / "eval", "--tta-compare", "--tta-ns", "2"], capsys)
    assert code == 0, err
    table = pd.read_csv(tmp_path / "eval" / "tta_compare.csv")
    assert (table["metric"] == "macro_f1").all() and table["score"].between(0, 1).all()
    assert "| macro_f1 |" in (tmp_path / "eval" / "tta_compare.md").read_text()


def test_cv_summary_scores_folds_with_the_metric_and_an_old_cv_still_resumes(tmp_path):
    from imgclf.config import save_config
    from imgclf.experiments.cv import _check_resume, summarize
    from imgclf.experiments.ensemble import member_metric
    from imgclf.experiments.oof import Oof
    from imgclf.io import atomic_write_json

    for k in (1, 2):
        atomic_write_json(
            tmp_path / f"fold_{k}" / "summary.json", {"best_epoch": k, "epochs_run": 2, "train_seconds": 1.0}
        )
    oof = Oof([f"i{i}" for i in range(len(Y))], Y, P, ["a", "b", "c", "d"], np.array([1, 2] * (len(Y) // 2)))
    summary = summarize(tmp_path, 2, oof, get_metric("qwk"))
    assert summary["metric"] == "qwk" and next(iter(summary["cv"])) == "qwk"
    assert summary["oof"]["qwk"] == pytest.approx(cohen_kappa_score(Y, PRED, weights="quadratic"))
    assert [r["qwk"] for r in summary["per_fold"]] == summary["cv"]["qwk"]["values"]
    # A CV folder saved before train.metric existed (monitor: val_accuracy) resumes under today's defaults.
    cfg = load_config(None, TINY)
    atomic_write_json(tmp_path / "cv.json", {"folds": 2})
    save_config(load_config(None, [*TINY, "train.monitor=val_accuracy"]), tmp_path / "cv_config.yaml")
    assert _check_resume(cfg, tmp_path, 2)[1] is False
    save_config(load_config(None, [*TINY, "train.metric=top_k", "train.metric_k=3"]), tmp_path / "cv_config.yaml")
    with pytest.raises(ConfigError, match="another config"):
        _check_resume(cfg, tmp_path, 2)
    assert member_metric(tmp_path).label == "top-3 accuracy"  # an ensemble member's metric: its saved config's


def test_a_sweep_minimises_the_log_loss_of_its_trials(tiny_dataset, tmp_path):
    import optuna

    from imgclf.experiments.space import read_space
    from imgclf.experiments.sweep import SweepOptions, run_sweep

    space_file = tmp_path / "space.yaml"
    space_file.write_text(
        "space:\n  train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n"
        "proxy:\n  train.epochs: 1\n  train.max_steps_per_epoch: 1\n"
    )
    params, proxy = read_space(space_file)
    result = run_sweep(
        tiny_dataset,
        load_config(None, [*TINY, "train.metric=log_loss"]),
        params,
        SweepOptions(trials=1, study="ll", out=tmp_path / "sweep", proxy=proxy),
    )
    assert result.direction == "minimize" and result.monitor == "val_log_loss"
    trial_summary = json.loads((tmp_path / "sweep" / "trials" / "0000" / "summary.json").read_text())
    assert result.best_value == pytest.approx(trial_summary["val_log_loss"])
    study = optuna.load_study(study_name="ll", storage=f"sqlite:///{tmp_path / 'sweep' / 'optuna.db'}")
    assert study.user_attrs["monitor"] == "val_log_loss"


def test_the_run_report_shows_the_run_s_metric(macro_f1_run):
    from imgclf.report.run_report import render_run_report

    page = render_run_report(macro_f1_run)
    assert ">val_macro_f1<" in page and ">best_value<" in page and ">monitor<" in page


def test_compare_shows_and_sorts_by_the_runs_metric(tmp_path):
    from imgclf.config import save_config
    from imgclf.experiments.compare import compare_runs, load_runs
    from imgclf.io import atomic_write_json

    runs = []
    for name, value in (("a", 0.4), ("b", 0.2), ("c", 0.3)):
        run = tmp_path / name
        save_config(load_config(None, [*TINY, "train.metric=log_loss", f"train.seed={len(runs)}"]), run / "config.yaml")
        atomic_write_json(run / "summary.json", {"metric": "log_loss", "val_log_loss": value, "val_accuracy": 0.5})
        runs.append(run)
    comparison = compare_runs(load_runs(runs), sort="val_log_loss")
    assert "val_log_loss" in comparison.columns
    assert [r["run"] for r in comparison.rows] == ["b", "c", "a"]  # lower log-loss first


def test_a_run_without_validation_keeps_its_last_epoch_whatever_the_metric_s_direction(tiny_dataset, tmp_path):
    from imgclf.training.loop import fit

    summary = fit(
        load_config(None, [*TINY, "train.metric=log_loss", "data.val_fraction=0", "train.patience=null"]),
        tiny_dataset,
        tmp_path / "run",
    )
    assert summary["best_epoch"] == 2 and summary["val_log_loss"] is None and summary["best_value"] is None


def test_train_says_the_metric_first():
    from imgclf.cli.commands import describe_result

    text = describe_result({"metric": "qwk", "val_qwk": 0.8123, "val_accuracy": 0.9, "best_epoch": 3, "epochs_run": 5})
    assert text == "val qwk 0.8123, val accuracy 0.9000 (best epoch 3 of 5)"
    assert describe_result({"val_accuracy": 0.9, "best_epoch": 1, "epochs_run": 1}).startswith("val accuracy 0.9000")
