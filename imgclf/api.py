"""The Python API for notebooks: the same jobs as ``imgclf train`` and ``imgclf predict``.

The CLI commands call these functions, so neither does what the other cannot. Errors are
:class:`imgclf.errors.ImgclfError` subclasses with a one-line message.

Example (a notebook)::

    import imgclf

    summary = imgclf.train("data/cars", out="runs/lite0", overrides=["train.epochs=10"])
    result = imgclf.predict("runs/lite0", "data/cars/test", out="submission.csv", tta="adaptive")
    run = imgclf.load_run("runs/lite0")      # model, classes, preprocessing, temperature
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from imgclf.config import Config, TTAConfig, build_config, load_config, read_yaml
from imgclf.errors import ConfigError, DataError, ImgclfError
from imgclf.infer.runs import LoadedRun
from imgclf.infer.runs import load_run as _load_run

__all__ = ["train", "fit_run", "predict", "load_run", "default_run_dir"]

log = logging.getLogger("imgclf")


def default_run_dir(cfg: Config) -> Path:
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.model.backbone}"


def train(
    dataset: str | Path | None = None, out: str | Path | None = None, *, config: str | Path | None = None,
    overrides: Sequence[str] = (), resume: str | Path | None = None, deterministic: bool = False,
    tracking_uri: str | None = None, from_sweep: str | None = None, storage: str | None = None, devices: int = 1,
    progress: Any = True, report: bool = True,
) -> dict[str, Any]:
    """Fine-tune on ``dataset`` into run directory ``out``, as ``imgclf train`` does; return the summary.

    ``overrides`` are ``--set`` strings (``"train.epochs=5"``); ``resume`` continues a run with its saved
    config; ``from_sweep`` applies a sweep study's best values; ``devices`` > 1 trains data-parallel
    under torchrun. ``progress``: True for the CLI's progress bar, False for none, or an object with
    ``epoch_start/advance/epoch_end``. The summary gains ``run_dir`` and ``report`` (the HTML page).
    """
    from imgclf.train.preflight import validate_for_training

    if resume is not None:
        if config or overrides:
            raise ConfigError("--resume continues a run with its saved config.yaml; drop --config/--set")
        cfg, dataset, out = resumed_config(Path(resume), dataset)
        if deterministic and not cfg.train.deterministic:
            raise ConfigError("--resume continues a run with its saved config.yaml, which has train.deterministic=false; drop --deterministic")
    else:
        if dataset is None:
            raise DataError("missing DATASET: imgclf train DATASET [--config FILE] [--set key=value]")
        cfg = load_config(config, [*overrides, *(["train.deterministic=true"] if deterministic else [])])
        if from_sweep:
            cfg = _apply_sweep(cfg, from_sweep, storage)
        out = Path(out) if out else default_run_dir(cfg)
        check_new_run_dir(out)
    # Every problem with the config, the dataset and the files it names, before anything is written.
    validate_for_training(cfg, Path(dataset))
    if devices > 1:
        argv = _launch_argv(Path(dataset), Path(out), config, overrides, resume, deterministic, tracking_uri, from_sweep, storage)
        return _launch(devices, cfg, argv, Path(out))
    return fit_run(cfg, Path(dataset), Path(out), resume=resume is not None, tracking_uri=tracking_uri,
                   progress=progress, report=report)


def _apply_sweep(cfg: Config, study: str, storage: str | None) -> Config:
    from imgclf.experiments.sweep import default_out, default_storage
    from imgclf.experiments.transfer import config_from_sweep

    cfg, applied, _ = config_from_sweep(cfg, study, storage or default_storage(default_out(study)))
    log.info("from sweep %s: %s", study, ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in applied.items()))
    return cfg


def _launch_argv(dataset: Path, out: Path, config, overrides, resume, deterministic, tracking_uri, from_sweep, storage) -> list[str]:
    """The ``imgclf train`` arguments that repeat this call under torchrun, the run directory fixed here
    so every process agrees on it."""
    argv = ["train", str(dataset), "--out", str(out)]
    argv += ["--resume", str(resume)] if resume else []
    argv += ["--config", str(config)] if config else []
    argv += [arg for value in overrides for arg in ("--set", value)]
    argv += ["--deterministic"] if deterministic else []
    argv += ["--tracking-uri", tracking_uri] if tracking_uri else []
    argv += ["--from-sweep", from_sweep] if from_sweep else []
    argv += ["--storage", storage] if storage else []
    return argv


def _launch(devices: int, cfg: Config, argv: list[str], out: Path) -> dict[str, Any]:
    import torch

    from imgclf.train.distributed import launch_local, launched_world_size

    if launched_world_size() > 1:
        raise ConfigError("--devices launches torchrun itself; under torchrun, drop --devices")
    gpus = torch.cuda.device_count() if cfg.train.device != "cpu" else 0
    if gpus and devices > gpus:
        raise ConfigError(f"--devices {devices} but this machine has {gpus} GPU(s); use --devices {gpus} or fewer")
    code = launch_local(devices, argv)
    if code:
        raise LaunchError(f"training on {devices} processes under torchrun failed (exit code {code}); see the messages above", code)
    summary = json.loads((out / "summary.json").read_text())
    report = out / "report.html"
    return {**summary, "run_dir": str(out), "report": str(report) if report.is_file() else None}


class LaunchError(ImgclfError):
    """``devices`` > 1: the torchrun processes failed; they have reported why themselves."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def resumed_config(run_dir: Path, dataset: str | Path | None) -> tuple[Config, Path, Path]:
    """The saved config, the dataset it trained on (unless given) and the run directory of a run to resume."""
    from imgclf.train.rundir import RunDir

    run = RunDir(run_dir)
    run.require("config", "info", "last")
    cfg = build_config(read_yaml(run.config))
    return cfg, Path(dataset or run.read_info()["dataset"]), run_dir


