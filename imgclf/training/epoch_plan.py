"""How long a run trains: the one owner of its length, which is also the learning-rate multiplier that anneals by it.

``train.epochs`` is the user's maximum; the plan is where the run ends now. ``train.time_limit`` moves that end after
each epoch (:mod:`imgclf.training.time_plan`), a resume restores it with the checkpoint, and the loop, the checkpointer
and the progress bar read it.
"""

from __future__ import annotations

import math
from typing import Any

from imgclf.training.schedule import warmup_cosine


class EpochPlan:
    """A run of ``epochs`` epochs of ``updates_per_epoch`` optimiser updates, the last one possibly partial, with a
    linear warm-up of ``warmup_updates``, as the ``LambdaLR`` multiplier (:func:`warmup_cosine` over the plan). Its
    state is ints only: ``LambdaLR.state_dict`` saves a callable object's ``__dict__``, so the checkpoint holds the
    plan and ``load_state_dict`` restores it.

    >>> plan = EpochPlan(updates_per_epoch=10, epochs=8, warmup_updates=5)
    >>> plan.end_at(4, 0.5); plan.planned_epochs, plan.updates_in(3), plan.updates_in(4), round(plan(35), 3)
    (3.5, 10, 5, 0.01)
    """

    def __init__(self, updates_per_epoch: int, epochs: int, warmup_updates: int):
        self.updates_per_epoch, self.warmup_updates = int(updates_per_epoch), int(warmup_updates)
        self.end_at(epochs)

    def __call__(self, step: int) -> float:
        return warmup_cosine(step, self.total_updates, self.warmup_updates)

    def end_at(self, epochs: int, fraction: float = 1.0) -> None:
        """End the run with epoch ``epochs`` (from 1), trained on ``fraction`` of its batches (at least one update);
        the cosine then anneals there."""
        self.epochs = int(epochs)
        self.total_updates = (self.epochs - 1) * self.updates_per_epoch + max(
            1, math.ceil(fraction * self.updates_per_epoch)
        )

    def updates_in(self, epoch: int) -> int:
        """Optimiser updates epoch ``epoch`` (from 1) makes: ``updates_per_epoch``, fewer in a partial last epoch."""
        return min(self.updates_per_epoch, self.total_updates - (epoch - 1) * self.updates_per_epoch)

    @property
    def planned_epochs(self) -> float:
        """Where the run ends, in epochs: 3.5 = after half of epoch 4 (a partial last epoch)."""
        return round(self.total_updates / self.updates_per_epoch, 3)


def upgraded(saved: dict[str, Any], updates_per_epoch: int) -> dict[str, Any]:
    """An :class:`EpochPlan`'s state from a ``last.pt`` written before there was one: its ``WarmupCosine`` multiplier
    saved ``total_steps`` and ``warmup_steps``, and the run ended with the epoch that holds the last update.

    >>> upgraded({"total_steps": 35, "warmup_steps": 5}, 10)
    {'updates_per_epoch': 10, 'epochs': 4, 'warmup_updates': 5, 'total_updates': 35}
    """
    if "total_steps" not in saved:
        return saved
    total = int(saved["total_steps"])
    return {
        "updates_per_epoch": updates_per_epoch,
        "epochs": math.ceil(total / updates_per_epoch),
        "warmup_updates": int(saved["warmup_steps"]),
        "total_updates": total,
    }
