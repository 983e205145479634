"""Ablation runner: resume without redoing finished runs, the table's statistics, grid validation."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import cli
from imgclf.experiments.ablate import (
    grid_cells,
    load_grid,
    parse_grid,
    plan_ablation,
    run_ablation,
    shipped_grids,
    write_manifest,
)
from imgclf.experiments.ablation_table import CSV_COLUMNS, collect_results, render_markdown, write_tables
from imgclf.training.loop import TrainingInterrupted
from imgclf.run.rundir import write_metrics

HEADS = {"axes": {"model.head": ["linear", "mlp"]}}


def write_grid(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


class InterruptAt:
    """Ctrl-C after the first epoch of the run whose folder ends with ``target``."""

    def __init__(self, target: str):
        self.target, self.run_dir = target, None

    def on_fit_start(self, cfg, run_dir, info):
        self.run_dir = Path(run_dir)

    def on_epoch_end(self, row):
        if self.run_dir.as_posix().endswith(self.target) and row["epoch"] == 1:
            raise KeyboardInterrupt


def test_interrupted_ablation_resumes_without_redoing_finished_runs(tmp_path, tiny_dataset, tiny_overrides):
    plan = plan_ablation(
        parse_grid(HEADS, "heads"), tiny_dataset, seeds=1, out=tmp_path / "ab", overrides=tiny_overrides
    )
    first, second = (plan.run_dir(c, 0) for c in plan.cells)

    with pytest.raises(TrainingInterrupted, match="run the same imgclf ablate command again"):
        run_ablation(plan, callbacks=[InterruptAt("head-mlp/seed0")])
    assert (first / "summary.json").is_file()
    assert not (second / "summary.json").exists() and (second / "checkpoints" / "last.pt").is_file()
    untouched = {p: p.stat().st_mtime_ns for p in first.rglob("*") if p.is_file()}

    states = []
    counts = run_ablation(plan, on_run=lambda cell, seed, state: states.append((cell.slug, state)))
    assert states == [("head-linear", "done"), ("head-mlp", "resume")]
    assert counts == {"done": 1, "new": 0, "resume": 1, "restart": 0}
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*") if p.is_file()} == untouched
    assert pd.read_csv(second / "metrics.csv")["epoch"].tolist() == [1, 2]  # the resumed run kept epoch 1's row

    # a run killed before its first checkpoint restarts cleanly; finished ones are still skipped
    shutil.rmtree(first)
    first.mkdir()
    (first / "stray.txt").write_text("half-written")
    second_files = {p: p.stat().st_mtime_ns for p in second.rglob("*") if p.is_file()}
    states.clear()
    run_ablation(plan, on_run=lambda cell, seed, state: states.append((cell.slug, state)))
    assert states == [("head-linear", "restart"), ("head-mlp", "done")]
    assert (first / "summary.json").is_file() and not (first / "stray.txt").exists()
    assert {p: p.stat().st_mtime_ns for p in second.rglob("*") if p.is_file()} == second_files


def test_ablate_command_writes_tables_on_one_shared_split(tmp_path, tiny_dataset, tiny_overrides, capsys):
    grid = write_grid(tmp_path / "grid.yaml", {**HEADS, "baseline": {"model.head": "mlp"}})
    out = tmp_path / "ab"
    sets = [a for o in tiny_overrides + ["train.epochs=1"] for a in ("--set", o)]
    code, stdout, stderr = cli(["ablate", tiny_dataset, "--grid", grid, "--seeds", 2, "--out", out, *sets], capsys)
    assert code == 0, stderr

    table = pd.read_csv(out / "results.csv")
    assert list(table.columns) == ["model.head", *CSV_COLUMNS]
    assert table["model.head"].tolist() == ["linear", "mlp"]
    assert table["baseline"].tolist() == [False, True]
    assert table["seeds"].tolist() == [2, 2]
    assert table.loc[0, "mcnemar_pairs"] == 2 and 0.0 <= table.loc[0, "mcnemar_p_value"] <= 1.0
    assert table["trainable_params"].gt(0).all()
    md = (out / "results.md").read_text()
    assert "pooled across seeds" in md and "| head | val accuracy (mean ± std) | 95% CI |" in md
    html = (out / "results.html").read_text()
    assert "pooled across seeds" in html and "data:image/png;base64," in html
    assert (out / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"

    runs = sorted((out / "runs").glob("*/seed*"))
    assert [r.relative_to(out / "runs").as_posix() for r in runs] == [
        "head-linear/seed0",
        "head-linear/seed1",
        "head-mlp/seed0",
        "head-mlp/seed1",
    ]
    splits = {(r / "split.csv").read_text() for r in runs}
    assert splits == {(out / "split.csv").read_text()}
    val_images = {tuple(sorted(pd.read_csv(r / "val_predictions.csv")["path"])) for r in runs}
    assert len(val_images) == 1
    assert [json.loads((r / "summary.json").read_text())["seed"] for r in runs] == [0, 1, 0, 1]

    # everything finished: a rerun trains nothing
    code, stdout, _ = cli(["ablate", tiny_dataset, "--grid", grid, "--seeds", 2, "--out", out, *sets], capsys)
    assert code == 0 and "0 run(s) trained, 4 skipped" in stdout


def _fake_run(run_dir: Path, correct: list[bool], seconds: float, curve: list[float], order_seed: int) -> None:
    run_dir.mkdir(parents=True)
    rows = [(f"train/x/img{i}.png", ok) for i, ok in enumerate(correct)]
    random.Random(order_seed).shuffle(rows)  # pairing must go by path, not by row order
    pd.DataFrame(
        {"path": [p for p, _ in rows], "label": "x", "pred": "x", "confidence": 0.9, "correct": [ok for _, ok in rows]}
    ).to_csv(run_dir / "val_predictions.csv", index=False)
    accuracy = sum(correct) / len(correct)
    (run_dir / "summary.json").write_text(
        json.dumps(
            {"val_accuracy": accuracy, "train_seconds": seconds, "trainable_params": 1234, "val_images": len(correct)}
        )
    )
    write_metrics(run_dir / "metrics.csv", [{"epoch": e + 1, "val_accuracy": v} for e, v in enumerate(curve)])


def test_table_statistics_equal_hand_computed_values(tmp_path):
    cells = grid_cells(parse_grid({"axes": {"model.head": ["linear", "mlp"]}}))
    runs = tmp_path / "runs"
    right = lambda idx: [i in idx for i in range(10)]  # noqa: E731
    for seed in range(3):  # baseline: images 0-4 right in every seed (accuracy 0.5)
        _fake_run(runs / "head-linear" / f"seed{seed}", right(range(5)), 10.0, [0.3, 0.5], seed)
    # cell: seed0 images 0-5 (0.6; b=0, c=1), seed1 0-6 (0.7; b=0, c=2), seed2 1-8 (0.8; b=1, c=4)
    _fake_run(runs / "head-mlp" / "seed0", right(range(6)), 10.0, [0.4, 0.6], 10)
    _fake_run(runs / "head-mlp" / "seed1", right(range(7)), 20.0, [0.5, 0.7], 11)
    _fake_run(runs / "head-mlp" / "seed2", right(range(1, 9)), 30.0, [0.6], 12)

    results = collect_results(cells, [0, 1, 2], baseline=0, runs_root=runs)
    write_tables(results, tmp_path, "heads", ["model.head"])
    table = pd.read_csv(tmp_path / "results.csv").set_index("model.head")

    # accuracies 0.6, 0.7, 0.8: mean 0.7, sample std 0.1; t(0.975, 2) = 4.302653 → half-width 4.302653 * 0.1 / sqrt(3) = 0.248414
    mlp = table.loc["mlp"]
    assert mlp["val_accuracy_mean"] == pytest.approx(0.7)
    assert mlp["val_accuracy_std"] == pytest.approx(0.1)
    assert mlp["ci95_low"] == pytest.approx(0.7 - 0.248414, abs=1e-6)
    assert mlp["ci95_high"] == pytest.approx(0.7 + 0.248414, abs=1e-6)
    assert mlp["train_seconds_mean"] == pytest.approx(20.0)
    assert mlp["trainable_params"] == 1234
    # pooled over seeds: b = 1, c = 7 → exact binomial, p = 2 * P(X <= 1 | n=8, 0.5) = 2 * 9 / 256 = 0.0703125
    assert (mlp["mcnemar_baseline_only_correct"], mlp["mcnemar_cell_only_correct"]) == (1, 7)
    assert mlp["mcnemar_p_value"] == pytest.approx(0.0703125)
    assert mlp["mcnemar_method"] == "exact binomial" and mlp["mcnemar_pairs"] == 3
    base = table.loc["linear"]
    assert (
        base["baseline"]
        and base["val_accuracy_std"] == 0.0
        and base["ci95_low"] == base["ci95_high"] == pytest.approx(0.5)
    )
    assert pd.isna(base["mcnemar_p_value"])

    assert results[1].curve == [
        (1, pytest.approx(0.5)),
        (2, pytest.approx(0.65)),
    ]  # epoch 2: mean of the runs that got there
    md = render_markdown(results, ["model.head"], "heads")
    assert "| mlp | 0.7000 ± 0.1000 | [0.4516, 0.9484] | 3 | 20.0 | 1,234 | 1 / 7 | 0.070 |" in md
    assert "| linear | 0.5000 ± 0.0000 | [0.5000, 0.5000] | 3 | 10.0 | 1,234 | baseline | — |" in md


@pytest.mark.parametrize(
    "grid, message",
    [
        ({"axes": {"model.haed": ["linear"]}}, "did you mean 'model.head'"),
        ({"axes": {"model.head": ["linear", "transformer"]}}, "cell head=transformer"),
        (
            {"axes": {"finetune.strategy": ["full", "gradual"]}, "base": {"train": {"epochs": 1}}},
            "cell strategy=gradual",
        ),
        ({"axes": {"train.seed": [0, 1]}}, "use --seeds"),
        ({"axes": {"model.head": "linear"}}, "must be a non-empty list"),
        ({"axis": {"model.head": ["linear"]}}, "axes:"),
        ({"axes": {"model.head": ["linear"]}, "baseline": {"model.head": "mlp"}}, "not one of the axis values"),
    ],
)
def test_invalid_grid_exits_2_with_one_line_before_training(tmp_path, tiny_dataset, capsys, grid, message):
    path = write_grid(tmp_path / "grid.yaml", grid)
    code, _, stderr = cli(["ablate", tiny_dataset, "--grid", path, "--out", tmp_path / "ab"], capsys)
    assert code == 2
    assert message in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "ab").exists()


def test_shipped_grids_load_by_bare_name_and_validate(tmp_path, tiny_dataset):
    assert {"heads", "strategies", "data_size"} <= set(shipped_grids())
    expected = {"heads": 3, "strategies": 8, "data_size": 8}
    for name, cells in expected.items():
        plan = plan_ablation(load_grid(name), tiny_dataset, seeds=2, out=tmp_path / name)
        assert len(plan.cells) == cells and len(plan.configs) == 2 * cells
    data_size = plan_ablation(load_grid("data_size"), tiny_dataset, seeds=1, out=tmp_path / "ds")
    assert {c.model.backbone for c in data_size.configs.values()} == {"tf_efficientnet_lite0", "tf_efficientnet_lite2"}
    assert data_size.cells[data_size.baseline].settings == {"model.weights": "embedded:lite0", "data.subset": 1.0}


def test_resuming_into_a_folder_of_another_config_is_refused(tmp_path, tiny_dataset, tiny_overrides):
    from imgclf.config import save_config, with_overrides
    from imgclf.errors import ConfigError

    plan = plan_ablation(parse_grid(HEADS), tiny_dataset, seeds=1, out=tmp_path / "ab", overrides=tiny_overrides)
    cell = plan.cells[0]
    run_dir = plan.run_dir(cell, 0)
    run_dir.mkdir(parents=True)
    write_manifest(plan)  # as run_ablation leaves its folder: the manifest first
    save_config(with_overrides(plan.configs[(cell.slug, 0)], {"train.epochs": 5}), run_dir / "config.yaml")
    with pytest.raises(ConfigError, match="trained with train.epochs=5, this ablation wants 2"):
        plan_ablation(parse_grid(HEADS), tiny_dataset, seeds=1, out=tmp_path / "ab", overrides=tiny_overrides)
