"""Freezing the lowest layers (``finetune.freeze_bottom``): what it saves per step, and what it buys under a budget.

* speed — the bare training step (forward, backward, AdamW) of the model with imgclf's own :func:`configure`
  freezing ``--shares`` of its layer groups, at ``--sizes``, images/s (medians of ``--steps`` timed steps);
* budget (with ``--data DIR LABELS``) — ``imgclf train DIR/dataset --budget`` as it comes (its short-run prior
  freezes the lowest third), then with ``--set finetune.freeze_bottom=0``, one after the other; each run is
  predicted and scored against LABELS (Id,label), as ``bench/peers.py`` does.

Usage::

    .venv/bin/python bench/freeze.py                                            # speed table, lite0, 64/96/128 px
    .venv/bin/python bench/freeze.py --data bench/.data/small/dataset bench/.data/small/answers/test_labels.csv --budget 10
    .venv/bin/python bench/freeze.py --weights none --backbone test_efficientnet --sizes 32 --steps 2   # a quick check
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import DATA, machine  # noqa: E402

from imgclf.config import FinetuneConfig, ModelConfig  # noqa: E402
from imgclf.finetune import configure  # noqa: E402
from imgclf.models.backbones import create_model  # noqa: E402


def _peers():
    spec = importlib.util.spec_from_file_location("bench_peers", HERE / "peers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_peers"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def step_rate(model_cfg: ModelConfig, share: float, size: int, batch: int, steps: int) -> float:
    """Images/s of the bare training step with ``finetune.freeze_bottom=share``."""
    model, _ = create_model(model_cfg, 10)
    finetuner = configure(model, FinetuneConfig(freeze_bottom=share))
    optimizer = torch.optim.AdamW(finetuner.param_groups(1e-3, 0.05))
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))
    model.train()
    times = []
    for i in range(steps + 2):  # two untimed steps warm the kernels and the allocator
        t = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        if i >= 2:
            times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


def budget_rows(data: Path, labels: Path, minutes: float, out: Path) -> list[dict]:
    """``imgclf train --budget`` with the prior's freezing, then without; each predicted and scored."""
    peers, rows = _peers(), []
    args = argparse.Namespace(dataset=data, labels=labels)
    for name, extra in (
        ("freeze_bottom from the prior", []),
        ("freeze_bottom=0", ["--set", "finetune.freeze_bottom=0"]),
    ):
        run = out / name.split()[0].replace("=", "-")
        cmd = peers.imgclf(
            "train", str(data), "--out", str(run), "--budget", f"{minutes}m", "--set", "tracking.enabled=false", *extra
        )
        row = peers.imgclf_row(run.name, cmd, name, run, args, out, timeout_s=minutes * 60 * 3)
        chosen = json.loads((run / "recipe.json").read_text())["chosen"] if (run / "recipe.json").exists() else {}
        rows.append(
            {
                "run": name,
                "accuracy": row.accuracy,
                "wall_s": round(row.wall, 1),
                "note": row.note,
                "image_size": chosen.get("image_size"),
                "start_size": chosen.get("start_size"),
            }
        )
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="embedded:lite0")
    ap.add_argument("--backbone", default=None)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128])
    ap.add_argument("--shares", type=float, nargs="+", default=[0.0, 0.35])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--data", type=Path, nargs=2, metavar=("DATASET", "LABELS"), default=None)
    ap.add_argument("--budget", type=float, default=10.0, help="minutes per --budget run")
    ap.add_argument("--out", type=Path, default=DATA / "freeze")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    model_cfg = ModelConfig(weights=args.weights, backbone=args.backbone)
    speed = {
        size: {share: round(step_rate(model_cfg, share, size, args.batch, args.steps), 1) for share in args.shares}
        for size in args.sizes
    }
    print("| size | " + " | ".join(f"freeze_bottom={s}" for s in args.shares) + " |")
    print("|---:|" + "---:|" * len(args.shares))
    for size, rates in speed.items():
        base = rates[args.shares[0]]
        print(f"| {size} px | " + " | ".join(f"{r} ({r / base:.2f}×)" for r in rates.values()) + " |")
    result = {"machine": machine(), "speed_images_per_s": speed}
    if args.data:
        args.out.mkdir(parents=True, exist_ok=True)
        result["budget"] = budget_rows(args.data[0], args.data[1], args.budget, args.out)
    return result


if __name__ == "__main__":
    main()
