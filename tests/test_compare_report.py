"""The compare report (issue 29): one legend for every run, latency the chart cannot place is named, budget runs rank."""

from __future__ import annotations

import json
from pathlib import Path

from imgclf.config import load_config, save_config
from imgclf.experiments.compare import ESTIMATE, ESTIMATE_NOTE, compare_runs, load_runs, render_html
from imgclf.report.pareto import RunPoint, pareto_section
from imgclf.report.plots import learning_curves
from imgclf.run.rundir import write_metrics

BASE = ["model.weights=none", "model.backbone=test_efficientnet", "train.epochs=2", "data.image_size=32"]


def _run(root: Path, name: str, summary: dict, validated: bool = True) -> Path:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    save_config(load_config(None, BASE), run_dir / "config.yaml")
    rows = [
        {
            "epoch": e,
            "lr": 1e-3,
            "train_loss": 1.0 / e,
            "train_accuracy": 0.5 + 0.1 * e,
            **({"val_loss": 1.1 / e, "val_accuracy": 0.5 + 0.1 * e} if validated else {}),
        }
        for e in (1, 2)
    ]
    write_metrics(run_dir / "metrics.csv", rows)
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def test_the_loss_legend_names_a_run_without_validation():
    with_val = [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.2, "val_accuracy": 0.6}]
    without = [{"epoch": 1, "train_loss": 0.9}]  # a --budget run: no validation rows
    fig = learning_curves({"plain": with_val, "budget": without})
    names = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert sorted(names) == ["budget", "plain"]


def test_latency_of_a_run_without_accuracy_is_named_not_an_empty_chart():
    points = [RunPoint("plain", 0.8, 50.0, None), RunPoint("budget", None, 90.0, 115.7)]
    page = pareto_section(points)
    assert page.count("<img") == 1  # training time: one run to plot; latency: none, so no empty chart
    assert "budget (115.7)" in page and "inference latency" in page
    assert "no run recorded" not in page


def test_a_budget_run_is_ranked_by_its_estimate_and_the_report_says_what_that_is(tmp_path):
    plain = _run(tmp_path, "plain", {"val_accuracy": 0.80, "train_seconds": 50.0})
    budget = _run(
        tmp_path,
        "budget",
        {
            "val_accuracy": None,
            "train_seconds": 90.0,
            "recipe": {"estimate": {"metric": "accuracy", "value": 0.85, "se": 0.01, "images": 1200}, "members": 1},
        },
        validated=False,
    )
    comparison = compare_runs(load_runs([plain, budget]), sort=ESTIMATE)
    assert [r["run"] for r in comparison.rows] == ["budget", "plain"]
    assert [r[ESTIMATE] for r in comparison.rows] == [0.85, 0.80]
    assert ESTIMATE_NOTE in comparison.markdown
    assert ESTIMATE_NOTE.split(":")[0] in render_html(comparison)


def test_without_a_budget_run_there_is_no_estimate_column(tmp_path):
    runs = [_run(tmp_path, "a", {"val_accuracy": 0.8}), _run(tmp_path, "b", {"val_accuracy": 0.7})]
    comparison = compare_runs(load_runs(runs))
    assert ESTIMATE not in comparison.columns and ESTIMATE_NOTE not in comparison.markdown
