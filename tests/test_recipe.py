"""`imgclf train DATASET --budget`: budget parsing, the planner's arithmetic, and the recipe end to end."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from imgclf.budget.plan import MIN_EPOCHS, PLAN_SHARE, CostModel, ladder, parse_budget, plan_final, small_size
from imgclf.config import Config, read_yaml, with_overrides
from imgclf.errors import ConfigError
from imgclf.infer.views import SYMMETRY_VIEWS
from conftest import cli


@pytest.mark.parametrize(
    "text, seconds", [("90s", 90.0), ("20m", 1200.0), ("1.5h", 5400.0), (" 2 min ", 120.0), ("40S", 40.0)]
)
def test_budgets_parse_to_seconds(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "20", "20x", "-5m", "m", "1e3s", "inf h", "5s", "1.2.3m"])
def test_bad_budgets_are_one_config_error(text):
    with pytest.raises(ConfigError) as exc:
        parse_budget(text)
    assert "\n" not in str(exc.value) and "--budget" in str(exc.value)


def test_bad_budget_on_the_command_line_exits_2_with_one_line(tiny_dataset, tiny_overrides, tmp_path, capsys):
    sets = [a for o in tiny_overrides for a in ("--set", o)]
    code, out, err = cli(["train", tiny_dataset, "--out", tmp_path / "run", "--budget", "soon", *sets], capsys)
    assert code == 2
    assert "--budget" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run" / "recipe.json").exists()


def test_cost_model_fits_two_sizes_and_falls_back_to_pure_square():
    pure = CostModel.fit([(224, 100.0)])
    assert pure.a == 0 and pure.seconds_per_image(112) == pytest.approx(pure.seconds_per_image(224) / 4)
    # 1 ms per image of fixed cost plus a quadratic part: the fit recovers both
    a, b = 1e-3, 1e-7
    model = CostModel.fit([(s, 1 / (a + b * s * s)) for s in (96, 224)])
    assert model.a == pytest.approx(a) and model.b == pytest.approx(b)


def test_planner_keeps_the_size_when_it_fits_and_shrinks_size_before_epochs():
    cost = CostModel(0.0, 0.01 / 224**2)  # 100 images/s at 224 px
    # 1000 images at 224: 10 s an epoch; 100 s → 10 epochs at full size
    assert plan_final(100.0, 1000, cost, cap=224, max_epochs=20) == (224, 10)
    # 30 s: 6 epochs do not fit at 224 (60 s), so the size shrinks (160 px: 5.1 s an epoch → 5... 192: 7.3 s)
    size, epochs = plan_final(30.0, 1000, cost, cap=224, max_epochs=20)
    assert size < 224 and epochs >= MIN_EPOCHS and size in ladder(224)
    assert epochs * 1000 * cost.seconds_per_image(size) <= 30.0
    # the largest such size: one rung up no longer fits MIN_EPOCHS
    bigger = ladder(224)[ladder(224).index(size) + 1]
    assert MIN_EPOCHS * 1000 * cost.seconds_per_image(bigger) > 30.0
    # max_epochs caps a generous budget
    assert plan_final(10_000.0, 1000, cost, cap=224, max_epochs=20) == (224, 20)
    # nothing fits 6 epochs: the smallest rung, as many epochs as fit, at least one
    assert (
        plan_final(0.5, 1000, cost, cap=224, max_epochs=20) == (64, 6) or plan_final(0.5, 1000, cost, 224, 20)[0] == 64
    )
    assert plan_final(0.01, 1000, cost, cap=224, max_epochs=20) == (64, 1)


def test_the_final_ladder_is_finer_than_the_probe_ladder():
    assert {112, 144} <= set(ladder(224)) and ladder(224)[-1] == 224 and ladder(100)[-1] == 100
    # the warm-up's first, cheap size: the largest probe rung at most half the model's size
    assert small_size(224) == 96 and small_size(160) == 80 and small_size(288) == 128 and small_size(32) == 32


# The recipe's own clock (elapsed_seconds, from api.train's start to the final model) is what the test holds to
# budget × 1.05: the recipe controls it. The wall-clock guard around the in-process CLI adds a fixed allowance
# for what lies outside that clock or is not the recipe's to shorten: argument parsing and the first imports of
# torch/timm/optuna (several seconds on a loaded 2-core machine) and the run report's matplotlib figures (~9 s
# measured for a tiny run there). It only catches a recipe that ignores its budget altogether.
STARTUP_ALLOWANCE_S = 30.0


def test_train_with_a_budget_plans_trains_and_estimates_within_it(tiny_dataset, tiny_overrides, tmp_path, capsys):
    budget = 40.0
    run = tmp_path / "run"
    sets = [a for o in tiny_overrides for a in ("--set", o)]
    t0 = time.perf_counter()
    code, out, err = cli(["train", tiny_dataset, "--out", run, "--budget", "40s", *sets], capsys)
    wall = time.perf_counter() - t0
    assert code == 0, err
    recipe = json.loads((run / "recipe.json").read_text())
    assert recipe["status"] == "done" and recipe["budget_seconds"] == budget
    assert recipe["elapsed_seconds"] <= budget * 1.05 and recipe["within_budget"]
    assert wall <= budget * 1.05 + STARTUP_ALLOWANCE_S
    # there is no search: no proxy trial and no record of one
    assert "proxy" not in recipe and not (run / "proxy").exists()
    assert recipe["elapsed_with_report_seconds"] >= recipe["elapsed_seconds"]
    chosen = recipe["chosen"]
    assert chosen["image_size"] == 32 and chosen["epochs"] >= 1
    assert recipe["warmup"][0]["images_per_second"] > 0
    summary = json.loads((run / "summary.json").read_text())
    # the final models hold out data.val_fraction (0.2) of the images and keep their last epoch's weights
    assert summary["val_images"] > 0 and summary["train_images"] + summary["val_images"] == 24
    assert summary["keep"] == "last" and chosen["held_out"] == summary["val_images"]
    # the clock re-plans the final model's epochs (train.time_limit), up to max(train.epochs, MIN_EPOCHS)
    assert 1 <= summary["epochs_run"] <= MIN_EPOCHS
    # the estimate: the submitted blend with its TTA on the held-out images, with its standard error
    estimate = recipe["estimate"]
    assert estimate["images"] == summary["val_images"] and 0.0 <= estimate["value"] <= 1.0
    assert estimate["se"] == pytest.approx((estimate["value"] * (1 - estimate["value"]) / estimate["images"]) ** 0.5)
    assert "held-out images no model trained on" in estimate["what"]
    scored = json.loads((run / "eval" / "metrics.json").read_text())  # RUN/eval holds what the estimate measured
    assert scored["accuracy"] == estimate["value"] and scored["evaluated_on"] == "validation split"
    assert summary["recipe"]["estimate"] == estimate and f"estimate {estimate['value']:.4f} ± " in out
    if "over_one_model" in estimate:  # more models or TTA: what they bought over the first model alone, paired
        effect = estimate["over_one_model"]
        assert effect["images"] == estimate["images"] and effect["se"] >= 0 and "paired" in effect["what"]
        assert f"over one model without TTA: {100 * effect['gap']:+.1f} ± {100 * effect['se']:.1f} pp" in out
    final = read_yaml(run / "config.yaml")
    assert final["train"]["time_limit"] == pytest.approx(chosen["time_limit"]) and 0 < chosen["time_limit"] < budget
    # the short-run prior fills the keys the user left at their defaults; the tiny overrides set augment=light
    assert recipe["prior"] == {"data.flips": "h", "data.eval_crop_pct": 1.0}
    assert final["finetune"]["freeze_bottom"] == 0  # the whole backbone trains
    orientation = recipe["orientation"]  # the probe ran (or said why not) and its flip group is the final model's
    assert orientation["flips"] == final["data"]["flips"] and ("accuracy" in orientation or orientation["skipped"])
    # whether the probe fits (3 % of the budget) depends on the warm-up's measured speed, so the flip group, and
    # with it the TTA views, follow whatever the probe chose: the views of that group, no more, no fewer
    if final["data"]["flips"] == "none":  # no flip group, no flip TTA
        assert final["tta"]["mode"] == chosen["tta"] == "none"
    else:  # the flip group's views, kept only when they beat no TTA by more than one standard error
        group = list(SYMMETRY_VIEWS[final["data"]["flips"]])
        decided = estimate["tta"]
        assert decided["views"] == f"{len(group)}-view TTA" and decided["images"] == estimate["images"]
        assert decided["kept"] == (decided["gap"] > decided["se"])
        if decided["kept"]:
            assert final["tta"]["mode"] == "fixed" and final["tta"]["views"][: final["tta"]["n"]] == group
            assert chosen["tta"] == f"{len(group)} views: {', '.join(group)}"
        else:  # predict RUN reads the run's config: one pass an image; RUN/eval scored what is submitted
            assert final["tta"]["mode"] == chosen["tta"] == "none" and "with no TTA" in estimate["what"]
            assert json.loads((run / "eval" / "metrics.json").read_text())["tta"] == "none"
        assert not list(run.glob(".eval-plain-*"))
        assert f"The {decided['views']}: {100 * decided['gap']:+.1f} ± " in (run / "report.html").read_text()
    assert (run / "checkpoints" / "best.safetensors").is_file()
    assert "Budget recipe" in (run / "report.html").read_text()
    assert f"Estimate: {estimate['value']:.3f} ± {estimate['se']:.3f}" in (run / "report.html").read_text()
    # as many final models as the plan chose (tiny images leave room for several), the first in the run itself
    trained = recipe["members_trained"]
    assert [m["path"] for m in trained] == ["."] + [f"members/{i}" for i in range(2, len(trained) + 1)]
    # (as many as planned unless one overran its share so far that the next would get under half of its own)
    assert 1 <= len(trained) <= chosen["members"] and summary["recipe"]["members"] == len(trained)
    import imgclf

    result = imgclf.predict(run, tiny_dataset / "test", out=tmp_path / "sub.csv")
    assert result["models"] == len(trained)  # predict RUN blends every final model
    if len(trained) > 1:
        manifest = json.loads((run / "ensemble.json").read_text())
        assert [m["path"] for m in manifest["members"]] == [m["path"] for m in trained]
        assert all((run / m["path"] / "checkpoints" / "best.safetensors").is_file() for m in trained)
        assert "equal-weight ensemble" in (run / "report.html").read_text()
        code, out, err = cli(["export", run, "--format", "timm", "--out", tmp_path / "timm"], capsys)
        assert code == 0 and f"an ensemble of {len(trained)} models" in out  # export says it wrote one of them
        from imgclf.infer.jobs import evaluate_run

        scored = evaluate_run(run, tiny_dataset, tmp_path / "eval")  # evaluate scores the blend predict makes
        assert scored["models"] == len(trained) and scored["images"] == summary["train_images"] + summary["val_images"]
        # every model held out the same images: the estimate is of the blend, on images none of them saw
        splits = {(run / m["path"] / "split.csv").read_text() for m in trained}
        assert len(splits) == 1
    else:
        assert not (run / "ensemble.json").exists()


@pytest.mark.parametrize("flag", [["--refit"], ["--devices", "2"]])
def test_budget_with_a_flag_it_replaces_is_one_line_exit_2(tiny_dataset, tmp_path, capsys, flag):
    code, _, err = cli(["train", tiny_dataset, "--out", tmp_path / "run", "--budget", "1m", *flag], capsys)
    assert code == 2 and "--budget cannot be combined with" in err and len(err.strip().splitlines()) == 1


def test_cv_with_a_budget_probes_then_trains_the_folds_within_it(tiny_dataset, tiny_overrides, tmp_path, capsys):
    budget = 45.0
    out = tmp_path / "cv"
    sets = [a for o in tiny_overrides for a in ("--set", o)]
    t0 = time.perf_counter()
    code, stdout, err = cli(["cv", tiny_dataset, "--folds", "2", "--out", out, "--budget", "45s", *sets], capsys)
    wall = time.perf_counter() - t0
    assert code == 0, err
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["status"] == "done" and recipe["within_budget"] and recipe["elapsed_seconds"] <= budget * 1.05
    assert wall <= budget * 1.05 + STARTUP_ALLOWANCE_S
    chosen = recipe["chosen"]
    assert chosen["folds"] == 2 and not chosen["refit_on_all_images"] and chosen["image_size"] == 32
    assert "proxy" not in recipe and recipe["warmup"][0]["images_per_second"] > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["folds"] == 2 and recipe["estimate"]["value"] == summary["oof"]["accuracy"]
    assert recipe["estimate"]["images"] == 24 and "out-of-fold" in recipe["estimate"]["what"]
    for fold in ("fold_1", "fold_2"):  # every fold trained at the chosen size, with the short-run prior
        fold_cfg = read_yaml(out / fold / "config.yaml")
        assert fold_cfg["data"]["image_size"] == 32 and fold_cfg["data"]["eval_crop_pct"] == 1.0
        assert 1 <= json.loads((out / fold / "summary.json").read_text())["epochs_run"] <= chosen["epochs"]
    assert "Budget recipe" in (out / "report.html").read_text() and "2 CV folds" in (out / "report.html").read_text()
    assert "budget recipe:" in stdout


@pytest.mark.parametrize("extra,message", [(["--refit"], "drop --refit"), ([], "already holds a CV")])
def test_cv_budget_refuses_refit_and_an_existing_cv_in_one_line(tiny_dataset, tmp_path, capsys, extra, message):
    out = tmp_path / "cv"
    if not extra:
        out.mkdir()
        (out / "cv.json").write_text("{}")
    code, _, err = cli(["cv", tiny_dataset, "--folds", "2", "--out", out, "--budget", "1m", *extra], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (out / "recipe.json").exists()


def test_warm_up_measures_a_second_size_so_the_cost_model_has_a_fixed_part(monkeypatch, tmp_path):
    """When the model's own size is too dear to warm up, the smallest size the final model may take is the
    second point: a + b·s² then fits both, instead of pure s² from one point (which is too fast at small sizes)."""
    from imgclf.budget import measure

    seen = []

    def fake_warm_up(cfg, dataset, size, folder):
        seen.append(size)
        ips = 1.0 / (0.004 + 2e-6 * size**2)  # a fixed 4 ms an image plus the s² part
        return {
            "size": size,
            "images_per_second": ips,
            "overhead_seconds": 1.0,
            "images": 3000,
            "classes": 10,
            "seconds": 1.0 + 600 / ips,
        }  # 600 images: the model size would cost far over 5 % of 300 s

    monkeypatch.setattr(measure, "warm_up", fake_warm_up)
    points, cost, cap = measure.measure(Config(), tmp_path, 300.0)
    assert cap == 224 and seen == [96, 64]
    assert cost.a == pytest.approx(0.004) and cost.b == pytest.approx(2e-6)


def test_the_warm_up_times_images_its_first_epoch_cached(tmp_path):
    """Both warm-up epochs train on the same few images, so the timed second epoch reads the resize cache as a
    real run's later epochs do, instead of also timing the decoding of fresh images; the plan still counts every
    training image."""
    from imgclf.budget import measure
    from imgclf.config import load_config, with_overrides
    from conftest import TINY, make_dataset

    data = make_dataset(tmp_path / "data", per_class=30, test=0)
    cache = tmp_path / "cache"
    cfg = with_overrides(
        load_config(None, TINY), {"data.cache": True, "data.cache_dir": str(cache), "data.batch_size": 4}
    )
    point = measure.warm_up(cfg, data, 32, tmp_path / "warm")
    entries = list(cache.rglob("*.jpg"))
    assert point["images"] == 90 and point["size"] == 32 and point["images_per_second"] > 0
    # one subset of WARMUP_STEPS batches, read twice: two epochs of fresh images would have cached up to twice as many
    assert 0 < len(entries) <= measure.WARMUP_STEPS * 4 + 3  # + the per-class rounding of the stratified subset
    assert measure.warmup_subset(with_overrides(cfg, {"data.subset": 0.5}), data)[0] == 45


def test_the_second_warm_up_is_where_the_final_model_will_train():
    """With time to spare the second point is the size the first point's s² plans for the final model (measured
    where it is used); when that size's warm-up would cost over WARMUP_SHARE, the cheap smallest size instead."""
    from imgclf.budget import measure

    def first(ips: float, images: int = 3000) -> dict:
        return {
            "size": 96,
            "images_per_second": ips,
            "overhead_seconds": 2.0,
            "images": images,
            "classes": 10,
            "seconds": 2.0 + 6 * 32 / ips,
        }

    budget = 900.0
    pure = CostModel.fit([(96, 100.0)])
    planned, _ = plan_final(PLAN_SHARE * budget, 3000, pure, 224, MIN_EPOCHS)
    assert 96 < planned < 224 and measure.second_size(first(100.0), 224, budget) == planned
    assert measure.second_size(first(100_000.0), 224, budget) == 224  # a fast machine: the model's own size
    assert measure.second_size(first(100.0), 224, 60.0) == 64  # a short budget: the smallest rung
    tiny = {**first(100.0), "size": 64}
    assert measure.second_size(tiny, 64, 60.0) is None  # nothing else to measure


