"""Competition workflow benchmark on the demo data: single run vs K-fold CV ensemble vs refit vs a
two-backbone ensemble, and cleanlab's label-issue list on a copy with flipped labels.

Rows (all scored on the 1,000 held-back demo test images, answers in ``answers/test_labels.csv``):

- ``single``: one ordinary run (80/20 split) of the demo config (embedded EfficientNet-Lite0);
- ``cv{K} lite0``: the K fold models averaged (``imgclf predict CV_DIR``);
- ``refit lite0``: one model on every image for the folds' median best epoch (``cv --refit``);
- ``cv{K} lite1``: the same CV with the second backbone (embedded Lite1);
- ``ensemble lite0+lite1``: both CV folders blended with OOF-optimised weights (``imgclf ensemble``),
  and the same with equal weights.

Each row: test accuracy, test log-loss (calibrated probabilities), OOF accuracy/log-loss where it
has OOF predictions, and training time (sum of epoch times of every model behind the row).
Test probabilities are computed once per trained model and blended with the model set's weights
(exactly what ``predict`` does, without recomputing shared members).

Label issues: a copy of the demo training data with ``--flip`` (5 %) of labels moved to another
class; a K-fold CV (lite0) on it writes ``label_issues.csv``; precision and recall of finding the
flipped images are reported.

Goals (issue 14): the K-fold ensemble beats the single run by >= 1.0 pp test accuracy; OOF-weighted
blending is never worse than equal weights on log-loss; label issues recall >= 0.6 at precision >= 0.6.

Usage::

    .venv/bin/python bench/cv_ensemble.py            # the demo's size: 300/class, 80 px, 12 epochs, 5 folds (hours on 2 CPU cores)
    .venv/bin/python bench/cv_ensemble.py --quick    # 20/class, 40 px, 2 epochs, 5 folds, 300 test images (a check that it all runs)
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import machine  # noqa: E402

from imgclf.config import Config, load_config, with_overrides  # noqa: E402
from imgclf.data.blocklist import load_blocklist  # noqa: E402
from imgclf.data.demo import materialise_demo  # noqa: E402
from imgclf.data.samples import list_test_images  # noqa: E402
from imgclf.demo import demo_config_path  # noqa: E402
from imgclf.experiments.cv import run_cv  # noqa: E402
from imgclf.experiments.ensemble import build_ensemble  # noqa: E402
from imgclf.experiments.label_issues import precision_recall  # noqa: E402
from imgclf.experiments.oof import scores  # noqa: E402
from imgclf.infer.model_set import resolve_model_set  # noqa: E402
from imgclf.infer.predict import predict_paths  # noqa: E402
from imgclf.run.load import load_run  # noqa: E402
from imgclf.io import atomic_write_json, read_json  # noqa: E402
from imgclf.report.tables import markdown_table  # noqa: E402
from imgclf.training.loop import fit  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="20 images per class, 40 px, 2 epochs, 300 test images (sizes below override)",
    )
    ap.add_argument("--per-class", type=int, help="training images per class (demo: 300)")
    ap.add_argument("--image-size", type=int, help="image size (demo: 80)")
    ap.add_argument("--epochs", type=int, help="epochs per model (demo: 12)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument(
        "--test-limit", type=int, help="score on the first N test images only (quick: 300; default all 1,000)"
    )
    ap.add_argument("--flip", type=float, default=0.05, help="fraction of labels flipped for the label-issue check")
    ap.add_argument("--workdir", type=Path, default=HERE / ".data" / "cv_ensemble")
    ap.add_argument("--out", type=Path, help="results JSON (default bench/results/cv_ensemble[-quick].json)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra config override, key=value")
    return ap.parse_args(argv)


def sizes(args: argparse.Namespace) -> dict[str, int]:
    base = (
        {"per_class": 20, "image_size": 40, "epochs": 2}
        if args.quick
        else {"per_class": 300, "image_size": 80, "epochs": 12}
    )
    given = {"per_class": args.per_class, "image_size": args.image_size, "epochs": args.epochs}
    return {k: given[k] or v for k, v in base.items()}


def base_config(args: argparse.Namespace, size: dict[str, int]) -> Config:
    cfg = load_config(demo_config_path(False), [*args.overrides, "tracking.enabled=false"])
    return with_overrides(cfg, {"data.image_size": size["image_size"], "train.epochs": size["epochs"]})


def train_one(cfg: Config, dataset: Path, out: Path, resume: bool, name: str) -> dict[str, Any]:
    print(f"  {name}: {'resuming' if resume else 'training'} {out}", flush=True)
    return fit(cfg, dataset, out, resume=resume)


class TestSet:
    """The held-back test images and answers; calibrated test probabilities cached per trained model."""

    def __init__(self, dataset: Path, answers: Path, limit: int | None = None) -> None:
        import pandas as pd

        self.dir = dataset / "test"
        self.paths = list_test_images(self.dir)[:limit]
        truth = pd.read_csv(answers, dtype={"Id": str}).set_index("Id")["Category"].astype(int)
        self.labels = np.array([truth[p.relative_to(self.dir).as_posix()] for p in self.paths])
        self.cache: dict[Path, np.ndarray] = {}
        self.seconds = 0.0

    def probs(self, run_dir: Path) -> np.ndarray:
        key = Path(run_dir).resolve()
        if key not in self.cache:
            pred = predict_paths(load_run(key), self.paths, root=self.dir.parent, batch_size=128)
            assert pred.paths == self.paths, "a test image could not be read"
            self.cache[key] = pred.probs
            self.seconds += pred.seconds
        return self.cache[key]

    def score(self, target: Path) -> dict[str, float]:
        """Test scores of a run, CV folder or ensemble folder, blended as ``predict`` blends them."""
        models = resolve_model_set(target)
        probs = sum(w * self.probs(run) for run, w in models.members)
        return {f"test_{k}": v for k, v in scores(self.labels, probs).items() if k != "images"}


def flipped_copy(dataset: Path, out: Path, fraction: float, seed: int = 0) -> set[str]:
    """Copy ``dataset/train`` to ``out/train`` with ``fraction`` of the images moved to another class."""
    if out.exists():
        shutil.rmtree(out)
    rng = random.Random(seed)
    classes = sorted(p.name for p in (dataset / "train").iterdir() if p.is_dir())
    images = sorted((dataset / "train").rglob("*.png"))
    flip = set(rng.sample(range(len(images)), round(fraction * len(images))))
    flipped = set()
    for i, src in enumerate(images):
        cls = src.parent.name
        if i in flip:
            cls = rng.choice([c for c in classes if c != cls])
            flipped.add(f"train/{cls}/{src.name}")
        dst = out / "train" / cls / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return flipped


def model_rows(work: Path, dataset: Path, cfg0: Config, cfg1: Config, test: TestSet, k: int) -> list[dict[str, Any]]:
    """Train (or reuse) the single run, both CVs and the refit; blend; score every row on the test images."""
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    single = work / "single"
    summary = (
        read_json(single / "summary.json")
        if (single / "summary.json").is_file()
        else train_one(cfg0, dataset, single, False, "single")
    )
    wall = time.perf_counter() - t0
    rows.append(
        {
            "row": "single run lite0 (80/20)",
            **test.score(single),
            "oof_accuracy": summary["val_accuracy"],
            "oof_log_loss": None,
            "train_seconds": summary["train_seconds"],
            "wall_seconds": wall,
        }
    )

    cvs = {}
    for name, cfg, refit in (("lite0", cfg0, True), ("lite1", cfg1, False)):
        t0 = time.perf_counter()
        cv_dir = work / f"cv_{name}"
        s = run_cv(cfg, dataset, cv_dir, folds=k, train_one=train_one, refit=refit)
        cvs[name] = (cv_dir, s)
        wall = time.perf_counter() - t0  # all folds (+ refit), OOF, report: before any test inference
        rows.append(
            {
                "row": f"cv{k} {name} (fold average)",
                **test.score(cv_dir),
                "oof_accuracy": s["oof"]["accuracy"],
                "oof_log_loss": s["oof"]["log_loss"],
                "train_seconds": s["train_seconds"],
                "wall_seconds": wall,
            }
        )
        if refit:
            r = s["refit"]
            rows.append(
                {
                    "row": f"refit {name} ({r['epochs']} epochs, all images)",
                    **test.score(cv_dir / r["run"]),
                    "oof_accuracy": None,
                    "oof_log_loss": None,
                    "train_seconds": r["train_seconds"],
                    "wall_seconds": None,
                }
            )

    members = [cvs["lite0"][0], cvs["lite1"][0]]
    cv_seconds = cvs["lite0"][1]["train_seconds"] + cvs["lite1"][1]["train_seconds"]
    for method in ("optimize", "equal"):
        ens = build_ensemble(members, work / f"ens_{method}", method=method)
        weights = ", ".join(f"{m['weight']:.2f}" for m in ens["members"])
        rows.append(
            {
                "row": f"ensemble cv lite0 + cv lite1 ({method} weights {weights})",
                **test.score(work / f"ens_{method}"),
                "oof_accuracy": ens["ensemble"]["accuracy"],
                "oof_log_loss": ens["ensemble"]["log_loss"],
                "train_seconds": cv_seconds,
                "wall_seconds": None,
            }
        )
    return rows


def label_issue_check(work: Path, dataset: Path, cfg: Config, k: int, flip: float) -> dict[str, Any]:
    """CV on a copy with ``flip`` of the labels changed; precision/recall of label_issues.csv against the flips."""
    t0 = time.perf_counter()
    noisy = work / "flipped"
    truth = flipped_copy(dataset, noisy, flip)
    run_cv(cfg, noisy, work / "cv_flipped", folds=k, train_one=train_one)
    found = set(load_blocklist(work / "cv_flipped" / "label_issues.csv").by_path)
    return {**precision_recall(found, truth), "wall_seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size = sizes(args)
    # One folder per size: a finished run found there is reused, so it must be of these sizes.
    work = args.workdir / f"{size['per_class']}pc-{size['image_size']}px-{size['epochs']}ep-{args.folds}f"
    work.mkdir(parents=True, exist_ok=True)
    demo = materialise_demo(work / "demo", train_per_class=size["per_class"])
    cfg0 = base_config(args, size)
    cfg1 = with_overrides(cfg0, {"model.weights": "embedded:lite1"})  # the second backbone
    test = TestSet(demo.dataset, demo.answers, args.test_limit or (300 if args.quick else None))
    k, t_start = args.folds, time.perf_counter()
    print(f"sizes {size}, {k} folds, work {work}", flush=True)

    rows = model_rows(work, demo.dataset, cfg0, cfg1, test, k)
    cleanlab = label_issue_check(work, demo.dataset, cfg0, k, args.flip)

    by = {r["row"].split(" (")[0]: r for r in rows}
    result = {
        "machine": machine(),
        "command": " ".join(["bench/cv_ensemble.py", *(argv if argv is not None else sys.argv[1:])]),
        "sizes": {**size, "folds": k, "flip": args.flip, "test_images": len(test.paths)},
        "rows": rows,
        "label_issues": cleanlab,
        "goals": {
            "cv_minus_single_pp": 100 * (by[f"cv{k} lite0"]["test_accuracy"] - by["single run lite0"]["test_accuracy"]),
            "optimize_oof_log_loss_le_equal": rows[-2]["oof_log_loss"] <= rows[-1]["oof_log_loss"] + 1e-12,
            "optimize_test_log_loss_minus_equal": rows[-2]["test_log_loss"] - rows[-1]["test_log_loss"],
        },
        "total_wall_seconds": time.perf_counter() - t_start,
        "test_inference_seconds": test.seconds,
    }
    out = args.out or HERE / "results" / f"cv_ensemble{'-quick' if args.quick else ''}.json"
    atomic_write_json(out, result)
    print(
        markdown_table(
            rows,
            ["row", "test_accuracy", "test_log_loss", "oof_accuracy", "oof_log_loss", "train_seconds", "wall_seconds"],
        )
    )
    print(
        json.dumps(
            {"label_issues": cleanlab, "goals": result["goals"], "total_wall_seconds": result["total_wall_seconds"]},
            indent=1,
        )
    )
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
