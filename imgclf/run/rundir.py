"""The run directory: the contract between training and every later stage.

:class:`RunDir` is the one place that names a run's files; everything else asks it::

    run = RunDir(Path("runs/lite0"))
    run.summary, run.best, run.eval.metrics      # paths
    run.read_summary(), run.read_calibration()   # validated readers: a damaged file is one RunDirError line

config.yaml · metrics.csv · summary.json · split.csv · classes.json · preprocessing.json ·
environment.json · run.json · val_predictions.csv · calibration.json · task.json · decisions.json ·
mlflow_run.json · report.html ·
recipe.json (``--budget``) · checkpoints/{best.safetensors,last.pt} · eval/ · export/
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgclf.errors import RunDirError
from imgclf.io import atomic_write_json, atomic_write_text

METRIC_COLUMNS = [
    "epoch",
    "lr",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "epoch_seconds",
    "images_per_second",
    "trainable_params",
    # CPU seconds of the training process's threads in the epoch's training pass (loader worker processes not
    # counted): unlike wall time, barely moved by other jobs on a shared machine.
    "epoch_cpu_seconds",
]
MAX_JSON_BYTES = 50 * 2**20  # run files are small; a larger one is not ours
_MAX_WRITER = 32
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")  # what timm's eval transforms know


@dataclass(frozen=True)
class EvalDir:
    """``eval/`` (or another folder given to ``evaluate --out``): the scores of one evaluation."""

    root: Path

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def per_class(self) -> Path:
        return self.root / "per_class.csv"

    @property
    def confusion_csv(self) -> Path:
        return self.root / "confusion_matrix.csv"

    @property
    def confusion_png(self) -> Path:
        return self.root / "confusion_matrix.png"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions.csv"

    @property
    def tta_compare_csv(self) -> Path:
        return self.root / "tta_compare.csv"

    @property
    def tta_compare_md(self) -> Path:
        return self.root / "tta_compare.md"


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def split(self) -> Path:
        return self.root / "split.csv"

    @property
    def classes(self) -> Path:
        return self.root / "classes.json"

    @property
    def preprocessing(self) -> Path:
        return self.root / "preprocessing.json"

    @property
    def environment(self) -> Path:
        return self.root / "environment.json"

    @property
    def val_predictions(self) -> Path:
        return self.root / "val_predictions.csv"

    @property
    def info(self) -> Path:
        return self.root / "run.json"

    @property
    def calibration(self) -> Path:
        return self.root / "calibration.json"

    @property
    def task(self) -> Path:
        return self.root / "task.json"

    @property
    def decisions(self) -> Path:
        return self.root / "decisions.json"

    @property
    def mlflow_run(self) -> Path:
        return self.root / "mlflow_run.json"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def submission(self) -> Path:
        return self.root / "submission.csv"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.safetensors"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def lock(self) -> Path:
        return self.root / ".imgclf.lock"

    @property
    def eval(self) -> EvalDir:
        return EvalDir(self.root / "eval")

    @property
    def export(self) -> Path:
        return self.root / "export"

    @property
    def refit_run(self) -> "RunDir":
        return RunDir(self.root / "refit")

    @property
    def recipe(self) -> Path:
        return self.root / "recipe.json"

    @property
    def ensemble_spec(self) -> Path:
        return self.root / "ensemble.json"  # train --budget with several models

    def member(self, n: int) -> "RunDir":
        """``train --budget``'s n-th final model (n >= 2): ``RUN/members/<n>``."""
        return RunDir(self.root / "members" / str(int(n)))

    def holds_run(self) -> bool:
        """True once training wrote a checkpoint or a summary here."""
        return self.summary.exists() or self.last.exists()

    def is_finished(self) -> bool:
        return self.summary.is_file()

    def state(self) -> str:
        """``done`` (summary.json), ``resume`` (a resume checkpoint and its config) or ``new``."""
        if self.is_finished():
            return "done"
        if self.last.is_file() and self.config.is_file():
            return "resume"
        return "new"

    def check_new(self) -> None:
        """A new run goes into a new or empty folder, or over a run of ours that never reached a checkpoint
        (nothing to resume: :meth:`clear_unfinished` then starts it again); never over a user's files."""
        if self.holds_run():
            raise RunDirError(
                f"run directory {self.root} already holds a run; choose another --out or use --resume {self.root}"
            )
        if self.root.exists() and not self.root.is_dir():
            raise RunDirError(f"--out {self.root} is a file, not a folder; choose a new folder")
        if (
            self.root.is_dir()
            and any(p.name != self.lock.name for p in self.root.iterdir())
            and not self.is_unfinished()
        ):
            raise RunDirError(f"--out {self.root} is not empty and holds no imgclf run; choose a new or empty folder")

    def writer(self) -> str | None:
        """The command named in the lock file (:class:`imgclf.run.lock.RunLock` writes it: ``train``, ``cv``,
        ``ensemble``); None without a lock, or for a lock from before the name was kept there."""
        try:
            with open(self.lock, "rb") as fh:
                text = fh.read(_MAX_WRITER + 1)
        except OSError:
            return None
        name = text.decode("ascii", "replace").strip()
        return name if name.isidentifier() and len(text) <= _MAX_WRITER else None

    def _started_files(self) -> tuple[Path, ...]:
        """What a training (or ``--budget``'s warm-up) writes before its first checkpoint."""
        return (
            self.lock,
            self.info,
            self.config,
            self.classes,
            self.preprocessing,
            self.environment,
            self.split,
            self.metrics,
            self.val_predictions,
            self.calibration,
            self.task,
            self.mlflow_run,
            self.checkpoints,
            self.recipe,
        )

    def is_unfinished(self) -> bool:
        """A run of ours killed before its first checkpoint: a lock, run.json or recipe.json says imgclf started it,
        nothing else is here but what a run writes before ``last.pt``, and neither ``last.pt`` nor a summary exists."""
        if (
            not self.root.is_dir()
            or self.holds_run()
            or not any(p.exists() for p in (self.lock, self.info, self.recipe))
        ):
            return False
        if self.writer() not in (None, "train"):
            return False
        known = {p.name for p in self._started_files()}
        stale = {p.name for p in self.remove_stale_temporaries(dry_run=True)}
        checkpoints = {p.name for p in self.checkpoints.iterdir()} if self.checkpoints.is_dir() else set()
        return {p.name for p in self.root.iterdir()} <= known | stale and checkpoints <= {self.best.name} | stale

    def clear_unfinished(self) -> None:
        """Remove what a run killed before its first checkpoint left (the lock stays), so a new start is clean."""
        if not self.is_unfinished():
            return
        self.remove_stale_temporaries()
        for path in self._started_files():
            if path == self.lock:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    def remove_stale_temporaries(self, dry_run: bool = False) -> list[Path]:
        """Delete the ``.NAME.*.tmp`` files a killed atomic write left behind (``dry_run``: only list them); return them."""
        stale = [
            p
            for folder in (self.root, self.checkpoints)
            if folder.is_dir()
            for p in folder.glob(".*.tmp")
            if p.is_file()
        ]
        for path in [] if dry_run else stale:
            path.unlink(missing_ok=True)
        return stale

    def require(self, *names: str) -> None:
        """Raise RunDirError naming the first missing file (``names`` are property names)."""
        if not self.root.is_dir():
            raise RunDirError(f"run directory not found: {self.root}")
        for name in names:
            path = getattr(self, name)
            if not path.exists():
                raise RunDirError(f"{self.root} is not a finished run: {path.relative_to(self.root)} is missing")

    def read_classes(self) -> list[str]:
        self.require("classes")
        return _class_list(self.classes)

    def read_info(self) -> dict[str, Any]:
        self.require("info")
        return _json_object(self.info)

    def read_dataset(self) -> Path:
        """The dataset run.json says the run trained on (a folder or a CSV list)."""
        dataset = self.read_info().get("dataset")
        if not isinstance(dataset, str) or not dataset.strip() or "\0" in dataset:
            raise RunDirError(
                f'{self.info} does not name the dataset the run trained on (a "dataset" path); pass DATASET'
            )
        return Path(dataset)

    def read_recipe(self) -> dict[str, Any]:
        self.require("recipe")
        return _json_object(self.recipe)

    def read_summary(self) -> dict[str, Any]:
        self.require("summary")
        return _json_object(self.summary)

    def read_preprocessing(self) -> dict[str, Any]:
        """preprocessing.json, checked: a positive size, three means and stds, a crop fraction in (0, 1]."""
        self.require("preprocessing")
        data = _json_object(self.preprocessing)
        ok = (
            _positive_int(data.get("image_size"))
            and all(
                isinstance(data.get(k), list) and len(data[k]) == 3 and all(_finite(v) for v in data[k])
                for k in ("mean", "std")
            )
            and all(_finite(v) and v > 0 for v in data.get("std") or [0])
            and data.get("interpolation") in INTERPOLATIONS
            and _finite(data.get("crop_pct"))
            and 0 < data["crop_pct"] <= 1
        )
        if not ok:
            raise RunDirError(
                f"{self.preprocessing} is not a valid preprocessing file (image_size, mean, std, "
                f"interpolation one of {', '.join(INTERPOLATIONS)}, crop_pct)"
            )
        return data

    def read_environment(self) -> dict[str, Any]:
        return _json_object(self.environment) if self.environment.is_file() else {}

    def read_mlflow_run(self) -> dict[str, Any]:
        return _json_object(self.mlflow_run) if self.mlflow_run.is_file() else {}

    def read_calibration(self) -> dict[str, Any]:
        """calibration.json, or {} when the run has none; the temperature must be a positive number."""
        if not self.calibration.is_file():
            return {}
        data = _json_object(self.calibration)
        t = data.get("temperature", 1.0)
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise RunDirError(f"{self.calibration}: temperature must be a positive number, not {str(t)[:40]!r}")
        return data

    def temperature(self) -> float:
        return float(self.read_calibration().get("temperature", 1.0))

    def read_task(self):
        """The run's :class:`imgclf.task.Task` (task.json); a run without one is multiclass."""
        from imgclf.task import Task

        if not self.task.is_file():
            return Task("multiclass", tuple(self.read_classes()))
        return Task.from_dict(_json_object(self.task), str(self.task))

    def read_decisions(self) -> dict[str, Any]:
        """decisions.json (per-label thresholds or ordinal cut-points tuned on held-out predictions), or {}."""
        return _json_object(self.decisions) if self.decisions.is_file() else {}

    def decision(self) -> list[float] | None:
        """The decision predict applies: the tuned values when they paid beyond their noise, else None (the
        metric's default: 0.5 per label, or grades at the midpoints)."""
        record = self.read_decisions()
        if not record.get("used"):
            return None
        values = record.get("values")
        if not isinstance(values, list) or not all(isinstance(v, (int, float)) for v in values):
            raise RunDirError(f"{self.decisions}: values must be a list of numbers")
        return [float(v) for v in values]

    def read_eval_metrics(self) -> dict[str, Any]:
        return _json_object(self.eval.metrics) if self.eval.metrics.is_file() else {}


