"""Training speed: ``imgclf`` end to end vs the raw model's training step, and 1 vs N processes.

* raw — forward + backward + AdamW step of the bare model on one pre-made random batch (on the
  device already), with the same loss, autocast and memory format as the loop;
* end to end — :func:`imgclf.training.loop.fit` on a synthetic photo dataset (640x480 JPEGs, resize
  cache, the ``medium`` augmentation, DataLoader workers from the CPU count): the training
  images/s of epochs 2.. (median) from metrics.csv (epoch 1 fills the cache and starts the
  workers; validation is not in the figure);
* ``--procs 1 2`` — the same end-to-end job on 1 and on 2 spawned processes in a process group, as
  ``train --devices N`` runs them (:func:`imgclf.launch.train_on_local_processes`, gloo on CPU, NCCL on GPUs;
  for 1 too, where ``train --devices 1`` stays in-process), the same global batch: strong scaling.

Goals (issue 7): end to end at least 90 % of raw (CPU; and on a GPU with bf16 + channels_last at
224 and 384 px, batch 128, so the loader keeps the GPU fed).

Usage::

    .venv/bin/python bench/train_speed.py                                  # CPU: lite0, 224 px, batch 32
    .venv/bin/python bench/train_speed.py --procs 1 2                      # + strong scaling on CPU
    .venv/bin/python bench/train_speed.py --device cuda --amp bf16 --channels-last --sizes 224 384 --batch 128 --n-train 4096
    .venv/bin/python bench/train_speed.py --n-train 64 --batch 8 --raw-steps 2 --sizes 64 --procs 1 2   # a quick check
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, machine, report, synthetic_dataset  # noqa: E402

from imgclf.config import load_config  # noqa: E402
from imgclf.models.backbones import create_model  # noqa: E402
from imgclf.run.rundir import read_metrics  # noqa: E402

AMP = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}


def overrides(args, size: int) -> list[str]:
    return [
        f"model.weights={args.weights}",
        f"data.image_size={size}",
        f"data.batch_size={args.batch}",
        "data.val_fraction=0.05",
        f"train.epochs={args.epochs}",
        "train.warmup_epochs=0",
        "train.patience=null",
        f"train.device={args.device}",
        f"train.amp={str(args.amp != 'none').lower()}",
        f"train.channels_last={str(args.channels_last).lower()}",
        f"train.compile={str(args.compile).lower()}",
        "tracking.enabled=false",
    ] + ([f"data.num_workers={args.workers}"] if args.workers is not None else [])


def raw_rate(args, size: int) -> float:
    """Images/s of the bare training step on a batch that is already on the device."""
    device = torch.device(args.device)
    cfg = load_config(overrides=overrides(args, size))
    model, _ = create_model(cfg.model, 10)
    model.to(device).train()
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if args.compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    dtype = AMP[args.amp] if device.type == "cuda" else None
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    x = torch.randn(args.batch, 3, size, size, device=device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.cross_entropy(step_model(x), y, label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    for _ in range(args.raw_warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(args.raw_steps):
        step()
    _sync(device)
    return args.raw_steps * args.batch / (time.perf_counter() - t0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def e2e_rate(args, size: int, dataset: Path, procs: int = 0) -> float:
    """Median training images/s of epochs 2.. from metrics.csv; ``procs`` > 0 runs on that many processes in a process group."""
    out = DATA / "runs" / f"train-speed-{size}-p{procs}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = load_config(overrides=overrides(args, size))
    if procs == 0:
        from imgclf.training.loop import fit

        fit(cfg, dataset, out)
    else:
        from imgclf.launch import train_on_local_processes

        train_on_local_processes(procs, cfg, dataset, out, False, None)
    return statistics.median(float(r["images_per_second"]) for r in read_metrics(out / "metrics.csv")[1:])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="embedded:lite0")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224])
    parser.add_argument("--batch", type=int, default=32, help="global batch")
    parser.add_argument("--n-train", type=int, default=256, help="training images (5 %% more are drawn for validation)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--amp",
        default="bf16",
        choices=list(AMP),
        help="autocast dtype on CUDA (imgclf itself picks bf16 where supported)",
    )
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile (train.compile=true)")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: imgclf's choice)")
    parser.add_argument(
        "--epochs", type=int, default=3, help="end-to-end epochs; epoch 1 (cache fill, worker start) is left out"
    )
    parser.add_argument("--raw-steps", type=int, default=8)
    parser.add_argument("--raw-warmup", type=int, default=2)
    parser.add_argument(
        "--procs",
        type=int,
        nargs="*",
        default=[],
        help="strong scaling: also run on these numbers of processes in a process group",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA device is available")
    if args.device == "cpu" and args.channels_last:
        print("note: imgclf applies channels_last on CUDA only; the raw rate uses it anyway", file=sys.stderr)

    dataset = synthetic_dataset(int(round(args.n_train / 0.95)), 0)
    result: dict = {
        "machine": machine(),
        "command": "bench/train_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "setup": {
            "weights": args.weights,
            "batch": args.batch,
            "train_images": args.n_train,
            "device": args.device,
            "amp": args.amp if args.device == "cuda" else "none (CPU)",
            "channels_last": args.channels_last,
            "compile": args.compile,
            "workers": args.workers,
        },
        "sizes": {},
    }
    for size in dict.fromkeys(args.sizes):
        raw = raw_rate(args, size)
        e2e = e2e_rate(args, size, dataset)
        entry = {
            "raw_images_per_second": round(raw, 1),
            "e2e_images_per_second": round(e2e, 1),
            "e2e / raw": round(e2e / raw, 3),
            "goal e2e >= 0.9 raw": e2e >= 0.9 * raw,
        }
        if args.procs:
            scaling = {p: e2e_rate(args, size, dataset, procs=p) for p in args.procs}
            base = scaling[min(scaling)]
            entry["torchrun_images_per_second"] = {str(p): round(v, 1) for p, v in scaling.items()}
            entry["speedup_vs_fewest_procs"] = {str(p): round(v / base, 3) for p, v in scaling.items()}
        result["sizes"][str(size)] = entry
    report("training speed", result, args.json)
    return result


if __name__ == "__main__":
    main()
