"""TTA benchmark: no TTA vs fixed N views vs adaptive TTA on the demo test split.

Trains the demo model (embedded EfficientNet-Lite0 on the embedded Fashion-MNIST subset, the
``imgclf demo`` config) unless ``--run`` gives a finished run, then builds the
``evaluate --tta-compare`` table on the 1,000 held-back demo test images
(``dataset/test`` + ``answers/test_labels.csv``). The "adaptive (auto)" threshold is chosen
on the run's *validation* split, never on the test images it is scored on. Every row is run
for real with the model, so its wall time is measured (``--estimate``: replay from the
views' logits and estimate it instead).

Goal (issue 5): adaptive TTA reaches the accuracy of 10-view TTA within 0.1 percentage
point with at most 30 % of its forward passes.

Usage::

    .venv/bin/python bench/tta.py                     # the real measurement (full demo; ~15 min of training on 2 CPU cores)
    .venv/bin/python bench/tta.py --quick             # small settings: a check that it all works (~1-2 min)
    .venv/bin/python bench/tta.py --run runs/demo-... # reuse a trained demo run
    .venv/bin/python bench/tta.py --benchmarks BENCHMARKS.md   # also append the "TTA" section there
"""

from __future__ import annotations

import argparse
import csv
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from imgclf.config import load_config
from imgclf.data.demo import materialise_demo
from imgclf.data.pipeline import image_loader
from imgclf.data.samples import list_test_images
from imgclf.demo import demo_config_path
from imgclf.infer.jobs import evaluation_images
from imgclf.run.load import load_run
from imgclf.infer.tta_compare import all_view_logits, compare_tta, markdown, write_compare
from imgclf.infer.tta_runner import DecodedImages, model_forward, run_views
from imgclf.training.loop import fit

HERE = Path(__file__).resolve().parent
GOAL_PP, GOAL_SHARE = 0.1, 0.30
QUICK = dict(train_per_class=40, test_limit=200, overrides=["train.epochs=2"])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="small settings: 40 training images per class, 2 epochs, 200 test images"
    )
    ap.add_argument("--run", type=Path, help="a finished run trained on the demo data (skips training)")
    ap.add_argument("--workdir", type=Path, default=HERE / ".data", help="demo data and the trained run go here")
    ap.add_argument("--ns", default="2,4,10", help="fixed numbers of views to show")
    ap.add_argument(
        "--tolerance",
        type=float,
        default=GOAL_PP / 100,
        help="auto threshold: accuracy tolerance vs full TTA (fraction)",
    )
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--estimate", action="store_true", help="replay rows from the views' logits; estimate wall time")
    ap.add_argument(
        "--set", dest="overrides", action="append", default=[], help="extra config override for training, key=value"
    )
    ap.add_argument(
        "--benchmarks", type=Path, help="append the TTA section (table, command, machine, date) to this file"
    )
    return ap.parse_args(argv)


def train_demo(args: argparse.Namespace) -> tuple[Path, Path]:
    """(run dir, demo root): a fresh demo run, or ``--run`` with the demo data it was trained on."""
    per_class = QUICK["train_per_class"] if args.quick else None
    name = "tta-demo-quick" if args.quick else "tta-demo"
    demo = materialise_demo(args.workdir / name, train_per_class=per_class)
    if args.run:
        return args.run, demo.root
    overrides = [
        *(QUICK["overrides"] if args.quick else []),
        *args.overrides,
        "tracking.enabled=false",
        f"train.device={args.device}",
    ]
    cfg = load_config(demo_config_path(args.quick), overrides)
    out = args.workdir / "runs" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    t0 = time.perf_counter()
    summary = fit(cfg, demo.dataset, out)
    print(f"trained {out} in {time.perf_counter() - t0:.0f}s: val accuracy {summary['val_accuracy']:.4f}", flush=True)
    return out, demo.root


