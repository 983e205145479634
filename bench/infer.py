"""Inference speed: ``predict`` end to end from image files vs the raw model on ready tensors,
eager PyTorch vs ONNX Runtime.

Four rates, images per second, for one model (default ``embedded:lite0`` at 224 px, batch 32):

* raw torch — the run's forward (``tta_runner.model_forward``: the run's autocast, logits back on the host) under
  ``torch.inference_mode`` on a pre-made random batch already on the device;
* raw onnx — the run's ONNX export in ONNX Runtime on the same batch;
* end to end torch / onnx — :func:`imgclf.infer.predict.predict_paths` on ``--n`` JPEG files
  (640x480, photo-like) with the resize cache warm: decode cached image → eval transform →
  batch → model → softmax. A first, cold pass (which fills the cache) is reported separately.

Goals (issue 7): end to end loses at most 10 % to raw; ONNX Runtime at least 1.3x eager PyTorch.
The model is the embedded ImageNet backbone with an untrained 10-class head (speed does not
depend on the head's values).

Usage::

    .venv/bin/python bench/infer.py                          # the real run: 512 images, 3 repeats
    .venv/bin/python bench/infer.py --n 64 --repeats 1       # a quick check
    .venv/bin/python bench/infer.py --device cuda --engines torch --batch 128 --workers 4   # on a GPU
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, report, synthetic_dataset, untrained_run  # noqa: E402

from imgclf.infer.export import OnnxEngine, default_export_path, export_onnx  # noqa: E402
from imgclf.infer.predict import predict_paths  # noqa: E402
from imgclf.infer.tta_runner import model_forward  # noqa: E402
from imgclf.run.load import load_run  # noqa: E402
from imgclf.runtime import resolve_device  # noqa: E402


def raw_rate(forward, batch: torch.Tensor, iters: int, warmup: int = 2) -> float:
    with torch.inference_mode():
        for _ in range(warmup):
            forward(batch)
        t0 = time.perf_counter()
        for _ in range(iters):
            forward(batch)
        return iters * batch.shape[0] / (time.perf_counter() - t0)


def e2e_rate(
    loaded, paths: list[Path], root: Path, batch: int, engine: str, workers: int | None, device: torch.device
) -> float:
    pred = predict_paths(
        loaded, paths, root=root, batch_size=batch, num_workers=workers, engine=engine, calibrated=False, device=device
    )
    if len(pred.paths) != len(paths):
        raise RuntimeError(f"{len(paths) - len(pred.paths)} images were skipped")
    return len(paths) / pred.seconds


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="embedded:lite0")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--n", type=int, default=512, help="test images for the end-to-end rate")
    parser.add_argument("--iters", type=int, default=10, help="batches per raw-rate measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per rate; the median is reported")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: imgclf's choice)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when there is one), cpu or cuda")
    parser.add_argument("--engines", nargs="+", default=["torch", "onnx"], choices=["torch", "onnx"])
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    data = synthetic_dataset(0, args.n)
    run_dir = untrained_run(args.weights, args.size)
    loaded = load_run(run_dir, device)
    forwards = {"torch": model_forward(loaded, device)}
    if "onnx" in args.engines:
        onnx_path = default_export_path(run_dir, "onnx")
        if not onnx_path.is_file() or onnx_path.stat().st_mtime < loaded.run.best.stat().st_mtime:
            export_onnx(load_run(run_dir, "cpu"), onnx_path)
        forwards["onnx"] = OnnxEngine(onnx_path, device)
    paths = sorted((data / "test").glob("*.jpg"))
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)

    # The cold pass decodes the 640x480 JPEGs and fills the resize cache; later passes read it.
    cold = e2e_rate(loaded, paths, data, args.batch, "torch", args.workers, device)
    rates: dict[str, list[float]] = {f"{kind}_{e}": [] for e in args.engines for kind in ("raw", "e2e")}
    for _ in range(args.repeats):  # interleaved, so a noisy neighbour hurts every rate alike
        for e in args.engines:
            rates[f"raw_{e}"].append(raw_rate(forwards[e], x, args.iters))
            rates[f"e2e_{e}"].append(e2e_rate(loaded, paths, data, args.batch, e, args.workers, device))
    med = {k: statistics.median(v) for k, v in rates.items()}
    ratio = {f"e2e_{e} / raw_{e}": round(med[f"e2e_{e}"] / med[f"raw_{e}"], 3) for e in args.engines}
    if len(args.engines) == 2:
        ratio |= {
            "raw_onnx / raw_torch": round(med["raw_onnx"] / med["raw_torch"], 3),
            "e2e_onnx / e2e_torch": round(med["e2e_onnx"] / med["e2e_torch"], 3),
        }
    result = {
        "machine": machine(),
        "command": "bench/infer.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "setup": {
            "weights": args.weights,
            "size": args.size,
            "batch": args.batch,
            "images": args.n,
            "repeats": args.repeats,
            "raw_iters": args.iters,
            "workers": args.workers,
            "device": str(device),
        },
        "images_per_second": {k: round(v, 1) for k, v in med.items()} | {"e2e_torch_cold_cache": round(cold, 1)},
        "all_runs": {k: [round(r, 1) for r in v] for k, v in rates.items()},
        "ratios": ratio,
        "goals": {f"pipeline loses <= 10% ({e})": med[f"e2e_{e}"] >= 0.9 * med[f"raw_{e}"] for e in args.engines}
        | ({"onnx >= 1.3x eager (raw)": med["raw_onnx"] >= 1.3 * med["raw_torch"]} if len(args.engines) == 2 else {}),
    }
    report("inference speed", result, args.json)
    return result


if __name__ == "__main__":
    main()
