"""Early stopping on a validation metric, with state that survives a resume. The same decision
keeps ``checkpoints/best.safetensors``: an epoch that improves the monitored value is the best."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from imgclf.eval.metrics import monitor_direction


@dataclass
class EarlyStopping:
    """Stop after ``patience`` epochs without an improvement larger than ``min_delta``.

    ``patience=None`` never stops (the full schedule runs) but still tracks the best epoch.

    >>> es = EarlyStopping(patience=2, mode="max")
    >>> [es.update(e, v) for e, v in enumerate([0.5, 0.6, 0.6, 0.59])]
    [True, True, False, False]
    >>> es.should_stop, es.best_epoch
    (True, 1)
    """

    patience: int | None
    mode: str = "max"
    min_delta: float = 0.0
    best: float | None = None
    best_epoch: int = -1
    bad_epochs: int = 0
    should_stop: bool = False

    def update(self, epoch: int, value: float) -> bool:
        """Record ``value`` for ``epoch``; return True when it is a new best."""
        if self.best is None or (math.isfinite(value) and not math.isfinite(self.best)):
            improved = True  # the first epoch is always kept; a defined value replaces an undefined (NaN) best
        elif not math.isfinite(value):
            improved = False  # an undefined metric (e.g. ROC AUC of one class) never improves
        else:
            improved = value > self.best + self.min_delta if self.mode == "max" else value < self.best - self.min_delta
        if improved:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
            if self.patience is not None and self.bad_epochs >= self.patience:
                self.should_stop = True
        return improved

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def stopper_for(train, task: str = "multiclass") -> EarlyStopping:
    """The early stopping a ``TrainConfig`` asks for: on ``train.monitored`` (``val_<train.metric>``
    unless ``train.monitor`` is set), in that metric's direction.

    >>> from imgclf.config import TrainConfig
    >>> stopper_for(TrainConfig(metric="log_loss")).mode
    'min'
    """
    return EarlyStopping(train.patience, monitor_direction(train.monitored, train.metric_k, task), train.min_delta)
