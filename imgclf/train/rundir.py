"""The run directory: the contract between training and every later stage.

config.yaml · metrics.csv · summary.json · split.csv · classes.json · preprocessing.json ·
environment.json · val_predictions.csv · checkpoints/{best.safetensors,last.pt}
"""

from __future__ import annotations

import csv
import io
import json
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgclf.errors import RunDirError
from imgclf.io import atomic_write_json, atomic_write_text

METRIC_COLUMNS = [
    "epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
    "epoch_seconds", "images_per_second", "trainable_params",
]


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def config(self) -> Path: return self.root / "config.yaml"
    @property
    def metrics(self) -> Path: return self.root / "metrics.csv"
    @property
    def summary(self) -> Path: return self.root / "summary.json"
    @property
    def split(self) -> Path: return self.root / "split.csv"
    @property
    def classes(self) -> Path: return self.root / "classes.json"
    @property
    def preprocessing(self) -> Path: return self.root / "preprocessing.json"
    @property
    def environment(self) -> Path: return self.root / "environment.json"
    @property
    def val_predictions(self) -> Path: return self.root / "val_predictions.csv"
    @property
    def info(self) -> Path: return self.root / "run.json"
    @property
    def best(self) -> Path: return self.root / "checkpoints" / "best.safetensors"
    @property
    def last(self) -> Path: return self.root / "checkpoints" / "last.pt"

    def require(self, *names: str) -> None:
        """Raise RunDirError naming the first missing file (``names`` are property names)."""
        if not self.root.is_dir():
            raise RunDirError(f"run directory not found: {self.root}")
        for name in names:
            path = getattr(self, name)
            if not path.exists():
                raise RunDirError(f"{self.root} is not a finished run: {path.relative_to(self.root)} is missing")

    def read_classes(self) -> list[str]:
        self.require("classes")
        return json.loads(self.classes.read_text())

    def read_info(self) -> dict[str, Any]:
        self.require("info")
        return json.loads(self.info.read_text())

    def read_summary(self) -> dict[str, Any]:
        self.require("summary")
        return json.loads(self.summary.read_text())


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite metrics.csv atomically (a kill never leaves half a row)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [{k: _num(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def _num(text: str) -> Any:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment_info(device: str) -> dict[str, Any]:
    import importlib.metadata as md

    versions = {}
    for pkg in ("imgclf", "torch", "torchvision", "timm", "numpy", "pillow", "pandas", "scikit-learn", "mlflow", "optuna", "onnxruntime"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    import torch

    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "device": device,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_count": __import__("os").cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "git_commit": git_commit(),
    }
    return info


def write_environment(path: Path, device: str) -> None:
    atomic_write_json(path, environment_info(device))
