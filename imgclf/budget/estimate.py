"""What the submission is worth: the submitted models with their TTA scored on the images they held out, and the
paired comparisons (TTA against none; the extras against one model) that decide and explain it."""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path
from typing import Any

from imgclf.config import Config, with_overrides
from imgclf.run.rundir import RunDir

log = logging.getLogger("imgclf")


def tta_views(cfg: Config) -> int:
    """Forward passes per image and model that ``cfg``'s TTA makes at most."""
    return {"none": 1, "fixed": cfg.tta.n}.get(cfg.tta.mode, cfg.tta.max_views)


def held_out_estimate(run: RunDir, final: Config, members: int) -> tuple[Config, dict[str, Any]]:
    """What the submission is worth: the blend of the final models (``RUN/ensemble.json``) as ``predict`` makes it,
    scored on the validation split that every model held out (``RUN/eval/``), with the binomial standard error of the
    accuracy; and the final config, whose TTA stays only where it is shown to pay (:func:`decide_tta`)."""
    if not final.data.val_fraction:
        return final, {
            "metric": "accuracy",
            "value": None,
            "se": None,
            "images": 0,
            "what": "none: data.val_fraction=0 trained every model on every image; pass a labelled holdout "
            "to imgclf evaluate (imgclf prepare --holdout makes one)",
        }
    from imgclf.infer.jobs import evaluate_run
    from imgclf.runtime import resolve_device

    device = str(resolve_device(final.train.device, "train.device"))

    def scored(cfg: Config, out: Path) -> dict[str, Any]:
        return evaluate_run(run.root, None, out, tta=cfg.tta, batch_size=cfg.data.batch_size, device=device)

    result, decided = scored(final, run.eval.root), None
    if "task" in result:  # label sets or values: the run's metric with its bootstrap standard error
        return final, _target_estimate(result, members, run.read_decisions() if members == 1 else None)
    if final.tta.mode != "none":
        final, result, decided = decide_tta(run, final, result, scored)
    p, n = float(result["accuracy"]), int(result["images"])
    blend = "model" if members == 1 else f"{members}-model equal-weight blend"
    estimate = {
        "metric": "accuracy",
        "value": p,
        "se": math.sqrt(p * (1 - p) / n) if n else None,
        "images": n,
        "what": f"the submitted {blend} with {tta_text(final)}, on {n} held-out images no model trained on (RUN/eval)",
    }
    metric = result.get("metric")
    if metric and metric != "accuracy" and result.get(metric) is not None:
        estimate[metric] = result[metric]
    if decided:
        estimate["tta"] = decided
    if members > 1 or final.tta.mode != "none":
        estimate["over_one_model"] = extras_effect(run, f"{blend} with {tta_text(final)}")
    log.debug(
        "recipe: estimate %.4f ± %.4f accuracy (%s)", p, estimate["se"] or 0.0, estimate["what"]
    )  # the CLI's last line says it
    return final, estimate


def _target_estimate(result: dict[str, Any], members: int, decision: dict[str, Any] | None) -> dict[str, Any]:
    """The estimate of a multilabel or regression run: its metric on the held-out images, with the bootstrap standard
    error :mod:`imgclf.infer.evaluate_targets` gives it (no TTA: its paired test is on classes)."""
    metric, n = result["metric"], int(result["images"])
    blend = "model" if members == 1 else f"{members}-model equal-weight blend"
    value = result.get(metric)
    if result.get("tuned_on_these_images") and decision is not None:  # the cross-fitted score, not the flattered one
        value = decision.get("tuned_cross_fitted", value)
    return {
        "metric": metric,
        "value": value,
        "se": result.get(f"{metric}_se"),
        "images": n,
        "what": f"the submitted {blend} with no TTA, on {n} held-out images no model trained on (RUN/eval)",
    }


