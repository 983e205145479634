"""The resolution probe (``imgclf.budget.resolution``) on benchmark datasets: held-out accuracy of the frozen
backbone's features by image size, and the size the budget recipe would take from it.

Usage::

    .venv/bin/python bench/resolution.py bench/.data/demo/dataset bench/.data/small/dataset
    .venv/bin/python bench/resolution.py DATASET --sizes 64 96 192 --backbone test_efficientnet --weights none
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import machine  # noqa: E402

from imgclf.config import Config, with_overrides  # noqa: E402
from imgclf.budget.resolution import TOLERANCE, enough_size, probe_resolution  # noqa: E402
from imgclf.experiments.stats import paired_gap  # noqa: E402


def table(rows: list[tuple[str, dict[int, np.ndarray], float]]) -> str:
    """One row a dataset: held-out accuracy at each size, the size :func:`enough_size` takes, and the paired gap
    (with its standard error) from that size to the largest."""
    sizes = sorted({s for _, correct, _ in rows for s in correct})
    lines = [
        "| dataset | images | " + " | ".join(f"{s} px" for s in sizes) + " | enough | gap to largest ± SE | probe s |",
        "|---|---:|" + "---:|" * len(sizes) + "---:|---:|---:|",
    ]
    for name, correct, seconds in rows:
        cells = " | ".join(f"{correct[s].mean():.3f}" if s in correct else "–" for s in sizes)
        size, largest = enough_size(correct), max(correct)
        gap, se = paired_gap(correct[size], correct[largest])
        images = len(correct[largest])
        lines.append(f"| {name} | {images} | {cells} | {size} px | {gap:+.3f} ± {se:.3f} | {seconds:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", type=Path, help="dataset folders (train/<class>/...)")
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 80, 96, 128, 160, 192, 224])
    parser.add_argument("--backbone", default=None, help="model.backbone (default: imgclf's)")
    parser.add_argument("--weights", default=None, help="model.weights (default: imgclf's)")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in (("model.backbone", args.backbone), ("model.weights", args.weights)) if v}
    cfg = with_overrides(Config(), overrides) if overrides else Config()
    rows = []
    for dataset in args.datasets:
        started = time.perf_counter()
        correct = probe_resolution(cfg, dataset, sorted(args.sizes))
        if correct is None:
            print(f"{dataset}: too few images a class to probe", file=sys.stderr)
            continue
        rows.append(
            (dataset.parent.name if dataset.name == "dataset" else dataset.name, correct, time.perf_counter() - started)
        )
    info = machine()
    print(
        f"machine: {info.get('cpu')} ({info.get('cores')} cores), torch {info.get('torch')}, {info.get('date')}; "
        f"tolerance {TOLERANCE:.0%}, a cap only where gap + 1 SE is within it"
    )
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
