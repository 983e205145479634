"""Progressive resizing (``data.start_size``): the schedule, the loop that follows it, the clock's re-plan and the
budget recipe that plans with it."""

from __future__ import annotations

import csv

import pytest

from imgclf.budget.plan import MIN_EPOCHS, CostModel, ladder, plan_final, run_seconds
from imgclf.config import Config, load_config, with_overrides
from imgclf.data.progressive import MULTIPLE, full_size_epochs, relative_cost, size_at
from imgclf.training.time_plan import Growth, pace_at, replanned_epochs
from conftest import TINY, cli


@pytest.mark.parametrize("epochs", [1, 2, 3, 4, 6, 7, 10, 30])
@pytest.mark.parametrize("start, final", [(64, 112), (96, 160), (16, 48), (130, 224)])
def test_the_schedule_grows_from_the_start_to_the_full_size_for_the_last_third(epochs, start, final):
    sizes = [size_at(e, epochs, start, final) for e in range(1, epochs + 1)]
    assert sizes == sorted(sizes) and all(start - MULTIPLE <= s <= final for s in sizes)
    assert sizes[-full_size_epochs(epochs) :] == [final] * full_size_epochs(epochs)
    assert all(s % MULTIPLE == 0 for s in sizes if s != final)
    if epochs > 1:
        assert abs(sizes[0] - start) < MULTIPLE and relative_cost(epochs, start, final) < 1.0


def test_no_start_or_a_start_not_below_the_size_is_the_full_size_throughout():
    for start in (None, 0, 160, 300):
        assert [size_at(e, 6, start or None, 160) for e in range(1, 7)] == [160] * 6
    assert relative_cost(6, None, 160) == 1.0


def test_training_grows_the_size_and_evaluation_stays_at_the_full_size(tiny_dataset, tmp_path, monkeypatch):
    """The model sees the scheduled size in each training epoch and the full size in every validation batch;
    metrics.csv records each epoch's size."""

    from imgclf.training import loop as loop

    seen: list[tuple[bool, int]] = []
    original = loop.training_model

    def spying(model, cfg, ctx):
        wrapped = original(model, cfg, ctx)
        model.register_forward_pre_hook(lambda m, args: seen.append((m.training, args[0].shape[-1])))
        return wrapped

    monkeypatch.setattr(loop, "training_model", spying)
    cfg = load_config(None, [*TINY, "data.image_size=48", "data.start_size=16", "train.epochs=4"])
    loop.fit(cfg, tiny_dataset, tmp_path / "run")
    with open(tmp_path / "run" / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["train_size"]) for r in rows] == [size_at(e, 4, 16, 48) for e in range(1, 5)] == [16, 32, 48, 48]
    assert sorted({s for training, s in seen if training}) == [16, 32, 48]
    assert {s for training, s in seen if not training} == {48}


