"""``cv --refit``: one more run on every training image, for the epoch count the folds chose.

The refit run has no validation images, so nothing in it can pick a best epoch or stop early:
it trains exactly ``epochs`` epochs (the folds' median best epoch) with early stopping off, and
its final weights are the model. Its ``summary.json`` says so (``"refit": true``,
``"epochs_from": "cv median best epoch"``, ``"validation": null``).

Why the final weights are copied by hand: the training loop keeps ``best.safetensors`` from the
epoch with the best validation score; with no validation every score is NaN, so it keeps the
first epoch's weights. Here the last epoch's model state (``checkpoints/last.pt``) replaces them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from imgclf.config import Config, build_config, read_yaml, with_overrides
from imgclf.io import atomic_path, atomic_write_json, read_json

log = logging.getLogger("imgclf")

EPOCHS_FROM = "cv median best epoch"


def refit_config(cfg: Config, split_file: Path, epochs: int) -> Config:
    """Every image in training, ``epochs`` epochs, early stopping off (there is nothing to stop on)."""
    return with_overrides(cfg, {
        "data.split_file": str(Path(split_file).resolve()),
        "train.epochs": int(epochs),
        "train.patience": None,
        "train.warmup_epochs": min(cfg.train.warmup_epochs, max(int(epochs) - 1, 0)),
    })


def use_final_weights(run_dir: Path) -> None:
    """Replace ``best.safetensors`` with the last epoch's weights from ``checkpoints/last.pt``."""
    from imgclf.train.checkpoint import load_training_state

    state = load_training_state(run_dir / "checkpoints" / "last.pt")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state["model"].items()}
    with atomic_path(run_dir / "checkpoints" / "best.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"epoch": str(int(state["epoch"]) + 1)})


def mark_refit(run_dir: Path, epochs: int, fold_best_epochs: list[int]) -> dict[str, Any]:
    """Record in the refit run's summary.json what it is and that it has no validation of its own."""
    summary = read_json(run_dir / "summary.json")
    summary.update({
        "refit": True,
        "epochs_from": EPOCHS_FROM,
        "fold_best_epochs": fold_best_epochs,
        "best_epoch": epochs,
        "validation": None,
        "validation_note": "trained on every training image: no validation of its own; see the CV folder's OOF scores",
        "val_accuracy": None, "val_loss": None, "val_macro_f1": None, "best_epoch_val_accuracy": None,
    })
    atomic_write_json(run_dir / "summary.json", summary)
    return summary


def run_refit(cfg: Config, dataset: Path, out: Path, epochs: int, train_one) -> dict[str, Any]:
    """Train (or resume, or skip when done) ``out/refit``; return its entry for the CV summary."""
    from imgclf.experiments.cv import REFIT_NAME, fold_state

    run_dir = out / REFIT_NAME
    folds = read_json(out / "cv.json")["fold_dirs"]
    fold_best = [int(read_json(out / f / "summary.json").get("best_epoch") or 0) for f in folds]
    state = fold_state(run_dir)
    if state != "done":
        if state == "resume":
            run_cfg = build_config(read_yaml(run_dir / "config.yaml"))
        else:
            run_cfg = refit_config(cfg, out / "splits" / "all_train.csv", epochs)
        log.info("refit: training %s on every image for %d epoch(s) (%s)", run_dir, epochs, EPOCHS_FROM)
        train_one(run_cfg, dataset, run_dir, state == "resume", REFIT_NAME)
    summary = read_json(run_dir / "summary.json")
    if not summary.get("refit"):  # a kill between the end of training and this step: finish it now
        use_final_weights(run_dir)
        summary = mark_refit(run_dir, epochs, fold_best)
    return {
        "refit": True,
        "run": REFIT_NAME,
        "epochs": epochs,
        "epochs_from": EPOCHS_FROM,
        "fold_best_epochs": fold_best,
        "validation": None,
        "note": "no validation of its own: judge it by the CV scores above",
        "train_images": summary.get("train_images"),
        "train_seconds": summary.get("train_seconds"),
    }
