"""train --budget's ensemble: how many final models the plan affords, how the time is shared between them, and
that ``predict RUN`` blends them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imgclf.budget import final as budget_final
from imgclf.budget.plan import MIN_EPOCHS, CostModel, plan_final, plan_members, report_reserve
from imgclf.config import Config, with_overrides
from imgclf.errors import RunDirError
from imgclf.infer.model_set import resolve_model_set
from imgclf.run.rundir import RunDir

COST = CostModel(0.0, 0.01 / 224**2)  # 100 images/s at 224 px: 1000 images, 10 s an epoch at 224


def test_one_model_takes_the_size_first_then_extra_epochs_become_more_models():
    # 180 s: one model would train 18 epochs at 224; three models get 6 each at the same size
    assert plan_final(180.0, 1000, COST, cap=224, max_epochs=20) == (224, 18)
    assert plan_members(180.0, 1000, COST, 224, 20, most=3) == (3, 224, MIN_EPOCHS)
    # 130 s: three would get 4 epochs each (or a smaller size), two get 6
    assert plan_members(130.0, 1000, COST, 224, 20, most=3) == (2, 224, 6)
    # 100 s: two would get 5 epochs each: one model, with all of them
    assert plan_members(100.0, 1000, COST, 224, 20, most=3) == (1, 224, 10)
    # a fit's fixed overhead counts once for each model after the first: 3 x 6 epochs no longer fit in 180 s
    assert plan_members(180.0, 1000, COST, 224, 20, most=3, per_run_overhead=5.0) == (2, 224, 8)
    # train.budget_members=1: always one model
    assert plan_members(180.0, 1000, COST, 224, 20, most=1) == (1, 224, 18)
    # a budget too short for the size the data could take never splits: the size would shrink
    single = plan_final(30.0, 1000, COST, cap=224, max_epochs=20)
    assert single[0] < 224 and plan_members(30.0, 1000, COST, 224, 20, most=3) == (1, *single)


def _run_dir(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "config.yaml").write_text("{}\n")
    return root


def test_an_ensemble_manifest_may_list_the_run_it_sits_in(tmp_path):
    run = _run_dir(tmp_path / "run")
    _run_dir(run / "members" / "2")
    (run / "ensemble.json").write_text(
        json.dumps({"members": [{"path": ".", "weight": 0.5}, {"path": "members/2", "weight": 0.5}]})
    )
    models = resolve_model_set(run)
    assert models.kind == "ensemble"
    assert [(p.resolve(), w) for p, w in models.members] == [
        (run.resolve(), 0.5),
        ((run / "members" / "2").resolve(), 0.5),
    ]
    # a manifest that names its own folder, when that folder is no run: one clear error, not a recursion
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "ensemble.json").write_text(json.dumps({"members": [{"path": ".", "weight": 1.0}]}))
    with pytest.raises(RunDirError, match="lists the folder itself"):
        resolve_model_set(bare)


class _Clock:
    def __init__(self):
        self.now = 0.0

    def elapsed(self) -> float:
        return self.now


def _fake_training(monkeypatch, clock: _Clock, seconds: list[float]) -> list[tuple[Path, Config, list]]:
    """``final.train_final`` replaced: each call records its run, config and callbacks and advances the clock by the
    next of ``seconds``."""
    calls: list[tuple[Path, Config, list]] = []

    def train_final(cfg, dataset, run, tracking_uri, callbacks):
        calls.append((run.root, cfg, list(callbacks)))
        run.root.mkdir(parents=True, exist_ok=True)
        clock.now += seconds[len(calls) - 1]
        return {"epochs_run": 6, "train_seconds": seconds[len(calls) - 1]}

    monkeypatch.setattr(budget_final, "train_final", train_final)
    return calls


def test_members_share_the_time_left_evenly_each_with_its_own_seed(tmp_path, monkeypatch):
    clock, final = _Clock(), with_overrides(Config(), {"train.seed": 7})
    calls = _fake_training(monkeypatch, clock, [90.0, 100.0, 80.0])
    budget, run = 330.0, RunDir(tmp_path / "run")
    ends_at = budget - report_reserve(budget)  # 320 s
    summaries = budget_final.train_members(final, tmp_path, run, 3, clock, budget, 2.0, None, ["progress"])
    assert len(summaries) == 3
    assert [c[0] for c in calls] == [run.root, run.root / "members" / "2", run.root / "members" / "3"]
    assert [c[1].train.seed for c in calls] == [7, 8, 9]
    # each model's limit: TIME_SHARE of an even share of the time left then, less a fit's overhead
    limits = [c[1].train.time_limit for c in calls]
    shares = [ends_at / 3, (ends_at - 90.0) / 2, ends_at - 190.0]
    assert limits == pytest.approx([budget_final.TIME_SHARE * (s - 2.0) for s in shares])
    assert all(c[2] == ["progress"] for c in calls)  # the caller's callbacks, and no other: the limit is the one clock
    manifest = json.loads((run.root / "ensemble.json").read_text())
    assert [m["path"] for m in manifest["members"]] == [".", "members/2", "members/3"]
    assert [m["weight"] for m in manifest["members"]] == pytest.approx([1 / 3] * 3)


def test_a_model_whose_share_has_shrunk_by_half_is_not_started(tmp_path, monkeypatch):
    clock = _Clock()
    calls = _fake_training(monkeypatch, clock, [250.0, 10.0, 10.0])  # the first model overran its 107 s share
    run = RunDir(tmp_path / "run")
    summaries = budget_final.train_members(Config(), tmp_path, run, 3, clock, 330.0, 0.0, None, [])
    # left: 70 s for two models (35 s each) of the planned 107 s: neither starts, and one model needs no manifest
    assert len(summaries) == len(calls) == 1
    assert not (run.root / "ensemble.json").exists()


def test_one_model_writes_no_manifest_and_keeps_the_single_run_plan(tmp_path, monkeypatch):
    clock = _Clock()
    calls = _fake_training(monkeypatch, clock, [100.0])
    run = RunDir(tmp_path / "run")
    budget_final.train_members(Config(), tmp_path, run, 1, clock, 330.0, 3.0, None, [])
    ends_at = 330.0 - report_reserve(330.0)
    assert calls[0][1].train.time_limit == pytest.approx(budget_final.TIME_SHARE * (ends_at - 3.0))
    assert not (run.root / "ensemble.json").exists()


def test_predict_evaluate_and_export_of_a_run_with_members(tiny_dataset, tiny_overrides, tmp_path, capsys):
    """A run whose ensemble.json lists itself and members/2 (what train --budget writes for two models): predict and
    evaluate blend both, export writes the run's own model and says so."""
    import shutil

    import numpy as np
    import torch
    from safetensors.torch import load_file, save_file

    import imgclf
    from imgclf.infer.jobs import evaluate_run
    from conftest import cli

    run = tmp_path / "run"
    imgclf.train(
        tiny_dataset, out=run, overrides=[*tiny_overrides, "data.val_fraction=0"], progress=False, report=False
    )
    alone = imgclf.predict(
        run, tiny_dataset / "test", out=tmp_path / "one.csv", probs=tmp_path / "one_probs.csv", progress=False
    )
    member = run / "members" / "2"
    shutil.copytree(run, member, ignore=shutil.ignore_patterns("members"))
    weights = load_file(member / "checkpoints" / "best.safetensors")
    head = next(k for k in weights if k.startswith("head") and k.endswith("bias"))
    assert weights[head].shape == (3,)
    weights[head] = weights[head] + torch.tensor([3.0, 0.0, 0.0])  # the second model leans to class 0
    save_file(weights, member / "checkpoints" / "best.safetensors")
    (run / "ensemble.json").write_text(
        json.dumps({"members": [{"path": ".", "weight": 0.5}, {"path": "members/2", "weight": 0.5}]})
    )

    both = imgclf.predict(
        run, tiny_dataset / "test", out=tmp_path / "two.csv", probs=tmp_path / "two_probs.csv", progress=False
    )
    assert alone["models"] == 1 and both["models"] == 2
    first = np.loadtxt(tmp_path / "one_probs.csv", delimiter=",", skiprows=1, usecols=(1, 2, 3))
    blended = np.loadtxt(tmp_path / "two_probs.csv", delimiter=",", skiprows=1, usecols=(1, 2, 3))
    assert (blended[:, 0] > first[:, 0]).all()  # the second model's lean shows in the blend
    scored = evaluate_run(run, tiny_dataset, tmp_path / "eval")
    assert scored["models"] == 2
    code, out, _ = cli(["export", run, "--format", "timm", "--out", tmp_path / "timm"], capsys)
    assert code == 0 and "an ensemble of 2 models" in out