def decide_tta(
    run: RunDir, final: Config, with_tta: dict[str, Any], scored
) -> tuple[Config, dict[str, Any], dict[str, Any]]:
    """Keep the flip TTA only when it beats the same models without it, paired on the held-out images, by more than
    one standard error; else submit without it (``RUN/config.yaml``'s ``tta.mode=none``, which ``predict RUN``
    reads; ``RUN/eval`` then holds the scores without TTA). Returns the final config, the scores of what is
    submitted and the decision's record. On the thin-defect benchmark 8-view TTA bought -0.2 ± 1.9 pp and made
    ``predict`` 8× slower (BENCHMARKS.md "The budget recipe made trustworthy")."""
    import os

    from imgclf.config import load_config, save_config

    plain_cfg = with_overrides(final, {"tta.mode": "none"})
    with tempfile.TemporaryDirectory(prefix=".eval-plain-", dir=run.root) as tmp:
        plain = scored(plain_cfg, Path(tmp))
        effect = paired_effect(Path(tmp) / run.eval.predictions.name, run.eval.predictions)  # TTA over none
        kept = effect.get("gap") is not None and effect["gap"] > effect["se"]
        views = tta_text(final)
        decided = {
            **effect,
            "views": views,
            "kept": kept,
            "rule": "kept only when its gain over no TTA, paired on the held-out images, exceeds one standard error",
        }
        if kept:
            return final, with_tta, decided
        for name in os.listdir(tmp):  # the scores of what is submitted, file by file (one filesystem: atomic)
            os.replace(Path(tmp) / name, run.eval.root / name)
    save_config(load_config(run.config, ["tta.mode=none"]), run.config)
    log.info(
        "recipe: %s dropped: %s over none (one standard error), so predict makes one pass an image",
        views,
        f"{100 * effect['gap']:+.1f} ± {100 * effect['se']:.1f} pp" if effect.get("gap") is not None else "no measure",
    )
    return plain_cfg, plain, decided


def tta_text(cfg: Config) -> str:
    """``no TTA`` or ``4-view TTA``."""
    return "no TTA" if cfg.tta.mode == "none" else f"{tta_views(cfg)}-view TTA"


def paired_effect(base: Path, other: Path) -> dict[str, Any]:
    """How much more accurate the predictions in ``other`` are than those in ``base`` (two CSV files with ``path`` and
    ``correct`` columns), paired on the images both hold: ``gap``, ``se`` (:func:`~imgclf.experiments.stats.paired_gap`)
    and ``images``; ``skipped`` when there is nothing to pair."""
    from imgclf.experiments.stats import paired_gap
    from imgclf.run.rundir import read_run_csv

    if not (base.is_file() and other.is_file()):
        return {"skipped": "no per-image predictions to compare"}
    one = read_run_csv(base, ("path", "correct"), dtype={"path": str}, keep_default_na=False)
    two = read_run_csv(other, ("path", "correct"), dtype={"path": str}, keep_default_na=False)
    both = one.merge(two, on="path", suffixes=("_base", "_other"))
    if both.empty:
        return {"skipped": "the two sets of predictions share no image"}
    as_bool = lambda col: both[col].astype(str).str.lower().eq("true").to_numpy()  # noqa: E731
    gap, se = paired_gap(as_bool("correct_base"), as_bool("correct_other"))
    return {"gap": gap, "se": se, "images": int(len(both))}


def extras_effect(run: RunDir, what: str) -> dict[str, Any]:
    """What the extra models and TTA bought: the submitted predictions (``RUN/eval/predictions.csv``) against the first
    model's own, without TTA (``RUN/val_predictions.csv``), on the same held-out images (:func:`paired_effect`).
    Recorded, not acted on: a gap within one standard error says the extras' cost bought nothing this data can show."""
    effect = paired_effect(run.val_predictions, run.eval.predictions)
    if effect.get("gap") is None:
        return effect
    verdict = (
        "a gain beyond one standard error"
        if effect["gap"] > effect["se"]
        else "within one standard error: no gain this data can show"
    )
    return {
        **effect,
        "verdict": verdict,
        "what": f"the submitted {what} against the first model alone without TTA, paired on the same images",
    }


def tta_choice(final: Config) -> str:
    return (
        final.tta.mode
        if final.tta.mode != "fixed"
        else f"{final.tta.n} views: {', '.join(final.tta.views[: final.tta.n])}"
    )
