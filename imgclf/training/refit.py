"""Refit: one more model on every training image, for the epoch count that validation chose.

A held-out split tells how long to train; once it has, the held-out images are worth more as
training data. The refit run is an ordinary run directory (``RUN/refit/``) trained with
``data.val_fraction=0`` for exactly ``epochs`` epochs (no validation, so no early stopping), and its
final weights are the model. It takes the parent's temperature (same recipe, so nearly the same
calibration) and its summary.json says what it is and that it has no validation of its own.

    summary = refit(cfg, dataset, RunDir(run_dir), epochs=parent_summary["best_epoch"])
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from imgclf.config import Config, with_overrides
from imgclf.io import atomic_write_json
from imgclf.run.rundir import RunDir
from imgclf.training.loop import fit


def refit_config(cfg: Config, epochs: int) -> Config:
    """Every image in training, ``epochs`` epochs, early stopping off (there is nothing to stop on)."""
    return with_overrides(
        cfg,
        {
            "data.val_fraction": 0.0,
            "data.split_file": None,
            "train.epochs": int(epochs),
            "train.patience": None,
            "train.warmup_epochs": min(cfg.train.warmup_epochs, max(int(epochs) - 1, 0)),
        },
    )


def refit(
    cfg: Config,
    dataset: Path,
    out: RunDir,
    epochs: int,
    *,
    epochs_from: str,
    calibration_from: RunDir | None = None,
    resume: bool = False,
    callbacks: Iterable[Any] = (),
) -> dict[str, Any]:
    """Train ``out`` on every image of ``dataset`` for ``epochs`` epochs; return its summary."""
    summary = fit(refit_config(cfg, epochs), dataset, out.root, resume=resume, callbacks=callbacks, preflight=False)
    if calibration_from is not None and calibration_from.calibration.is_file():
        shutil.copyfile(calibration_from.calibration, out.calibration)
    summary.update(
        {
            "refit": True,
            "epochs_from": epochs_from,
            "temperature_from": str(calibration_from.root) if calibration_from is not None else None,
        }
    )
    atomic_write_json(out.summary, summary)
    return summary
