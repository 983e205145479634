"""The run directory package: file names, validated readers, checkpoint I/O and loading a run."""

from typing import Any

from imgclf.run.rundir import EvalDir, RunDir, read_metrics, read_run_json, write_metrics

__all__ = [
    "EvalDir",
    "RunDir",
    "load_training_state",
    "load_weights",
    "read_metrics",
    "read_run_json",
    "save_training_state",
    "save_weights",
    "write_metrics",
]

_CHECKPOINT_IO = ("load_training_state", "load_weights", "save_training_state", "save_weights")


def __getattr__(name: str) -> Any:
    # Checkpoint I/O imports torch: on first use, so reading a run's files (RunDir) stays light.
    if name not in _CHECKPOINT_IO:
        raise AttributeError(f"module 'imgclf.run' has no attribute {name!r}")
    from imgclf.run import checkpoint

    return getattr(checkpoint, name)