def test_the_loop_times_the_epochs_to_come_by_train_time_cost(tiny_dataset, tmp_path, monkeypatch):
    """Under a time limit the loop hands the clock each epoch's size and training seconds (as metrics.csv records
    them) and train.time_cost's a + b*s^2."""

    from imgclf.training import loop as loop

    seen = []
    original = loop.replanned
    monkeypatch.setattr(loop, "replanned", lambda *a: seen.append(a[5]) or original(*a))
    cfg = load_config(
        None,
        [
            *TINY,
            "data.image_size=48",
            "data.start_size=16",
            "train.epochs=3",
            "train.time_limit=3600",
            "train.time_cost=[0.5, 0.001]",
        ],
    )
    loop.fit(cfg, tiny_dataset, tmp_path / "run")
    with open(tmp_path / "run" / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    growth = seen[-1]
    assert growth.sizes == [int(r["train_size"]) for r in rows] == [16, 32, 48]
    assert growth.trains == pytest.approx([float(r["epoch_seconds"]) for r in rows], rel=1e-4)
    assert growth.cost(100) == pytest.approx(0.5 + 0.001 * 100 * 100)
    assert [growth.size_of(e, 3) for e in (1, 2, 3)] == [16, 32, 48]


def test_a_start_above_the_size_is_one_line_exit_2(tiny_dataset, tmp_path, capsys):
    sets = [a for o in [*TINY, "data.image_size=32", "data.start_size=64"] for a in ("--set", o)]
    code, out, err = cli(["train", tiny_dataset, "--out", tmp_path / "run", *sets], capsys)
    assert code == 2 and "start_size" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_the_clock_times_each_epoch_to_come_at_its_own_size():
    """After two cheap 64 px epochs (10 s), the epochs to come at 128 px are timed at 4x the pace, not 10 s."""
    sizes, walls = [64, 64], [12.0, 10.0]
    assert pace_at(sizes, walls, 64) == 10.0 and pace_at(sizes, walls, 128) == 40.0
    schedule = lambda e, n: 64 if e <= 2 else 128  # noqa: E731
    assert (
        replanned_epochs(200.0, 22.0, walls, 2, 20, Growth(sizes, walls, schedule)) == 6
    )  # 178 s left: four more at 40 s
    assert replanned_epochs(200.0, 22.0, walls, 2, 20) == 19  # at one pace for all, 17 more would "fit"


def test_the_clock_scales_only_the_training_part_and_by_the_measured_cost_model():
    """Session 25's small-object run: epoch 1 trained at 112 px in 47 s; by pixels the clock timed 192 px at 138 s
    an epoch and cut 6 epochs to 4 (106-111 s measured). The warm-up's a + b*s^2 times it at 103 s, and validation
    (at the final size whatever the training size) is not scaled at all."""
    a, b = 0.004867, 6.129e-7
    cost = lambda s: a + b * s * s  # noqa: E731
    assert pace_at([112], [47.0], 192) == pytest.approx(47.0 * (192 / 112) ** 2)
    assert pace_at([112], [47.0], 192, [47.0], cost) == pytest.approx(47.0 * cost(192) / cost(112))
    assert 100 < pace_at([112], [47.0], 192, [47.0], cost) < 106
    assert pace_at([112], [57.0], 192, [47.0], cost) == pytest.approx(10.0 + 47.0 * cost(192) / cost(112))
    assert pace_at([112, 192], [47.0, 108.0], 192, [47.0, 108.0], cost) == 108.0  # measured beats modelled
    schedule = lambda e, n: size_at(e, n, 112, 192)  # noqa: E731
    by_pixels = replanned_epochs(431.0, 47.0, [47.0], 1, 20, Growth([112], [47.0], schedule))
    by_cost = replanned_epochs(431.0, 47.0, [47.0], 1, 20, Growth([112], [47.0], schedule, cost))
    assert by_pixels == 4 and by_cost == 5


def _from_96(size: int) -> int | None:
    """A user's ``data.start_size=96`` as the plan counts it."""
    return 96 if 96 < size else None


def test_the_budget_plan_with_growth_affords_a_larger_final_size_in_the_same_time():
    cost = CostModel(0.008, 2.5e-6)  # about 60 images/s at 64 px, 15 at 160 (a 2-core CPU, lite0)
    for seconds in (300.0, 450.0, 600.0, 1200.0, 3000.0):
        plain = plan_final(seconds, 3000, cost, 224, 20)
        grown = plan_final(seconds, 3000, cost, 224, 20, start=_from_96)
        assert grown[0] >= plain[0] and grown[0] in ladder(224)
        if grown[1] >= MIN_EPOCHS:
            assert run_seconds(3000, cost, grown[0], grown[1], _from_96) <= seconds
    assert any(
        plan_final(s, 3000, cost, 224, 20, start=_from_96)[0] > plan_final(s, 3000, cost, 224, 20)[0]
        for s in (300.0, 450.0, 600.0, 1200.0)
    )


def test_the_recipe_grows_only_from_the_users_own_start_size():
    """Progressive resizing is off unless the user sets data.start_size (the ablation did not show it pays)."""
    from imgclf.budget.prior import growth, with_growth

    assert growth(Config()) is None and growth(load_config(None, ["data.start_size=0"])) is None
    own = load_config(None, ["data.start_size=128"])
    assert growth(own)(160) == 128 and growth(own)(112) is None
    final = with_overrides(own, {"data.image_size": 160})
    assert with_growth(final, growth(own)).data.start_size == 128
    assert with_growth(final, growth(own), CostModel(0.005, 6e-7)).train.time_cost == (0.005, 6e-7)
    small = with_overrides(own, {"data.image_size": 112, "data.start_size": 0})
    assert with_growth(small, growth(own), CostModel(0.005, 6e-7)).train.time_cost is None


def test_train_budget_gives_the_final_model_the_growth_it_planned_with(monkeypatch, tmp_path):
    """The recipe plans with the user's own data.start_size and the final model trains from it, recipe.json saying so;
    left alone, there is none."""
    from imgclf.budget import final as budget_final
    from imgclf.budget import recipe

    cost = CostModel(0.008, 2.5e-6)
    seen: dict = {}

    def fake_measure(cfg, dataset, budget, clock, *, probe_flips=False, reserve=None, folds=None, start=None):
        seen["start"] = start
        return recipe.Measured(cfg, cost, 224, 3000, 2600, 1.0, {"budget_seconds": budget})

    def fake_train_final(cfg, dataset, run, tracking_uri, callbacks):
        seen["cfg"] = cfg
        return {"epochs_run": cfg.train.epochs}

    monkeypatch.setattr(recipe, "measure_and_probe", fake_measure)
    monkeypatch.setattr(budget_final, "train_final", fake_train_final)
    monkeypatch.setattr(recipe, "held_out_estimate", lambda run, final, members: (final, {"value": None}))
    recipe.run_recipe(load_config(None, ["data.start_size=96"]), tmp_path, tmp_path / "run", 1200.0)
    final = seen["cfg"]
    assert seen["start"](160) == 96 and final.data.image_size > 96 and final.data.start_size == 96
    assert json_of(tmp_path / "run" / "recipe.json")["chosen"]["start_size"] == 96
    assert final.train.time_cost == (cost.a, cost.b)  # the clock times the larger epochs by the warm-up's model
    recipe.run_recipe(Config(), tmp_path, tmp_path / "run2", 1200.0)
    assert seen["start"] is None and not seen["cfg"].data.start_size


def json_of(path):
    import json

    return json.loads(path.read_text())
