"""The run report's "Budget recipe" section: what ``train --budget`` measured, tried and chose (``recipe.json``)."""

from __future__ import annotations

from typing import Any

from imgclf.report import html as h
from imgclf.run.rundir import RunDir


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def proxy_rows(recipe: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per proxy trial: its number, state, score, seconds and each searched value."""
    proxy = recipe.get("proxy", {})
    rows = []
    for trial in proxy.get("table", []):
        row = {"trial": trial.get("trial"), "state": trial.get("state"), proxy.get("monitor", "value"): trial.get("value"),
               "seconds": trial.get("seconds")}
        row.update({key.split(".", 1)[-1]: _short(v) for key, v in (trial.get("params") or {}).items()})
        rows.append(row)
    return rows


def _final_text(chosen: dict[str, Any]) -> str:
    grown = f" (progressive resizing from {chosen['start_size']} px)" if chosen.get("start_size") else ""
    if chosen.get("folds"):
        return (f"Final model: {chosen['folds']} CV folds at {chosen.get('image_size')} px{grown}, up to {chosen.get('epochs')} "
                f"epoch(s) each, about {h.format_value(chosen.get('per_fold_seconds'))} s per fold.")
    timed = (f", re-planned by the clock within {h.format_value(chosen['time_limit'])} s (train.time_limit)"
             if chosen.get("time_limit") else "")
    tta = f"; predictions use TTA ({chosen['tta']})" if chosen.get("tta") and chosen["tta"] != "none" else ""
    members = int(chosen.get("members") or 1)
    if members > 1:
        others = "members/2" if members == 2 else f"members/2 to members/{members}"
        return (f"Final models: {members}, an equal-weight ensemble (this run and {others}; "
                f"predict blends them), each {chosen.get('image_size')} px{grown}, about {chosen.get('epochs')} epoch(s) "
                f"on all {chosen.get('images')} images with its own seed{timed}"
                f"{tta}. The curves below are the first model's.")
    return (f"Final model: {chosen.get('image_size')} px{grown}, about {chosen.get('epochs')} epoch(s) on all "
            f"{chosen.get('images')} images{timed}{tta}.")


def _start_text(recipe: dict[str, Any]) -> str:
    """The short-run prior and what the orientation and resolution probes found (older recipes lack them)."""
    parts = []
    if recipe.get("prior"):
        parts.append("Started from the short-run prior for the keys left at their defaults: "
                     + ", ".join(f"{k}={_short(v)}" for k, v in recipe["prior"].items()) + ".")
    orientation = recipe.get("orientation") or {}
    if orientation.get("accuracy"):
        parts.append(f"Orientation probe ({orientation.get('images')} images, held-out accuracy by view: "
                     + ", ".join(f"{k} {v:.2f}" for k, v in orientation["accuracy"].items())
                     + f"): data.flips={orientation.get('flips')}.")
    elif orientation.get("skipped"):
        parts.append(f"Orientation probe skipped: {orientation['skipped']}.")
    resolution = recipe.get("resolution") or {}
    if resolution.get("accuracy"):
        parts.append(f"Resolution probe ({resolution.get('images')} images, held-out accuracy by size: "
                     + ", ".join(f"{k} px {v:.2f}" for k, v in resolution["accuracy"].items())
                     + f"): {resolution.get('size')} px is enough (of up to {resolution.get('largest')} px; a larger size "
                     f"must add more than {resolution.get('tolerance', 0):.0%}).")
    elif resolution.get("skipped"):
        parts.append(f"Resolution probe skipped: {resolution['skipped']}.")
    return " ".join(parts)


def recipe_section(run: RunDir) -> str | None:
    """None when the run was not trained with ``--budget``."""
    if not run.recipe.is_file():
        return None
    recipe = run.read_recipe()
    chosen, proxy, estimate = recipe.get("chosen", {}), recipe.get("proxy", {}), recipe.get("estimate", {})
    elapsed = recipe.get("elapsed_seconds")
    plan = (
        f"Budget {h.format_value(recipe.get('budget_seconds'))} s, used {h.format_value(elapsed)} s before this report "
        f"({recipe.get('status', '?')}). Warm-up: "
        + ", ".join(f"{w['images_per_second']:.1f} images/s at {w['size']} px" for w in recipe.get("warmup", []))
        + f". The proxy search's share: {h.format_value(proxy.get('share_seconds'))} s ({proxy.get('share_rule', 'of the budget')})"
        + (f"; search skipped: {proxy['skipped']} in it. " if proxy.get("skipped") else
           f". Proxy: {proxy.get('trials_planned')} trial(s) planned on {proxy.get('subset')} of the data at "
           f"{proxy.get('size')} px for {proxy.get('epochs')} epoch(s), {h.format_value(proxy.get('seconds'))} s spent"
           + (f"; chosen: {proxy['kept']}. " if proxy.get("kept") else ". "))
        + _final_text(chosen)
    )
    params = [{"key": k, "value": _short(v)} for k, v in (chosen.get("params") or {}).items()]
    return h.section(
        "Budget recipe",
        h.paragraph(plan),
        h.paragraph(_start_text(recipe)) if _start_text(recipe) else "",
        h.paragraph(f"Estimate: {h.format_value(estimate.get('val_accuracy'))} validation accuracy — {estimate.get('note', '')}.", "note"),
        h.table(params) if params else "",
        h.table(proxy_rows(recipe), highlight={proxy.get("monitor", "value"): "max" if proxy.get("monitor") == "val_accuracy" else "min"}),
    )