def test_the_short_run_prior_fills_only_the_keys_the_user_left_alone():
    from imgclf.budget.prior import SHORT_RUN_PRIOR, with_prior
    from imgclf.config import load_config, with_overrides

    cfg, changes = with_prior(load_config(None, []))
    assert changes == SHORT_RUN_PRIOR and cfg.data.augment == "none" and cfg.data.eval_crop_pct == 1.0
    _, changes = with_prior(load_config(None, ["data.augment=medium", "data.flips=hv"]))  # named: kept, though default
    assert changes == {"data.eval_crop_pct": 1.0}
    cfg, changes = with_prior(load_config(None, []))
    assert "finetune.freeze_bottom" not in changes and cfg.finetune.freeze_bottom == 0  # the whole backbone trains
    same, changes = with_prior(with_overrides(Config(), {"train.lr": 0.01}))  # a rebuilt config names every key
    assert changes == {} and same.data.augment == "auto"


def test_flip_tta_only_for_a_model_trained_with_flips_and_no_tta_of_the_users():
    from imgclf.budget.prior import with_flip_tta
    from imgclf.config import with_overrides

    for flips, n in (("h", 2), ("hv", 4), ("d4", 8)):  # the views of the group the model was trained with
        tta = with_flip_tta(with_overrides(Config(), {"data.flips": flips})).tta
        assert tta.mode == "fixed" and tta.n == n and tta.views[0] == "identity"
        assert len(set(tta.views[:n])) == n and set(Config().tta.views) <= set(tta.views)
    assert set(with_flip_tta(with_overrides(Config(), {"data.flips": "hv"})).tta.views[:4]) == {
        "identity",
        "hflip",
        "rot180",
        "hflip_rot180",
    }
    assert with_flip_tta(with_overrides(Config(), {"data.augment": "none"})).tta.mode == "none"  # none: no flips
    assert with_flip_tta(with_overrides(Config(), {"tta.mode": "adaptive"})).tta.mode == "adaptive"
    assert with_flip_tta(with_overrides(Config(), {"tta.views": ["identity", "scale_1.15"]})).tta.mode == "none"


