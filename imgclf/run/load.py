"""Load a finished run directory back into a model ready for inference."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from imgclf.config import Config, build_config, read_yaml
from imgclf.data.transforms import Preprocessing
from imgclf.errors import RunDirError, WeightsError
from imgclf.models.backbones import create_model
from imgclf.models.classifier import ImageClassifier
from imgclf.run.checkpoint import load_weights
from imgclf.run.rundir import RunDir
from imgclf.runtime import resolve_device, use_channels_last
from imgclf.task import Task


@dataclass
class LoadedRun:
    run: RunDir
    cfg: Config
    classes: list[str]
    pre: Preprocessing
    model: ImageClassifier
    temperature: float = 1.0
    task: Task = field(default_factory=Task)  # what the outputs mean (task.json; multiclass without one)
    decision: list[float] | None = None  # tuned thresholds or cut-points that paid (decisions.json), else None


def load_run(run_dir: Path, device: torch.device | str = "auto") -> LoadedRun:
    """Rebuild the model from ``config.yaml`` and load ``checkpoints/best.safetensors`` onto ``device``
    (``auto``: CUDA when there is one)."""
    device = resolve_device(device)
    run = RunDir(Path(run_dir))
    run.require("config", "classes", "preprocessing", "best")
    cfg = build_config(read_yaml(run.config))
    classes = run.read_classes()
    pre = Preprocessing.from_dict(run.read_preprocessing())
    # The checkpoint replaces every weight, so skip loading the pretrained source again.
    model_cfg = cfg.model.model_copy(update={"weights": "checkpoint"})
    model, _ = create_model(model_cfg, len(classes))
    try:
        model.load_state_dict(load_weights(run.best))
    except (RuntimeError, OSError, ValueError) as exc:
        raise WeightsError(f"{run.best} does not fit the model in {run.config}: {str(exc).splitlines()[0]}") from None
    model.to(device).eval()
    if use_channels_last(device, cfg.train.channels_last):
        model.to(memory_format=torch.channels_last)
    return LoadedRun(run, cfg, classes, pre, model, run.temperature(), run.read_task(), run.decision())


def require_run(run_dir: Path) -> RunDir:
    run = RunDir(Path(run_dir))
    if not run.root.is_dir():
        raise RunDirError(f"run directory not found: {run.root}")
    return run
