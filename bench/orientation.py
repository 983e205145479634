"""The orientation probe (``imgclf.budget.orientation``) on benchmark datasets at several sizes: held-out
accuracy of the frozen backbone's features per view, and the flip group the budget recipe would take.

The recipe probes at the size the resolution probe found the data needs; this shows why: at a size too small for
the data's details every view is near chance, and no view can be seen to lose accuracy.

Usage::

    .venv/bin/python bench/orientation.py bench/.data/demo/dataset bench/.data/small/dataset --sizes 64 96 192
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import machine  # noqa: E402

from imgclf.config import Config, with_overrides  # noqa: E402
from imgclf.budget.feature_probe import shared_probe  # noqa: E402
from imgclf.budget.orientation import TOLERANCE, VIEWS, probe_orientation  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", type=Path, help="dataset folders (train/<class>/...)")
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 96, 192])
    parser.add_argument("--backbone", default=None, help="model.backbone (default: imgclf's)")
    parser.add_argument("--weights", default=None, help="model.weights (default: imgclf's)")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in (("model.backbone", args.backbone), ("model.weights", args.weights)) if v}
    cfg = with_overrides(Config(), overrides) if overrides else Config()
    lines = [
        "| dataset | size | images | " + " | ".join(VIEWS) + " | flips | probe s |",
        "|---|---:|---:|" + "---:|" * len(VIEWS) + "---|---:|",
    ]
    for dataset in args.datasets:
        name = dataset.parent.name if dataset.name == "dataset" else dataset.name
        source = shared_probe(cfg, dataset, max(args.sizes))  # decoded once, as in the recipe
        for size in sorted(args.sizes):
            started = time.perf_counter()
            found = probe_orientation(cfg, dataset, size, source)
            if found is None:
                print(f"{dataset}: too few images a class to probe", file=sys.stderr)
                break
            cells = " | ".join(f"{found.accuracy[v]:.3f}" for v in VIEWS)
            lines.append(
                f"| {name} | {size} | {found.images} | {cells} | {found.flips} | {time.perf_counter() - started:.0f} |"
            )
    info = machine()
    print(
        f"machine: {info.get('cpu')} ({info.get('cores')} cores), torch {info.get('torch')}, {info.get('date')}; "
        f"tolerance {TOLERANCE:.0%}"
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