def test_what_the_extra_models_and_tta_bought_is_a_paired_gap_with_its_standard_error(tmp_path):
    """``recipe.estimate.over_one_model``: the submitted predictions against the first model's own, image by image."""
    from imgclf.budget.estimate import extras_effect
    from imgclf.experiments.stats import paired_gap
    from imgclf.report.recipe import over_one_model_text
    from imgclf.run.rundir import RunDir

    run = RunDir(tmp_path / "run")
    (run.root / "eval").mkdir(parents=True)
    one = [True] * 60 + [False] * 40  # the first model alone: 60 of 100
    blend = [True] * 55 + [False] * 5 + [True] * 20 + [False] * 20  # 75 of 100: 20 gained, 5 lost
    for path, correct in ((run.val_predictions, one), (run.eval.predictions, blend)):
        rows = "".join(f"train/a/{i:03d}.png,a,{'a' if c else 'b'},{c}\n" for i, c in enumerate(correct))
        path.write_text("path,label,pred,correct\n" + rows)
    effect = extras_effect(run, "2-model equal-weight blend with 2-view TTA")
    gap, se = paired_gap(np.array(one), np.array(blend))
    assert effect["gap"] == pytest.approx(0.15) == pytest.approx(gap) and effect["se"] == pytest.approx(se)
    assert effect["images"] == 100 and effect["verdict"] == "a gain beyond one standard error"
    assert over_one_model_text({"over_one_model": effect}).startswith(
        f"over one model without TTA: +15.0 ± {100 * se:.1f} pp"
    )
    run.eval.predictions.write_text(
        "path,label,pred,correct\n"
        + "".join(
            f"train/a/{i:03d}.png,a,a,{c}\n" for i, c in enumerate([True] * 59 + [False] + [True] * 2 + [False] * 38)
        )
    )
    assert "no gain this data can show" in extras_effect(run, "blend")["verdict"]  # 2 gained, 1 lost: within 1 SE
    run.val_predictions.unlink()
    assert "skipped" in extras_effect(run, "blend") and over_one_model_text({"over_one_model": {"skipped": "x"}}) == ""


