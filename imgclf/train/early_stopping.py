"""Early stopping on a validation metric, with state that survives a resume."""

from __future__ import annotations

from dataclasses import asdict, dataclass


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
        improved = self.best is None or (
            value > self.best + self.min_delta if self.mode == "max" else value < self.best - self.min_delta
        )
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
