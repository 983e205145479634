"""The one way to plug into the training loop: callbacks with five named hooks.

A callback defines any of these (the others are no-ops); progress bars, experiment tracking,
sweep pruning and tests are all callbacks::

    class PrintLoss(Callback):
        def on_train_batch_end(self, epoch, step, loss):
            print(epoch, step, loss)

    fit(cfg, dataset, out, callbacks=[PrintLoss()])

Epochs and steps count from 1, like the ``epoch`` column of ``metrics.csv``. Under DDP the
callbacks run in rank 0 only. A hook may raise (e.g. ``optuna.TrialPruned``) to end training; a callback
that sets ``stop_training = True`` (checked after each ``on_epoch_end``) ends it like early stopping
instead: the epochs so far are kept and the summary is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any


class Callback:
    """No-op base: subclass and override the hooks you need (duck-typed objects work too)."""

    def on_fit_start(self, cfg: Any, run_dir: Path, info: dict[str, Any]) -> None: ...

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None: ...

    def on_train_batch_end(self, epoch: int, step: int, loss: float) -> None: ...

    def on_epoch_end(self, row: dict[str, Any]) -> None: ...

    def on_fit_end(self, summary: dict[str, Any], run_dir: Path) -> None: ...


HOOKS = ("on_fit_start", "on_epoch_start", "on_train_batch_end", "on_epoch_end", "on_fit_end")


class CallbackList(Callback):
    """Calls each hook on every callback that defines it, in order."""

    def __init__(self, callbacks: Iterable[Any] = ()):
        self.callbacks = list(callbacks)

    def _call(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(*args)

    def stop_requested(self) -> bool:
        return any(getattr(cb, "stop_training", False) for cb in self.callbacks)

    def on_fit_start(self, cfg: Any, run_dir: Path, info: dict[str, Any]) -> None:
        self._call("on_fit_start", cfg, run_dir, info)

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self._call("on_epoch_start", epoch, epochs, steps)

    def on_train_batch_end(self, epoch: int, step: int, loss: float) -> None:
        self._call("on_train_batch_end", epoch, step, loss)

    def on_epoch_end(self, row: dict[str, Any]) -> None:
        self._call("on_epoch_end", row)

    def on_fit_end(self, summary: dict[str, Any], run_dir: Path) -> None:
        self._call("on_fit_end", summary, run_dir)