@dataclass(frozen=True)
class BlendDir:
    """A folder of several runs blended into one prediction: a CV folder (``imgclf cv``) or an
    ensemble folder (``imgclf ensemble``). Both keep out-of-fold predictions and the class list."""

    root: Path

    @property
    def oof(self) -> Path:
        return self.root / "oof.csv"

    @property
    def classes(self) -> Path:
        return self.root / "classes.json"

    @property
    def task(self) -> Path:
        return self.root / "task.json"

    def read_task(self):
        """The blend's :class:`imgclf.task.Task` (task.json, written for label sets and values); else multiclass."""
        from imgclf.task import Task

        if not self.task.is_file():
            return Task("multiclass", tuple(self.read_classes()))
        return Task.from_dict(_json_object(self.task), str(self.task))

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def cv_spec(self) -> Path:
        return self.root / "cv.json"

    @property
    def cv_config(self) -> Path:
        return self.root / "cv_config.yaml"

    @property
    def folds(self) -> Path:
        return self.root / "folds.csv"

    @property
    def label_issues(self) -> Path:
        return self.root / "label_issues.csv"

    @property
    def ensemble_spec(self) -> Path:
        return self.root / "ensemble.json"

    @property
    def eval(self) -> EvalDir:
        return EvalDir(self.root / "eval")

    def fold(self, k: int) -> RunDir:
        return RunDir(self.root / f"fold_{k}")

    def read_summary(self) -> dict[str, Any]:
        return _json_object(self.summary)

    def read_classes(self) -> list[str]:
        return _class_list(self.classes)


