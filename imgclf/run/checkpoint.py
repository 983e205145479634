"""Checkpoint I/O. ``best.safetensors`` holds weights only; ``last.pt`` holds everything a resume needs.

``last.pt`` is written with plain containers, numbers, strings and tensors only, and read back with
``torch.load(weights_only=True)``: a run directory from someone else can never run code on resume.
"""

from __future__ import annotations

import errno
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from imgclf.errors import RunDirError
from imgclf.io import atomic_path, atomic_stream

TRAINING_STATE_KEYS = ("model", "optimizer", "scheduler", "scaler", "early_stopping", "epoch")


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of the bare model (unwrapping DDP / torch.compile wrappers)."""
    inner = getattr(model, "module", model)
    inner = getattr(inner, "_orig_mod", inner)
    return inner.state_dict()


def save_weights(
    model: torch.nn.Module | dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None
) -> None:
    state = model if isinstance(model, dict) else model_state(model)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except SafetensorError as exc:
            # safetensors reports a full disk as "Error while serializing: IoError(Os { code: 28, kind: StorageFull ...})".
            if "StorageFull" in str(exc) or "QuotaExceeded" in str(exc):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp)) from None
            raise


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file; a damaged or foreign file is a one-line RunDirError."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise RunDirError(f"{path} is not a readable weights file ({_first_line(exc)})") from None


def save_training_state(path: Path, state: dict[str, Any]) -> None:
    """Atomically write the resume checkpoint (model, optimiser, scheduler, scaler, early stopping, epoch).

    No RNG state: every epoch re-seeds from (seed, epoch), so a resumed epoch draws what it would have."""
    with atomic_stream(path) as fh:  # a full disk is then a one-line DiskFullError, not torch's "enforce fail"
        torch.save(state, fh)


def load_training_state(path: Path) -> dict[str, Any]:
    """Read ``last.pt`` without unpickling arbitrary objects; anything else is a one-line RunDirError."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError, IndexError) as exc:
        raise RunDirError(f"{path} is not a resume checkpoint imgclf wrote ({_first_line(exc)})") from None
    missing = [k for k in TRAINING_STATE_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise RunDirError(f"{path} is not a resume checkpoint imgclf wrote (no {missing[0]!r} entry)")
    return state


def _first_line(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
