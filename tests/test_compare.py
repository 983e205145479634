"""`imgclf compare`: only differing config keys, metrics sorted, Markdown/CSV/self-contained HTML."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from imgclf.cli.main import run
from imgclf.config import load_config, save_config
from imgclf.errors import ConfigError
from imgclf.experiments.compare import compare_runs, differing_keys, load_runs
from imgclf.report.html import page, table
from imgclf.report.plots import fig_to_base64, learning_curves
from imgclf.report.tables import markdown_table
from imgclf.run.rundir import write_metrics

BASE = ["model.weights=none", "model.backbone=test_efficientnet", "train.epochs=3", "data.image_size=32"]


def make_run(root: Path, name: str, overrides: list[str], acc: float, loss: float, seconds: float = 10.0) -> Path:
    """A finished run directory as `fit` leaves it (config.yaml, metrics.csv, summary.json)."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    save_config(load_config(None, BASE + overrides), run_dir / "config.yaml")
    rows = [
        {
            "epoch": e,
            "lr": 1e-3,
            "train_loss": loss + 0.3 / e,
            "train_accuracy": acc - 0.1 / e,
            "val_loss": loss + 0.2 / e,
            "val_accuracy": acc - 0.05 * (3 - e),
            "epoch_seconds": seconds / 3,
            "images_per_second": 100.0,
            "trainable_params": 1000,
        }
        for e in (1, 2, 3)
    ]
    write_metrics(run_dir / "metrics.csv", rows)
    summary = {
        "val_accuracy": acc,
        "val_loss": loss,
        "val_macro_f1": acc - 0.01,
        "best_epoch": 3,
        "epochs_run": 3,
        "train_seconds": seconds,
        "total_params": 5000,
        "trainable_params": 1000,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


@pytest.fixture
def three_runs(tmp_path: Path) -> list[Path]:
    return [
        make_run(tmp_path / "runs", "low-lr", ["train.lr=0.0001", "model.dropout=0.1"], acc=0.70, loss=0.9),
        make_run(
            tmp_path / "runs", "mid-lr", ["train.lr=0.001", "model.dropout=0.1"], acc=0.85, loss=0.5, seconds=20.0
        ),
        make_run(tmp_path / "runs", "high-lr", ["train.lr=0.01", "model.dropout=0.3"], acc=0.80, loss=0.4),
    ]


def test_only_the_config_keys_that_differ_are_columns(three_runs):
    runs = load_runs(three_runs)
    assert differing_keys(runs) == ["model.dropout", "train.lr"]
    comparison = compare_runs(runs)
    assert comparison.columns[:3] == ["run", "model.dropout", "train.lr"]
    assert "train.epochs" not in comparison.columns and "data.image_size" not in comparison.columns
    assert {
        "val_accuracy",
        "val_loss",
        "val_macro_f1",
        "best_epoch",
        "epochs_run",
        "train_seconds",
        "total_params",
    } <= set(comparison.columns)


def test_rows_are_sorted_best_first_by_the_chosen_metric(three_runs):
    runs = load_runs(three_runs)
    assert [r["run"] for r in compare_runs(runs, sort="val_accuracy").rows] == ["mid-lr", "high-lr", "low-lr"]
    assert [r["run"] for r in compare_runs(runs, sort="val_loss").rows] == ["high-lr", "mid-lr", "low-lr"]
    with pytest.raises(ConfigError, match="--sort 'nope'"):
        compare_runs(runs, sort="nope")


def test_a_folder_of_runs_counts_as_all_runs_inside(three_runs):
    assert sorted(r.name for r in load_runs([three_runs[0].parent])) == ["high-lr", "low-lr", "mid-lr"]


def test_cli_prints_markdown_and_writes_markdown_csv_and_self_contained_html(three_runs, tmp_path, capsys):
    report = tmp_path / "out" / "report.html"
    run(["compare", *map(str, three_runs), "--out", str(report), "--sort", "val_loss"])
    printed = capsys.readouterr().out
    assert printed.index("| high-lr |") < printed.index("| low-lr |")
    assert "| run | model.dropout | train.lr |" in printed

    with open(report.with_suffix(".csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["run"] for r in rows] == ["high-lr", "mid-lr", "low-lr"]
    assert rows[0]["train.lr"] == "0.01" and rows[0]["model.dropout"] == "0.3"
    assert "| high-lr |" in report.with_suffix(".md").read_text()

    html = report.read_text()
    assert "data:image/png;base64," in html  # the learning curves, inline
    assert "<script" not in html and "http://" not in html and "https://" not in html and "<link" not in html
    assert all(name in html for name in ("low-lr", "mid-lr", "high-lr"))
    assert (
        "Accuracy against cost" in html and "front (train_seconds)" in html
    )  # the accuracy/time scatter with its front


def test_cli_errors_are_one_line_with_exit_2(tmp_path, capsys):
    for args in (["compare"], ["compare", str(tmp_path / "missing")], ["compare", str(tmp_path), "--experiment", "x"]):
        with pytest.raises(SystemExit) as exc:
            run(args)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.strip().count("\n") == 0, err


def test_report_helpers_build_tables_and_inline_plots():
    rows = [{"run": "a", "val_accuracy": 0.9123456, "lr": 3e-4}, {"run": "b<x>", "val_accuracy": None, "lr": 1e-3}]
    md = markdown_table(rows)
    assert md.splitlines()[1] == "|:---|---:|---:|" and "| a | 0.9123 | 3.00e-04 |" in md
    html = page("t", table(rows, highlight={"val_accuracy": "max"}))
    assert "b&lt;x&gt;" in html and 'class="best"' in html
    fig = learning_curves({"a": [{"epoch": 1, "val_accuracy": 0.5}, {"epoch": 2, "val_accuracy": 0.6}], "b": []})
    assert len(fig.axes) == 1 and fig_to_base64(fig).startswith("iVBOR")  # PNG magic, base64
