"""Terminal output: a console that masks secrets, logging set-up, and the training and prediction progress bars (the
CLI's, and the Python API's with ``progress=True``).

Everything shown passes through :func:`imgclf.secrets.redact`: text given to ``print`` before rich
renders it (rich may fold a long line inside a secret), log records through the redaction filter.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from imgclf.secrets import install_log_redaction, redact
from imgclf.training.callbacks import Callback


#: Widest a table is drawn when the output is not a terminal: its content decides below that.
MAX_PIPED_WIDTH = 1000


class RedactingConsole(Console):
    """A rich Console that masks secrets in the text it is given to print.

    Piped into a file or a notebook cell, rich would draw at 80 columns and cut a wide table's cells
    (``setti…``); there is no screen to fit there, so a table is drawn as wide as its content.
    """

    def print(self, *objects: Any, **kwargs: Any) -> None:
        objects = tuple(redact(o) if isinstance(o, str) else o for o in objects)
        wide = [self._natural_width(o) for o in objects if isinstance(o, Table)] if not self.is_terminal else []
        if not wide or max(wide) <= self.width:
            super().print(*objects, **kwargs)
            return
        previous = self._width  # print(width=) only narrows: widen the console for this one call
        self.width = max(wide)
        try:
            super().print(*objects, **kwargs)
        finally:
            self._width = previous

    def _natural_width(self, table: Table) -> int:
        return min(Measurement.get(self, self.options.update_width(MAX_PIPED_WIDTH), table).maximum, MAX_PIPED_WIDTH)


console = RedactingConsole()
err_console = RedactingConsole(stderr=True)


class SayOnce(logging.Filter):
    """Drops a repeat of a record logged with ``extra={"once": True}``: a fact of the whole command (the blocklist in
    force, the frozen layers) that the library states each time it builds a fit, and a budget run builds several.
    The handler lives for one command, so each such line shows once per command."""

    def __init__(self) -> None:
        super().__init__()
        self.said: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "once", False):
            return True
        message = record.getMessage()
        if message in self.said:
            return False
        self.said.add(message)
        return True


def setup_logging(verbose: bool = False) -> None:
    handler = RichHandler(console=err_console, show_time=False, show_path=False, markup=False, rich_tracebacks=False)
    handler.addFilter(SayOnce())
    root = logging.getLogger("imgclf")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
    # Library warnings (warnings.warn) go through logging too, so they are redacted like the rest.
    logging.captureWarnings(True)
    install_log_redaction()


class RichTrainingProgress(Callback):
    """A training callback: a progress bar per epoch, then one line with the epoch's metrics."""

    def __init__(self, out: Console | None = None):
        self.console = out or err_console
        self._progress: Progress | None = None
        self._task = None

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self._progress = Progress(
            TextColumn(f"epoch {epoch}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=steps, loss="-")

    def on_train_batch_end(self, epoch: int, step: int, loss: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=1, loss=f"{loss:.3f}")

    def on_epoch_end(self, row: dict[str, Any]) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self.console.print(epoch_line(row), highlight=False)


def epoch_line(row: dict[str, Any]) -> str:
    """One epoch's metrics; the validation part only when the epoch was validated (no ``nan`` without a split)."""
    val = row.get("val_loss")
    validated = isinstance(val, (int, float)) and math.isfinite(val)
    own = next((k for k in row if k.startswith("val_") and k not in ("val_loss", "val_accuracy")), None)
    return (
        f"epoch {row['epoch']:>3}  lr {row['lr']:.2e}  train loss {row['train_loss']:.4f}{_acc(row, 'train_accuracy')}  "
        + (f"val loss {val:.4f}{_acc(row, 'val_accuracy')}  " if validated else "")
        + (f"{own[4:]} {row[own]:.4f}  " if validated and own and _finite(row[own]) else "")
        + f"{row['epoch_seconds']:.1f}s ({row['images_per_second']:.0f} img/s)"
    )


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _acc(row: dict[str, Any], key: str) -> str:
    """`` acc 0.9123``, or nothing where there is no class accuracy (label sets, values)."""
    return f" acc {row[key]:.4f}" if _finite(row.get(key)) else ""


class RichPredictProgress:
    """The progress bar of ``predict``: images through the model (a TTA view counts as one more); without a
    known total (adaptive TTA decides per image) it counts passes and shows the time."""

    def __init__(self, out: Console | None = None):
        self.console = out or err_console
        self._progress: Progress | None = None
        self._task = None

    def start(self, total: int | None) -> None:
        self._progress = Progress(
            TextColumn("predicting"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("forward passes"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task("predict", total=total)

    def advance(self, images: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=images)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