def check_new_run_dir(out: Path) -> None:
    if (out / "summary.json").exists() or (out / "checkpoints" / "last.pt").exists():
        raise ConfigError(f"run directory {out} already holds a run; choose another --out or use --resume {out}")


def fit_run(cfg: Config, dataset: Path, out: Path, *, resume: bool = False, tracking_uri: str | None = None,
            progress: Any = True, report: bool = True) -> dict[str, Any]:
    """Train a resolved ``cfg`` with MLflow tracking and the run report: the body of ``imgclf train``."""
    from imgclf.experiments.tracking import tracking_session
    from imgclf.train.distributed import is_main
    from imgclf.train.loop import Hooks, fit

    with tracking_session(cfg, out, tracking_uri) as callbacks:
        summary = fit(cfg, dataset, out, resume=resume, hooks=Hooks(progress=_progress(progress), callbacks=callbacks))
    summary = {**summary, "run_dir": str(out), "report": None}
    if report and is_main():
        from imgclf.report.run_report import write_run_report_safely

        page = write_run_report_safely(out)
        summary["report"] = str(page) if page else None
    return summary


def _progress(progress: Any) -> Any:
    from imgclf.train.loop import NullProgress

    if progress is True:
        from imgclf.cli.console import RichTrainingProgress

        return RichTrainingProgress()
    return NullProgress() if progress in (False, None) else progress


def predict(
    run_dir: str | Path, images: str | Path | Sequence[str | Path], out: str | Path = "submission.csv", *,
    probs: str | Path | None = None, sample: str | Path | None = None, category: str = "auto",
    tta: str | int | TTAConfig | None = None, batch_size: int = 64, device: str = "cpu", engine: str = "torch",
) -> dict[str, Any]:
    """Write a competition submission for ``images`` (a folder, files or glob patterns), as ``imgclf predict`` does.

    ``tta``: None (the run's saved TTA config), ``"none"``, ``"adaptive"``, a number of views or a TTAConfig.
    Returns rows, format, forward passes and seconds.
    """
    from imgclf.infer.jobs import predict_folder

    if category not in ("auto", "index", "name"):
        raise ConfigError(f"category must be auto, index or name (got {category!r})")
    if engine not in ("torch", "onnx"):
        raise ConfigError(f"engine must be torch or onnx (got {engine!r})")
    tta_cfg = tta if isinstance(tta, TTAConfig) else _run_tta(Path(run_dir), None if tta is None else str(tta))
    return predict_folder(Path(run_dir), images, Path(out), probs_out=Path(probs) if probs else None,
                          sample=Path(sample) if sample else None, category=category, batch_size=batch_size,
                          device=device, engine=engine, tta=tta_cfg)


def _run_tta(run_dir: Path, mode: str | None) -> TTAConfig:
    from imgclf.cli.tta_options import tta_from_options

    return tta_from_options(run_dir, mode, None, None, None, None)


def load_run(run_dir: str | Path, device: str = "cpu") -> LoadedRun:
    """A finished run ready for inference: ``.model`` (eval mode), ``.classes``, ``.pre``, ``.temperature``, ``.cfg``."""
    return _load_run(Path(run_dir), device)