def test_flip_tta_is_dropped_unless_it_beats_no_tta_by_more_than_one_standard_error(tmp_path):
    """``decide_tta``: the scores without TTA replace RUN/eval and the run's config predicts without it, unless the
    views' paired gain exceeds one standard error."""
    from imgclf.budget.estimate import decide_tta
    from imgclf.config import load_config, save_config
    from imgclf.run.rundir import RunDir

    run = RunDir(tmp_path / "run")
    run.eval.root.mkdir(parents=True)
    final = with_overrides(Config(), {"data.flips": "h", "tta.mode": "fixed", "tta.n": 2})
    save_config(final, run.config)

    def rows(correct: list[bool]) -> str:
        return "path,label,pred,correct\n" + "".join(f"a/{i:03d}.png,a,a,{c}\n" for i, c in enumerate(correct))

    def scorer(plain: list[bool]):
        def scored(cfg, out):
            (out / "predictions.csv").write_text(rows(plain))
            (out / "metrics.json").write_text(json.dumps({"tta": cfg.tta.mode}))
            return {"accuracy": sum(plain) / len(plain), "images": len(plain)}

        return scored

    tta = [True] * 70 + [False] * 30
    run.eval.predictions.write_text(rows(tta))
    kept_cfg, result, decided = decide_tta(run, final, {"accuracy": 0.7}, scorer([True] * 50 + [False] * 50))
    assert decided["kept"] and decided["gap"] == pytest.approx(0.2) and kept_cfg.tta.mode == "fixed"
    assert result == {"accuracy": 0.7} and load_config(run.config).tta.mode == "fixed"
    plain = [True] * 69 + [False] + [True] + [False] * 29  # as accurate: one image gained, one lost
    dropped_cfg, result, decided = decide_tta(run, final, {"accuracy": 0.7}, scorer(plain))
    assert not decided["kept"] and decided["gap"] == 0 and dropped_cfg.tta.mode == "none" and result["accuracy"] == 0.7
    assert load_config(run.config).tta.mode == "none"  # what predict RUN reads
    assert json.loads(run.eval.metrics.read_text())["tta"] == "none"  # RUN/eval: what is submitted
    assert run.eval.predictions.read_text() == rows(plain)
    assert not list(run.root.glob(".eval-plain-*"))