def test_split(demo_root: Path, classes: list[str], limit: int | None) -> tuple[list[Path], np.ndarray]:
    """The demo's held-back test images and their class indices in the run's class order."""
    test_dir = demo_root / "dataset" / "test"
    with open(demo_root / "answers" / "test_labels.csv", newline="") as fh:
        label_of = {row["Id"]: row["label"] for row in csv.DictReader(fh)}
    paths = list_test_images(test_dir)[:limit]
    index = {c: i for i, c in enumerate(classes)}
    return paths, np.array([index[label_of[p.relative_to(test_dir).as_posix()]] for p in paths])


def machine() -> str:
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines()
        cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Model name")), platform.processor())
    except OSError:
        cpu = platform.processor() or "unknown CPU"
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu} ({torch.get_num_threads()} torch threads){gpu}; torch {torch.__version__}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M")
    run_dir, demo_root = train_demo(args)
    loaded = load_run(run_dir, args.device)
    cfg = loaded.cfg.tta
    views = run_views(loaded, cfg.views)
    forward = model_forward(loaded, args.device)

    # The auto threshold is chosen on the run's validation split: data the test rows never see.
    val_paths, val_y, val_root, _ = evaluation_images(run_dir, None, loaded.classes)
    val_images = DecodedImages(val_paths, image_loader(loaded.cfg.data, val_root, loaded.pre))
    keep = {p: y for p, y in zip(val_paths, val_y.tolist())}
    val_logits, _ = all_view_logits(forward, val_images, views, args.batch_size)
    choose_on = (val_logits, np.array([keep[p] for p in val_images.paths]))

    paths, y = test_split(demo_root, loaded.classes, QUICK["test_limit"] if args.quick else None)
    t0 = time.perf_counter()
    images = DecodedImages(paths, image_loader(loaded.cfg.data, demo_root / "dataset", loaded.pre))
    decode = time.perf_counter() - t0
    y = y[[paths.index(p) for p in images.paths]] if images.bad else y
    ns = [int(n) for n in args.ns.split(",")]
    result = compare_tta(
        forward,
        images,
        y,
        views,
        cfg,
        ns,
        args.batch_size,
        loaded.temperature,
        choose_on=choose_on,
        tolerance=args.tolerance,
        measure=not args.estimate,
    )
    result.decode_seconds = decode
    result.caption = f"demo test split ({len(images)} images), run {run_dir.name}: {result.caption}"
    write_compare(run_dir / "eval", result)

    verdicts = []
    for setting in ("adaptive", "adaptive (auto)"):
        row = result.row(setting)
        ok = row.delta_pp_vs_full >= -GOAL_PP and row.share_of_full_passes <= GOAL_SHARE
        verdicts.append(
            f"- {setting}: Δ {row.delta_pp_vs_full:+.2f} pp, {100 * row.share_of_full_passes:.0f} % of "
            f"the passes of fixed {max(ns)} → {'goal met' if ok else 'goal missed'}"
        )
    command = "python bench/tta.py " + " ".join(sys.argv[1:] if argv is None else argv)
    section = "\n".join(
        [
            "## TTA",
            "",
            f"Command: `{command.strip()}`  ",
            f"Machine: {machine()}, device {args.device}  ",
            f"Date: {started}  ",
            f"Run: `{run_dir}` (temperature {loaded.temperature:.3f}); decoding {decode:.1f}s once, not in the rows.",
            "",
            result.caption,
            "",
            markdown(result),
            "",
            f"Goal: within {GOAL_PP} pp of the largest fixed N with at most {100 * GOAL_SHARE:.0f} % of its forward passes.",
            *verdicts,
            "",
        ]
    )
    print(section)
    if args.benchmarks:
        with open(args.benchmarks, "a", encoding="utf-8") as fh:
            fh.write("\n" + section)
        print(f"appended to {args.benchmarks}")
    print(f"table written to {run_dir / 'eval' / 'tta_compare.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
