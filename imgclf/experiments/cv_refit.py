"""``cv --refit``: one more run on every training image, for the epoch count the folds chose.

The refit run is :mod:`imgclf.training.refit`'s: ``data.val_fraction=0``, exactly ``epochs`` epochs
(the folds' median best epoch), early stopping off, and its final weights are the model (with no
validation, the loop keeps the newest weights as best). Its ``summary.json`` says so
(``"refit": true``, ``"epochs_from": "cv median best epoch"``, ``"validation"``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from imgclf.config import Config
from imgclf.io import atomic_write_json
from imgclf.run.rundir import BlendDir, RunDir
from imgclf.run.specs import read_cv_spec
from imgclf.run.trust import run_config
from imgclf.training.refit import refit_config

log = logging.getLogger("imgclf")

EPOCHS_FROM = "cv median best epoch"


def mark_refit(run_dir: Path, epochs: int, fold_best_epochs: list[int]) -> dict[str, Any]:
    """Record in the refit run's summary.json what it is and where its epoch count came from."""
    run = RunDir(run_dir)
    summary = run.read_summary()
    summary.update({"refit": True, "epochs_from": EPOCHS_FROM, "fold_best_epochs": fold_best_epochs})
    atomic_write_json(run.summary, summary)
    return summary


def run_refit(cfg: Config, dataset: Path, out: Path, epochs: int, train_one) -> dict[str, Any]:
    """Train (or resume, or skip when done) ``out/refit``; return its entry for the CV summary."""
    target = RunDir(out).refit_run
    run_dir = target.root
    folds = read_cv_spec(BlendDir(out)).fold_dirs
    fold_best = [int(RunDir(f).read_summary().get("best_epoch") or 0) for f in folds]
    state = target.state()
    if state != "done":
        if state == "resume":
            run_cfg = run_config(RunDir(run_dir), cfg)
        else:
            run_cfg = refit_config(cfg, epochs)
        log.info("refit: training %s on every image for %d epoch(s) (%s)", run_dir, epochs, EPOCHS_FROM)
        train_one(run_cfg, dataset, run_dir, state == "resume", run_dir.name)
    summary = RunDir(run_dir).read_summary()
    if not summary.get("refit"):  # also after a kill between the end of training and this step
        summary = mark_refit(run_dir, epochs, fold_best)
    return {
        "refit": True,
        "run": run_dir.name,
        "epochs": epochs,
        "epochs_from": EPOCHS_FROM,
        "fold_best_epochs": fold_best,
        "validation": None,
        "note": "no validation of its own: judge it by the CV scores above",
        "train_images": summary.get("train_images"),
        "train_seconds": summary.get("train_seconds"),
    }
