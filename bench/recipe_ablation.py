"""Does each part of ``train --budget`` pay for itself? The recipe with one part switched off at a time.

For one dataset, one after another on this machine (never run it beside anything else):

- ``full``: ``imgclf train DATASET --budget Bm``, as a user runs it;
- one arm for each part, switched off with ``--set``: ``probes`` (the resolution and orientation probes,
  ``train.budget_probes=false``), ``progressive`` (``data.start_size=0``), ``freeze`` (``finetune.freeze_bottom=0``)
  and ``members`` (``train.budget_members=1``);
- ``rerun``: the full recipe again with another seed (``train.seed=1``), the yardstick: a part whose gap is not
  clearly larger than the rerun's is not shown to matter.

(The proxy search had an arm too until it was deleted: at commit 5dc5e50, ``train.budget_search=true``.)

Each run is scored on DATASET/test **without TTA** (``predict --tta none``: one pass an image, so every arm is
compared on the same footing and 6,000 test images take ~2 minutes, not ~15), per image, against LABELS. Each arm's
gap to ``full`` is paired on the same test images, with its standard error (``paired_gap``). The TTA part is read from
the full run's own decision (``recipe.json`` → ``estimate.tta``: the flip TTA against none, paired on the held-out
images).

Writes ``OUT/ablation.md`` (the table with command, machine and date) and ``OUT/ablation.json``.

Usage::

    python bench/datasets.py defects bench/.data/defects6k --train-per-class 500 --extra-test 5000
    nice -n -10 python bench/recipe_ablation.py bench/.data/defects6k/dataset \\
        bench/.data/defects6k/answers/test_labels.csv --budget 3 --out bench/.data/ablation-defects
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peers import imgclf, last_line, run_logged  # noqa: E402

ARMS: dict[str, tuple[str, list[str]]] = {
    "full": ("the recipe as a user runs it", []),
    "probes": ("no resolution or orientation probe", ["train.budget_probes=false"]),
    "progressive": ("no progressive resizing", ["data.start_size=0"]),
    "freeze": ("no frozen bottom layers", ["finetune.freeze_bottom=0"]),
    "members": ("one final model", ["train.budget_members=1"]),
    "rerun": ("the full recipe again, another seed", ["train.seed=1"]),
}


def correctness(submission: Path, labels: Path) -> np.ndarray:
    """Per test image (in LABELS' order): whether the submission's class name is the label."""
    with open(labels, newline="", encoding="utf-8-sig") as fh:
        truth = [(r["Id"], r["label"]) for r in csv.DictReader(fh)]
    with open(submission, newline="", encoding="utf-8-sig") as fh:
        predicted = {r[0]: r[1] for r in list(csv.reader(fh))[1:] if len(r) >= 2}
    return np.array([predicted.get(i) == label for i, label in truth], dtype=bool)


def run_arm(name: str, sets: list[str], args, out: Path, timeout_s: float) -> dict:
    run = out / name
    cmd = imgclf(
        "train",
        str(args.dataset),
        "--budget",
        f"{args.budget:g}m",
        "--out",
        str(run),
        *[a for s in sets for a in ("--set", s)],
    )
    rc, wall, text = run_logged(cmd, out / f"{name}.log", out, timeout_s)
    if rc != 0:
        return {"arm": name, "error": f"train failed (exit {rc}): {last_line(text)}", "train_seconds": wall}
    submission = run / "test-none.csv"
    predict = imgclf(
        "predict", str(run), str(args.dataset / "test"), "--out", str(submission), "--category", "name", "--tta", "none"
    )
    rc, wall_p, text = run_logged(predict, out / f"{name}-predict.log", out, timeout_s)
    if rc != 0:
        return {"arm": name, "error": f"predict failed (exit {rc}): {last_line(text)}", "train_seconds": wall}
    recipe = json.loads((run / "recipe.json").read_text())
    chosen, estimate = recipe.get("chosen", {}), recipe.get("estimate", {})
    right = correctness(submission, args.labels)
    np.save(run / "test-none-correct.npy", right)
    return {
        "arm": name,
        "sets": sets,
        "train_seconds": wall,
        "predict_seconds": wall_p,
        "accuracy": float(right.mean()),
        "images": int(right.size),
        "size": chosen.get("image_size"),
        "start_size": chosen.get("start_size"),
        "members": len(recipe.get("members_trained", [])),
        "epochs_run": recipe.get("epochs_run"),
        "flips": recipe.get("orientation", {}).get("flips"),
        "estimate": estimate.get("value"),
        "estimate_se": estimate.get("se"),
        "tta_decision": estimate.get("tta"),
        "resolution": recipe.get("resolution", {}).get("size"),
        "within_budget": recipe.get("within_budget"),
    }


def with_gaps(rows: list[dict], out: Path) -> list[dict]:
    """Each arm's test accuracy minus full's, paired on the same images: ``gap`` and ``se`` (full minus the arm is
    what the part buys)."""
    sys.path.insert(0, str(HERE.parent))
    from imgclf.experiments.stats import paired_gap

    full = next((r for r in rows if r["arm"] == "full" and "accuracy" in r), None)
    if full is None:
        return rows
    base = np.load(out / "full" / "test-none-correct.npy")
    for row in rows:
        if "accuracy" in row and row["arm"] != "full":
            other = np.load(out / row["arm"] / "test-none-correct.npy")
            row["part_buys"], row["part_buys_se"] = paired_gap(other, base)  # full over the arm
    return rows


def pp(x: float | None, se: float | None = None) -> str:
    if x is None:
        return "–"
    return f"{100 * x:+.1f} ± {100 * se:.1f}" if se is not None else f"{100 * x:.1f}"


def verdict(row: dict, spread: float | None = None) -> str:
    """``pays``/``costs`` only for a gap beyond one paired SE and beyond the rerun's own gap (``spread``: what a
    second run of the full recipe, another seed, differs by)."""
    gap, se = row.get("part_buys"), row.get("part_buys_se")
    if gap is None or row["arm"] == "rerun":
        return "" if gap is None else "the run-to-run spread"
    if abs(gap) <= se:
        return "within 1 SE: no effect shown"
    if spread is not None and abs(gap) <= spread:
        return "within the rerun's spread: no effect shown"
    return "pays" if gap > 0 else "costs"


def table(rows: list[dict]) -> str:
    lines = [
        "| arm | what changes | test acc. (no TTA) | part buys (pp, paired) | verdict | size (start) | models | "
        "epochs | flips | held-out estimate | train s |",
        "|---|---|---:|---:|---|---|---:|---:|---|---:|---:|",
    ]
    rerun = next((r for r in rows if r["arm"] == "rerun" and r.get("part_buys") is not None), None)
    spread = abs(rerun["part_buys"]) if rerun else None
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['arm']} | {ARMS.get(r['arm'], ('', []))[0]} | – | – | {r['error']} | | | | | | |")
            continue
        n = r["images"]
        se = math.sqrt(r["accuracy"] * (1 - r["accuracy"]) / n)
        size = f"{r['size']}" + (f" ({r['start_size']})" if r.get("start_size") else "")
        buys = pp(r.get("part_buys"), r.get("part_buys_se")) if r["arm"] != "full" else "–"
        est = f"{100 * r['estimate']:.1f} ± {100 * r['estimate_se']:.1f}" if r.get("estimate") is not None else "–"
        lines.append(
            f"| {r['arm']} | {ARMS.get(r['arm'], (r['arm'], []))[0]} | {100 * r['accuracy']:.2f} ± {100 * se:.2f} "
            f"| {buys} | {verdict(r, spread)} | {size} | {r['members']} | {r['epochs_run']} | {r['flips']} | {est} | "
            f"{r['train_seconds']:.0f} |"
        )
    full = next((r for r in rows if r["arm"] == "full" and r.get("tta_decision")), None)
    if full:
        d = full["tta_decision"]
        if d.get("gap") is not None:
            lines.append(
                f"\nTTA (the full run's own decision, on its {d['images']} held-out images, paired): "
                f"{d['views']} over none {pp(d['gap'], d['se'])} pp → {'kept' if d['kept'] else 'dropped'}."
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("labels", type=Path, help="CSV with Id and label columns for the test images")
    ap.add_argument("--budget", type=float, required=True, help="minutes per run")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--arms", nargs="+", choices=tuple(ARMS), default=list(ARMS))
    args = ap.parse_args(argv)
    for path in (args.dataset / "train", args.dataset / "test", args.labels):
        if not path.exists():
            print(f"error: {path} does not exist", file=sys.stderr)
            return 2
    args.dataset, args.labels = args.dataset.resolve(), args.labels.resolve()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    timeout_s = 3 * 60 * args.budget + 900
    rows = []
    for arm in args.arms:
        rows.append(run_arm(arm, ARMS[arm][1], args, out, timeout_s))
        print(json.dumps(rows[-1], default=str), flush=True)
        (out / "ablation.json").write_text(json.dumps(rows, indent=2, default=str))
    rows = with_gaps(rows, out)
    from _common import machine

    m = machine()
    text = (
        f"Command: `{' '.join(['python', 'bench/recipe_ablation.py', *(argv or sys.argv[1:])])}`\n"
        f"Machine: {m['cpu']}, {m['cores']} cores, GPU {m['gpu'] or 'none'}; torch {m['torch']}. Date: {m['date']}.\n\n"
        + table(rows)
        + "\n"
    )
    (out / "ablation.json").write_text(json.dumps(rows, indent=2, default=str))
    (out / "ablation.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
