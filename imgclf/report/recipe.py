"""The run report's "Budget recipe" section: what ``train --budget`` measured and chose (``recipe.json``)."""

from __future__ import annotations

from typing import Any

from imgclf.report import html as h
from imgclf.run.rundir import RunDir


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _final_text(chosen: dict[str, Any]) -> str:
    grown = f" (progressive resizing from {chosen['start_size']} px)" if chosen.get("start_size") else ""
    if chosen.get("folds"):
        return (
            f"Final model: {chosen['folds']} CV folds at {chosen.get('image_size')} px{grown}, up to {chosen.get('epochs')} "
            f"epoch(s) each, about {h.format_value(chosen.get('per_fold_seconds'))} s per fold."
        )
    timed = (
        f", re-planned by the clock within {h.format_value(chosen['time_limit'])} s (train.time_limit)"
        if chosen.get("time_limit")
        else ""
    )
    tta = f"; predictions use TTA ({chosen['tta']})" if chosen.get("tta") and chosen["tta"] != "none" else ""
    members = int(chosen.get("members") or 1)
    if members > 1:
        others = "members/2" if members == 2 else f"members/2 to members/{members}"
        return (
            f"Final models: {members}, an equal-weight ensemble (this run and {others}; "
            f"predict blends them), each {chosen.get('image_size')} px{grown}, about {chosen.get('epochs')} epoch(s) "
            f"on {_images_text(chosen)} with its own seed{timed}"
            f"{tta}. The curves below are the first model's."
        )
    return (
        f"Final model: {chosen.get('image_size')} px{grown}, about {chosen.get('epochs')} epoch(s) on "
        f"{_images_text(chosen)}{timed}{tta}."
    )


def _images_text(chosen: dict[str, Any]) -> str:
    held = chosen.get("held_out")
    return (
        f"{chosen.get('images')} images ({held} more held out for the estimate)"
        if held
        else f"all {chosen.get('images')} images"
    )


def _start_text(recipe: dict[str, Any]) -> str:
    """The short-run prior and what the orientation and resolution probes found (older recipes lack them)."""
    parts = []
    if recipe.get("prior"):
        parts.append(
            "Started from the short-run prior for the keys left at their defaults: "
            + ", ".join(f"{k}={_short(v)}" for k, v in recipe["prior"].items())
            + "."
        )
    orientation = recipe.get("orientation") or {}
    if orientation.get("accuracy"):
        parts.append(
            f"Orientation probe ({orientation.get('images')} images, held-out accuracy by view: "
            + ", ".join(f"{k} {v:.2f}" for k, v in orientation["accuracy"].items())
            + f"): data.flips={orientation.get('flips')}."
        )
    elif orientation.get("skipped"):
        parts.append(f"Orientation probe skipped: {orientation['skipped']}.")
    resolution = recipe.get("resolution") or {}
    if resolution.get("accuracy"):
        parts.append(
            f"Resolution probe ({resolution.get('images')} images, held-out accuracy by size: "
            + ", ".join(f"{k} px {v:.2f}" for k, v in resolution["accuracy"].items())
            + f"): {resolution.get('size')} px is enough (of up to {resolution.get('largest')} px; a larger size "
            f"must add more than {resolution.get('tolerance', 0):.0%})."
        )
    elif resolution.get("skipped"):
        parts.append(f"Resolution probe skipped: {resolution['skipped']}.")
    return " ".join(parts)


def estimate_text(estimate: dict[str, Any]) -> str:
    """What the submission is worth and what that rests on (``recipe.json``'s ``estimate``)."""
    if "val_accuracy" in estimate:  # recipes before the held-out estimate
        return f"Estimate: {h.format_value(estimate.get('val_accuracy'))} validation accuracy — {estimate.get('note', '')}."
    if estimate.get("value") is None:
        return f"Estimate: {estimate.get('what') or estimate.get('status') or 'none'}."
    se = f" ± {estimate['se']:.3f} (one standard error)" if estimate.get("se") is not None else ""
    extras = over_one_model_text(estimate)
    return (
        f"Estimate: {estimate['value']:.3f}{se} {estimate.get('metric', 'accuracy')} — {estimate.get('what', '')}."
        + tta_decision_text(estimate)
        + (f" The submission {extras}." if extras else "")
    )


def tta_decision_text(estimate: dict[str, Any]) -> str:
    """`` The 4-view TTA: +0.3 ± 0.9 pp over none, dropped (…).`` from ``estimate["tta"]``; empty without it."""
    decided = estimate.get("tta") or {}
    if decided.get("gap") is None:
        return ""
    verdict = "kept" if decided.get("kept") else "dropped: predict makes one pass an image"
    return (
        f" The {decided.get('views', 'TTA')}: {100 * decided['gap']:+.1f} ± {100 * decided['se']:.1f} pp over none "
        f"on {decided.get('images')} images, {verdict} ({decided.get('rule', '')})."
    )


def over_one_model_text(estimate: dict[str, Any]) -> str:
    """``over one model without TTA: +1.2 ± 0.5 pp (…)``, from ``estimate["over_one_model"]``; empty without it."""
    effect = estimate.get("over_one_model") or {}
    if effect.get("gap") is None:
        return ""
    return (
        f"over one model without TTA: {100 * effect['gap']:+.1f} ± {100 * effect['se']:.1f} pp on "
        f"{effect.get('images')} images ({effect.get('verdict', '')})"
    )


def recipe_section(run: RunDir) -> str | None:
    """None when the run was not trained with ``--budget``."""
    if not run.recipe.is_file():
        return None
    recipe = run.read_recipe()
    chosen, estimate = recipe.get("chosen", {}), recipe.get("estimate", {})
    elapsed = recipe.get("elapsed_seconds")
    plan = (
        f"Budget {h.format_value(recipe.get('budget_seconds'))} s, used {h.format_value(elapsed)} s before this report "
        f"({recipe.get('status', '?')}). Warm-up: "
        + ", ".join(f"{w['images_per_second']:.1f} images/s at {w['size']} px" for w in recipe.get("warmup", []))
        + ". "
        + _final_text(chosen)
    )
    return h.section(
        "Budget recipe",
        h.paragraph(plan),
        h.paragraph(_start_text(recipe)) if _start_text(recipe) else "",
        h.paragraph(estimate_text(estimate), "note"),
    )
