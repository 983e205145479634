"""Which augmentation a short fine-tune wants: the table behind the budget recipe's short-run prior.

For each dataset and each augmentation row: ``imgclf train`` on every training image (no validation split) at
``--size`` px for ``--epochs`` epochs, then ``imgclf predict`` on ``test/`` scored against the labels CSV. Only
the augmentation differs between rows. Prints one markdown table (rows × datasets, test accuracy).

Usage::

    python bench/datasets.py demo bench/.data/demo && python bench/datasets.py noup bench/.data/noup
    python bench/augment_prior.py bench/.data/demo bench/.data/noup --size 64 --epochs 5
    python bench/augment_prior.py bench/.data/demo --size 32 --epochs 1 --rows medium none-h   # a smoke run

Each DATA folder is what ``bench/datasets.py`` writes: ``dataset/`` and ``answers/test_labels.csv``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import imgclf, score  # noqa: E402

ROWS = {
    "medium": ("`medium` (the default: crop 0.35-1, colour jitter, flips h, eval crop 0.875)", []),
    "light": ("`light` (crop 0.6-1, flips h), eval crop 1.0", ["data.augment=light", "data.eval_crop_pct=1.0"]),
    "none-h": ("`none` + flips h, eval crop 1.0", ["data.augment=none", "data.flips=h", "data.eval_crop_pct=1.0"]),
    "none-d4": ("`none` + flips d4, eval crop 1.0", ["data.augment=none", "data.flips=d4", "data.eval_crop_pct=1.0"]),
}


def accuracy(data: Path, sets: list[str], size: int, epochs: int, work: Path) -> float:
    run = work / "run"
    base = [f"data.image_size={size}", f"train.epochs={epochs}", "data.val_fraction=0", "tracking.enabled=false"]
    if epochs <= 1:
        base.append("train.warmup_epochs=0")
    args = [a for s in [*base, *sets] for a in ("--set", s)]
    subprocess.run(imgclf("train", str(data / "dataset"), "--out", str(run), *args), check=True, capture_output=True)
    submission = run / "sub.csv"
    subprocess.run(
        imgclf("predict", str(run), str(data / "dataset" / "test"), "--out", str(submission), "--category", "name"),
        check=True,
        capture_output=True,
    )
    return score(submission, data / "answers" / "test_labels.csv")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, nargs="+", help="folders written by bench/datasets.py")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--rows", nargs="+", choices=tuple(ROWS), default=list(ROWS))
    args = ap.parse_args(argv)
    lines = ["| augmentation | " + " | ".join(d.name for d in args.data) + " |", "|---|" + "---:|" * len(args.data)]
    for key in args.rows:
        label, sets = ROWS[key]
        cells = []
        for data in args.data:
            with tempfile.TemporaryDirectory(prefix="imgclf-augprior-") as tmp:
                cells.append(f"{100 * accuracy(data, sets, args.size, args.epochs, Path(tmp)):.1f} %")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
