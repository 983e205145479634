"""The run directory package: file names, validated readers, checkpoint I/O and loading a run."""

from imgclf.run.checkpoint import load_training_state, load_weights, save_training_state, save_weights
from imgclf.run.rundir import EvalDir, RunDir, read_metrics, read_run_json, write_metrics

__all__ = [
    "EvalDir", "RunDir", "load_training_state", "load_weights", "read_metrics", "read_run_json",
    "save_training_state", "save_weights", "write_metrics",
]
