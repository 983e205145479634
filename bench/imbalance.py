"""Class imbalance: the same small training with each of imgclf's remedies, scored on a balanced test set.

Trains, one after another in this process, on the ``imbalanced`` benchmark dataset (``bench/datasets.py``:
the demo's Fashion-MNIST subset with class sizes decaying geometrically, 10:1 by default; its test
set keeps 100 images per class):

* ``baseline`` — the quick demo config (``imgclf/configs/demo-quick.yaml``: embedded lite0, 64 px,
  3 epochs) as it is;
* ``class_weights=balanced`` — sklearn's balanced class weights in the loss;
* ``sampler=balanced`` — inverse-frequency ``WeightedRandomSampler`` draws;
* ``loss=focal`` — softmax focal loss, gamma 2.

Each run predicts ``dataset/test`` and is scored against ``answers/test_labels.csv``: accuracy,
macro-F1 (sklearn ``f1_score(average="macro")``) and the worst class's recall. The table (mean over
seeds, and each seed) goes to stdout and, with the command, machine and date, to ``OUT/imbalance.md``
(JSON beside it).

Usage::

    python bench/datasets.py imbalanced bench/.data/imb --imbalance 10
    python bench/imbalance.py bench/.data/imb --seeds 0 1 --out bench/.data/imbalance-runs
    python bench/imbalance.py bench/.data/imb --epochs 1 --image-size 32 --seeds 0      # a smoke run
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score, recall_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

VARIANTS: dict[str, list[str]] = {
    "baseline": [],
    "class_weights=balanced": ["train.class_weights=balanced"],
    "sampler=balanced": ["data.sampler=balanced"],
    "loss=focal": ["train.loss=focal", "train.focal_gamma=2.0"],
}


def train_and_score(root: Path, overrides: list[str], out: Path) -> dict[str, float]:
    """Train the quick demo config with ``overrides`` on ``root/dataset``; score its test predictions."""
    from imgclf.config import load_config
    from imgclf.demo import demo_config_path
    from imgclf.infer.jobs import predict_folder
    from imgclf.training.loop import fit

    dataset, answers = root / "dataset", root / "answers" / "test_labels.csv"
    cfg = load_config(demo_config_path(quick=True), ["tracking.enabled=false", *overrides])
    t0 = time.perf_counter()
    summary = fit(cfg, dataset, out)
    train_s = time.perf_counter() - t0
    submission = out / "bench_submission.csv"
    predict_folder(out, dataset / "test", submission, category="name")
    return {**score(submission, answers), "val_macro_f1": summary.get("val_macro_f1"), "train_s": train_s}


def score(submission: Path, answers: Path) -> dict[str, float]:
    """Accuracy, macro-F1 and the worst class's recall of a submission (Id, class name) against
    ANSWERS (``Id`` and ``label`` columns); an id the submission lacks counts as wrong."""
    with open(answers, newline="", encoding="utf-8-sig") as fh:
        truth = {r["Id"]: r["label"] for r in csv.DictReader(fh)}
    with open(submission, newline="", encoding="utf-8-sig") as fh:
        predicted = {r[0]: r[1] for r in list(csv.reader(fh))[1:] if len(r) >= 2}
    ids = sorted(truth)
    y, p = [truth[i] for i in ids], [predicted.get(i, "") for i in ids]
    classes = sorted(set(y))
    return {
        "accuracy": float(np.mean([a == b for a, b in zip(y, p)])),
        "macro_f1": float(f1_score(y, p, labels=classes, average="macro", zero_division=0)),
        "worst_recall": float(min(recall_score(y, p, labels=classes, average=None, zero_division=0))),
    }


def table(results: dict[str, list[dict[str, float]]], seeds: list[int]) -> str:
    lines = [
        "| variant | test accuracy | test macro-F1 | worst-class recall | per seed (acc / macro-F1) | train s (mean) |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for name, runs in results.items():
        mean = {k: float(np.mean([r[k] for r in runs])) for k in ("accuracy", "macro_f1", "worst_recall", "train_s")}
        per_seed = "; ".join(f"seed {s}: {r['accuracy']:.3f} / {r['macro_f1']:.3f}" for s, r in zip(seeds, runs))
        lines.append(
            f"| {name} | {mean['accuracy']:.3f} | {mean['macro_f1']:.3f} | {mean['worst_recall']:.3f} | "
            f"{per_seed} | {mean['train_s']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("root", type=Path, help="a folder bench/datasets.py imbalanced wrote (dataset/ and answers/)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (the split stays fixed)")
    ap.add_argument("--epochs", type=int, default=None, help="override train.epochs (default: the quick demo's 3)")
    ap.add_argument(
        "--image-size", type=int, default=None, help="override data.image_size (default: the quick demo's 64)"
    )
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--out", type=Path, default=Path("bench/.data/imbalance-runs"))
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    common = [
        *([f"train.epochs={a.epochs}"] if a.epochs else []),
        *([f"data.image_size={a.image_size}"] if a.image_size else []),
    ]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results: dict[str, list[dict[str, float]]] = {}
    for seed in a.seeds:  # seed-major: a run cut short still has every variant for its first seeds
        for name in a.variants:
            run = a.out / stamp / f"{name.replace('=', '-')}-seed{seed}"
            scores = train_and_score(a.root, [*common, *VARIANTS[name], f"train.seed={seed}"], run)
            results.setdefault(name, []).append(scores)
            print(
                f"{name} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items() if v is not None),
                flush=True,
            )
    text = table(results, a.seeds)
    command = "python bench/imbalance.py " + " ".join(
        shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:])
    )
    header = f"Command: `{command}`\n\nMachine: {json.dumps(machine())}\n\n"
    print(text)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "imbalance.md").write_text(header + text + "\n")
    (a.out / "imbalance.json").write_text(
        json.dumps({"machine": machine(), "command": command, "results": results}, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