def _class_list(path: Path) -> list[str]:
    classes = read_run_json(path)
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise RunDirError(f"{path} must be a JSON list of class names")
    if len(set(classes)) < len(classes):
        twice = next(c for i, c in enumerate(classes) if c in classes[:i])
        raise RunDirError(f"{path} names class {twice[:60]!r} twice; a class list names each class once")
    return classes


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 8192


def read_run_json(path: Path) -> Any:
    """A run file's JSON; unreadable, oversized or malformed content is one RunDirError line."""
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise RunDirError(f"{path} is larger than any file imgclf writes there")
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise RunDirError(f"{path} is not a valid run file ({reason})") from None


def read_run_csv(path: Path, required: tuple[str, ...] = (), **kwargs: Any):
    """A run file's CSV as a DataFrame; unreadable, empty or malformed content (or a missing required
    column) is one RunDirError line."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, **kwargs)
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise RunDirError(f"{path} is not a valid run file ({reason})") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise RunDirError(f"{path} is not a valid run file (no {missing[0]!r} column)")
    return frame


def _json_object(path: Path) -> dict[str, Any]:
    data = read_run_json(path)
    if not isinstance(data, dict):
        raise RunDirError(f"{path} must hold a JSON object")
    return data


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite metrics.csv atomically (a kill never leaves half a row)."""
    buf = io.StringIO()
    # A run scored with train.metric other than accuracy adds its val_<metric> column after val_accuracy.
    extra = [k for k in (rows[0] if rows else {}) if k.startswith("val_") and k not in METRIC_COLUMNS]
    at = METRIC_COLUMNS.index("val_accuracy") + 1
    # Progressive resizing (data.start_size) adds each epoch's training size at the end.
    tail = ["train_size"] if rows and "train_size" in rows[0] else []
    writer = csv.DictWriter(
        buf, fieldnames=[*METRIC_COLUMNS[:at], *extra, *METRIC_COLUMNS[at:], *tail], extrasaction="ignore"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return [{k: _num(v) for k, v in row.items()} for row in csv.DictReader(fh)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RunDirError(f"{path} is not a valid metrics file ({str(exc).splitlines()[0][:120]})") from None


def _num(text: str) -> Any:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment_info(device: str) -> dict[str, Any]:
    import importlib.metadata as md

    versions: dict[str, str | None] = {}
    for pkg in (
        "imgclf",
        "torch",
        "torchvision",
        "timm",
        "numpy",
        "pillow",
        "pandas",
        "scikit-learn",
        "mlflow",
        "optuna",
        "onnxruntime",
    ):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    import torch

    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "device": device,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "git_commit": git_commit(),
    }
    return info


def write_environment(path: Path, device: str) -> None:
    atomic_write_json(path, environment_info(device))
