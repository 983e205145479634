"""Every checkpoint of a run, in one place: the best weights, the resume state, and what an
interrupted run says about them.

Only rank 0 writes. A kill at any moment leaves the previous ``last.pt`` intact (atomic rename);
the temporary file a killed write leaves behind is removed when the run starts again.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from imgclf.errors import ImgclfError
from imgclf.run.checkpoint import load_training_state, model_state, save_training_state, save_weights
from imgclf.run.rundir import RunDir

log = logging.getLogger("imgclf")


class TrainingInterrupted(ImgclfError):
    """Ctrl-C (or SIGTERM) during training: the last checkpoint is kept and the run can be resumed."""

    exit_code = 130


class Checkpointer:
    def __init__(self, run: RunDir, is_main: bool, every: int):
        self.run = run
        self.is_main = is_main
        self.every = every
        self.saved_epochs = 0  # epochs held by checkpoints/last.pt
        if is_main:
            for path in run.remove_stale_temporaries():
                log.info("removed %s, left by an interrupted write", path.name)

    def save_best(self, model: torch.nn.Module, epoch: int) -> None:
        if self.is_main:
            save_weights(model, self.run.best, {"epoch": str(epoch)})

    def due(self, epoch: int, end: int, stopping: bool) -> bool:
        """Whether epoch ``epoch`` of a run that ends with epoch ``end`` (its plan's) writes ``last.pt``."""
        return epoch % self.every == 0 or stopping or epoch == end

    def save_last(self, epoch: int, state: dict[str, Any]) -> None:
        """``epoch`` counts from 1; ``state`` is what :func:`resume_state` gives back."""
        if self.is_main:
            save_training_state(self.run.last, {**state, "epoch": epoch - 1})
        self.saved_epochs = epoch

    def load_last(self) -> dict[str, Any]:
        state = load_training_state(self.run.last)
        self.saved_epochs = int(state["epoch"]) + 1
        return state

    def interrupted(self, epoch: int) -> TrainingInterrupted:
        if not self.saved_epochs:
            return TrainingInterrupted(
                f"interrupted in epoch {epoch}, before the first checkpoint: nothing to resume, start the run again"
            )
        return TrainingInterrupted(
            f"interrupted in epoch {epoch}; checkpoints/last.pt holds epoch {self.saved_epochs} — "
            f"continue with: imgclf train --resume {self.run.root}"
        )


def training_state(model, optimizer, scheduler, amp, stopper, config: dict[str, Any]) -> dict[str, Any]:
    """The resume state: plain containers and tensors only (``torch.load(weights_only=True)`` reads it)."""
    return {
        "model": model_state(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": amp.state_dict(),
        "early_stopping": stopper.state_dict(),
        "config": config,
    }
