"""What the speed benchmarks share: the machine description, a synthetic dataset, a ready run directory.

Data lives under ``bench/.data/`` (git-ignored) and is generated once per size.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"


def machine() -> dict[str, Any]:
    """CPU model and cores (from lscpu), GPU if any, library versions and the date: the header of every figure."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        cpu = fields.get("Model name", cpu).strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu,
        "cores": cores,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def synthetic_photo(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """Photo-like content (smooth colour field, blurred shapes, sensor-like noise), so JPEG decode costs what a photo costs."""
    rng = np.random.default_rng(seed)
    w, h = size
    field = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)
    field = field.filter(ImageFilter.GaussianBlur(2))
    arr = np.asarray(field, dtype=np.int16) + rng.integers(-12, 13, (h, w, 3), dtype=np.int16)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def _write_one(args: tuple[Path, int]) -> None:
    path, seed = args
    synthetic_photo(seed).save(path, quality=90)


def synthetic_dataset(n_train: int, n_test: int, classes: int = 10) -> Path:
    """``bench/.data/photos-<train>-<test>/``: train/<class>/*.jpg, test/*.jpg and sample_submission.csv (640x480 JPEGs)."""
    root = DATA / f"photos-{n_train}-{n_test}"
    done = root / ".complete"
    if done.is_file():
        return root
    jobs: list[tuple[Path, int]] = []
    for i in range(n_train):
        folder = root / "train" / f"class{i % classes:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        jobs.append((folder / f"img{i:05d}.jpg", i))
    (root / "test").mkdir(parents=True, exist_ok=True)
    ids = [f"t{i:05d}.jpg" for i in range(n_test)]
    jobs += [(root / "test" / name, 10_000_000 + i) for i, name in enumerate(ids)]
    with ProcessPoolExecutor() as pool:
        list(pool.map(_write_one, jobs, chunksize=32))
    (root / "sample_submission.csv").write_text("id,label\n" + "".join(f"{i},0\n" for i in ids))
    done.touch()
    return root


def untrained_run(weights: str, image_size: int, classes: int = 10) -> Path:
    """A run directory holding ``weights`` with a fresh head: what ``predict``/``export`` need, without training.

    Speed does not depend on the head's values, so a benchmark need not spend CPU minutes training.
    """
    from imgclf.config import load_config, save_config
    from imgclf.data.transforms import Preprocessing
    from imgclf.io import atomic_write_json
    from imgclf.models.backbones import create_model, data_config
    from imgclf.run.checkpoint import save_weights
    from imgclf.run.rundir import RunDir

    run = RunDir(DATA / "runs" / f"untrained-{weights.replace(':', '-')}-{image_size}")
    if run.best.is_file():
        return run.root
    cfg = load_config(overrides=[f"model.weights={weights}", f"data.image_size={image_size}", "tracking.enabled=false"])
    model, _ = create_model(cfg.model, classes)
    run.root.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run.config)
    atomic_write_json(run.classes, [f"class{i:02d}" for i in range(classes)])
    atomic_write_json(run.preprocessing, Preprocessing.from_model(data_config(model), image_size).to_dict())
    atomic_write_json(run.info, {"dataset": "synthetic", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    save_weights(model, run.best, {"epoch": "0"})
    return run.root


def report(title: str, result: dict[str, Any], json_out: Path | None) -> None:
    """Print the figures (and write them as JSON when asked): benchmarks are scripts, so they print."""
    print(f"## {title}")
    print(json.dumps(result, indent=2))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2) + "\n")