def test_with_the_probes_off_the_recipe_takes_the_largest_size_and_the_prior_flips(monkeypatch, tmp_path):
    """``train.budget_probes=false`` (the ablation's switch): neither probe runs; the size is the largest the budget
    affords and the flips stay the prior's, and recipe.json says both were off."""
    from imgclf.budget import orientation, recipe, resolution

    point = {
        "size": 96,
        "images_per_second": 300.0,
        "overhead_seconds": 2.0,
        "images": 3000,
        "classes": 10,
        "seconds": 10.0,
    }
    monkeypatch.setattr(
        recipe, "measure", lambda cfg, dataset, budget, start=None: ([point], CostModel.fit([(96, 300.0)]), 224)
    )
    monkeypatch.setattr(resolution, "resolution_cap", lambda *a, **k: pytest.fail("no resolution probe may run"))
    monkeypatch.setattr(orientation, "oriented", lambda *a, **k: pytest.fail("no orientation probe may run"))
    cfg, _ = recipe.with_prior(Config.model_validate({"train": {"budget_probes": False}}))  # flips left to the recipe
    found = recipe.measure_and_probe(cfg, tmp_path / "data", 600.0, recipe.Clock(), probe_flips=True)
    assert found.record["resolution"] == {"skipped": "off (train.budget_probes=false)", "size": found.cap}
    assert found.record["orientation"]["skipped"] == "off (train.budget_probes=false)"
    assert found.record["orientation"]["flips"] == "h" and found.cap == 224
