"""A training process that kills itself at an exact moment; the crash tests run it as a child.

    python tests/crash_child.py DATASET OUT step EPOCH STEP [KEY=VALUE ...]
        SIGKILL from the per-step callback after optimiser step STEP of epoch EPOCH (both from 1)
    python tests/crash_child.py DATASET OUT checkpoint EPOCH 0 [KEY=VALUE ...]
        SIGKILL in the middle of writing checkpoints/last.pt for epoch EPOCH (half the bytes written)

No progress output is parsed and nothing is timed: the moment is chosen by the process itself.
"""

from __future__ import annotations

import io
import os
import signal
import sys
from pathlib import Path

import torch


class KillAt:
    def __init__(self, epoch: int, step: int):
        self.epoch, self.step = epoch, step

    def on_train_batch_end(self, epoch: int, step: int, loss: float) -> None:
        if (epoch, step) == (self.epoch, self.step):
            os.kill(os.getpid(), signal.SIGKILL)


def die_while_saving(epoch: int) -> None:
    """Make the resume checkpoint of ``epoch`` (from 1) stop half-way through its write."""
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("epoch") == epoch - 1 and "optimizer" in obj:
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            half = buffer.getvalue()[: len(buffer.getvalue()) // 2]
            if hasattr(f, "write"):  # imgclf hands torch an open file (to keep the OSError of a full disk)
                f.write(half)
                f.flush()
            else:
                Path(f).write_bytes(half)
            os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, f, *args, **kwargs)

    torch.save = save


def main(argv: list[str]) -> None:
    from imgclf.config import load_config
    from imgclf.training.loop import fit

    dataset, out, mode, epoch, step, *overrides = argv
    torch.set_num_threads(1)
    callbacks = []
    if mode == "step":
        callbacks.append(KillAt(int(epoch), int(step)))
    elif mode == "checkpoint":
        die_while_saving(int(epoch))
    else:
        raise SystemExit(f"unknown mode {mode}")
    fit(load_config(None, overrides), Path(dataset), Path(out), callbacks=callbacks)


if __name__ == "__main__":
    main(sys.argv[1:])
