"""Memory format (``train.channels_last``): the bare training step and the forward pass in PyTorch's default layout
(NCHW) and in channels_last (NHWC), alternated in rounds so that a machine's drift hits both alike.

imgclf trains, validates, predicts and probes in channels_last on CUDA and, since session 26, on the CPU
(:func:`imgclf.runtime.use_channels_last`); ``--set train.channels_last=false`` turns it off.

Usage::

    .venv/bin/python bench/memory_format.py                                   # lite0, 96/128/192 px
    .venv/bin/python bench/memory_format.py --weights none --backbone test_efficientnet --sizes 32 --steps 1 --rounds 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import machine  # noqa: E402

from imgclf.config import FinetuneConfig, ModelConfig  # noqa: E402
from imgclf.finetune import configure  # noqa: E402
from imgclf.models.backbones import create_model  # noqa: E402

FORMATS = {"nchw": torch.contiguous_format, "nhwc": torch.channels_last}


def _model(model_cfg: ModelConfig, share: float, fmt: torch.memory_format):
    model, _ = create_model(model_cfg, 10)
    finetuner = configure(model, FinetuneConfig(freeze_bottom=share))
    return model.to(memory_format=fmt), torch.optim.AdamW(finetuner.param_groups(1e-3, 0.05))


def _timed(fn, steps: int) -> float:
    fn()  # untimed: warms the kernels and the allocator
    started = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - started) / steps


def rates(
    model_cfg: ModelConfig, size: int, batch: int, steps: int, rounds: int, share: float
) -> dict[str, dict[str, float]]:
    """Median images/s per format of the training step (``freeze_bottom=share``) and of the forward pass."""
    built = {name: _model(model_cfg, share, fmt) for name, fmt in FORMATS.items()}
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))
    seen: dict[str, dict[str, list[float]]] = {name: {"train": [], "forward": []} for name in FORMATS}
    for _ in range(rounds):
        for name, (model, optimizer) in built.items():

            def train_step(model=model, optimizer=optimizer):
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(model.train()(x), y).backward()
                optimizer.step()

            def forward(model=model):
                with torch.inference_mode():
                    model.eval()(x)

            seen[name]["train"].append(batch / _timed(train_step, steps))
            seen[name]["forward"].append(batch / _timed(forward, steps))
    return {name: {k: round(statistics.median(v), 1) for k, v in kinds.items()} for name, kinds in seen.items()}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="embedded:lite0")
    ap.add_argument("--backbone", default=None)
    ap.add_argument("--sizes", type=int, nargs="+", default=[96, 128, 192])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--freeze-bottom", type=float, default=0.35, help="the --budget prior's share")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    model_cfg = ModelConfig(weights=args.weights, backbone=args.backbone)
    table = {
        size: rates(model_cfg, size, args.batch, args.steps, args.rounds, args.freeze_bottom) for size in args.sizes
    }
    info = machine()
    print(
        f"machine: {info.get('cpu')} ({info.get('cores')} cores), torch {info.get('torch')}, {info.get('date')}; "
        f"batch {args.batch}, freeze_bottom {args.freeze_bottom}, medians of {args.rounds} rounds of {args.steps} steps"
    )
    print("| size | train NCHW | train NHWC | ratio | forward NCHW | forward NHWC | ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for size, r in table.items():
        print(
            f"| {size} px | {r['nchw']['train']} | {r['nhwc']['train']} | {r['nhwc']['train'] / r['nchw']['train']:.2f}× "
            f"| {r['nchw']['forward']} | {r['nhwc']['forward']} | {r['nhwc']['forward'] / r['nchw']['forward']:.2f}× |"
        )
    return {"machine": info, "images_per_s": table}


if __name__ == "__main__":
    main()
