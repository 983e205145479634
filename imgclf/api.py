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

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgclf.config import Config, TTAConfig, load_config
from imgclf.errors import ConfigError, DataError
from imgclf.run.claim import start_over
from imgclf.run.rundir import RunDir

if TYPE_CHECKING:
    from imgclf.run.load import LoadedRun

__all__ = ["train", "fit_run", "predict", "load_run", "default_run_dir"]

log = logging.getLogger("imgclf")


def default_run_dir(cfg: Config) -> Path:
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.model.backbone}"


def train(
    dataset: str | Path | None = None,
    out: str | Path | None = None,
    *,
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    resume: str | Path | None = None,
    deterministic: bool = False,
    tracking_uri: str | None = None,
    from_sweep: str | None = None,
    storage: str | None = None,
    devices: int = 1,
    refit: bool = False,
    progress: Any = True,
    report: bool = True,
    budget: str | float | None = None,
) -> dict[str, Any]:
    """Fine-tune on ``dataset`` into run directory ``out``, as ``imgclf train`` does; return the summary.

    ``overrides`` are ``--set`` strings (``"train.epochs=5"``); ``resume`` continues a run with its saved
    config; ``from_sweep`` applies a sweep study's best values; ``devices`` > 1 trains data-parallel on
    that many local processes; ``refit`` then trains ``OUT/refit`` on every image for the best epoch count.
    ``progress``: True for the CLI's progress bar, False for none, or a training callback
    (:class:`imgclf.training.callbacks.Callback`). The summary gains ``run_dir`` and ``report`` (the HTML page).
    ``budget`` (``"20m"``, or seconds) runs the recipe of :mod:`imgclf.budget.recipe` instead: warm-up,
    probes, the final model(s), then their held-out estimate, all within the budget (+5 % at most).
    """
    started = time.perf_counter()
    seconds = _budget_seconds(budget, resume, devices, refit)

    if resume is not None:
        if config:
            raise ConfigError("--resume continues a run with its saved config.yaml; drop --config")
        cfg, dataset, out = resumed_config(Path(resume), dataset, overrides)
        if deterministic and not cfg.train.deterministic:
            raise ConfigError(
                "--resume continues a run with its saved config.yaml, which has train.deterministic=false; drop --deterministic"
            )
    else:
        if dataset is None:
            raise DataError("missing DATASET: imgclf train DATASET [--config FILE] [--set key=value]")
        cfg = load_config(config, [*overrides, *(["train.deterministic=true"] if deterministic else [])])
        if from_sweep:
            cfg = _apply_sweep(cfg, from_sweep, storage)
        out = Path(out) if out else default_run_dir(cfg)
        RunDir(out).check_new()
    if seconds is not None:
        from imgclf.training.auto_batch import refuse_auto_under_budget

        refuse_auto_under_budget(cfg)
    _check_devices(devices, cfg)  # a count the machine cannot hold is refused before any process starts
    _preflight(cfg, Path(dataset), RunDir(Path(out)), resume is not None, overrides)
    if seconds is not None:
        from imgclf.budget.recipe import record_total, run_recipe

        summary = run_recipe(
            cfg,
            Path(dataset),
            Path(out),
            seconds,
            started=started,
            tracking_uri=tracking_uri,
            callbacks=_callbacks(progress),
        )
        summary = _with_report(summary, Path(out), report)
        return {**summary, "elapsed_seconds": record_total(Path(out), started)}
    if devices > 1:
        from imgclf.launch import train_on_local_processes

        summary = train_on_local_processes(devices, cfg, Path(dataset), Path(out), resume is not None, tracking_uri)
    else:
        summary = _fit_tracked(cfg, Path(dataset), Path(out), resume is not None, tracking_uri, _callbacks(progress))
    from imgclf.runtime import is_main_process

    if not is_main_process():
        return summary  # under torchrun, rank 0 reports for every process
    if refit:
        summary = refit_run(cfg, Path(dataset), RunDir(Path(out)), summary, tracking_uri, progress)
    return _with_report(summary, Path(out), report)


def _preflight(cfg: Config, dataset: Path, run: RunDir, resuming: bool, overrides: Sequence[str]) -> None:
    """Every problem with the config, the dataset and the files it names, before anything is written (rank 0)."""
    from imgclf.runtime import is_main_process  # torch: after the config, so its errors come at once
    from imgclf.training.preflight import validate_for_training

    if not is_main_process():
        return
    validate_for_training(cfg, dataset)
    if resuming and _extension(overrides):
        _start_extension(run, cfg)
    if not resuming:
        start_over(run)  # a run killed before its first checkpoint starts again here


def _check_devices(devices: int, cfg: Config) -> None:
    if devices > 1:
        from imgclf.launch import check_devices

        check_devices(devices, cfg.train.device)


def _budget_seconds(budget: str | float | None, resume: Any, devices: int, refit: bool) -> float | None:
    if budget is None:
        return None
    from imgclf.budget.plan import parse_budget

    seconds = parse_budget(f"{budget}s" if isinstance(budget, (int, float)) else budget)
    for given, flag in ((resume is not None, "--resume"), (devices > 1, "--devices"), (refit, "--refit")):
        if given:
            raise ConfigError(
                f"--budget cannot be combined with {flag} (the recipe refits on every image itself, in one process)"
            )
    return seconds


def _apply_sweep(cfg: Config, study: str, storage: str | None) -> Config:
    from imgclf.experiments.sweep import default_out, default_storage
    from imgclf.experiments.transfer import config_from_sweep

    cfg, applied, _ = config_from_sweep(cfg, study, storage or default_storage(default_out(study)))
    log.info(
        "from sweep %s: %s",
        study,
        ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in applied.items()),
    )
    return cfg


# What ``--resume`` may change: how long the run goes on (extending a finished run, or an interrupted one).
# The user's own settings (imgclf.run.trust.USER_KEYS: tracking.uri, data.cache_dir) may be given too.
RESUME_OVERRIDES = ("train.epochs", "train.patience")


def resumed_config(
    run_dir: Path, dataset: str | Path | None, overrides: Sequence[str] = ()
) -> tuple[Config, Path, Path]:
    """The saved config, the dataset it trained on (unless given) and the run directory of a run to resume.

    ``overrides`` may set only :data:`RESUME_OVERRIDES`: ``train.epochs=N`` extends a run, finished or not, to N
    epochs (the learning-rate schedule is recomputed for N, as timm's ``--resume`` with more ``--epochs`` does).
    ``train`` then makes it the run's ``config.yaml``; a finished run loses its ``summary.json`` until it
    finishes again. What the run may not decide (where tracking data and files go) comes from the user: the run's
    values for ``USER_KEYS`` are ignored, and ``overrides`` may set them.
    """
    from imgclf.config import parse_override
    from imgclf.run.trust import USER_KEYS, run_config

    run = RunDir(run_dir)
    run.require("config", "info", "last")
    keys = [parse_override(o)[0] for o in overrides]
    bad = next((k for k in keys if k not in RESUME_OVERRIDES and k not in USER_KEYS), None)
    if bad is not None:
        raise ConfigError(
            f"--resume continues a run with its saved config.yaml; --set may change only "
            f"{' and '.join(RESUME_OVERRIDES)} there (got {bad}); {' and '.join(USER_KEYS)} are yours to set"
        )
    cfg = run_config(run, load_config(None, [o for o, k in zip(overrides, keys) if k in USER_KEYS]))
    if _extension(overrides):
        cfg = _extended(run, cfg, _extension(overrides))
    return cfg, Path(dataset) if dataset else run.read_dataset(), run_dir


def _extension(overrides: Sequence[str]) -> list[str]:
    """The ``--set`` values that extend a resumed run (:data:`RESUME_OVERRIDES`)."""
    from imgclf.config import parse_override

    return [o for o in overrides if parse_override(o)[0] in RESUME_OVERRIDES]


def _extended(run: RunDir, cfg: Config, overrides: Sequence[str]) -> Config:
    from imgclf.config import parse_override, with_overrides

    new = with_overrides(cfg, dict(parse_override(o) for o in overrides))
    done = run.read_summary()["epochs_run"] if run.is_finished() else 0
    if run.is_finished() and new.train.epochs <= done:
        raise ConfigError(f"{run.root} already trained {done} epoch(s); to extend it set train.epochs above {done}")
    return new


def _start_extension(run: RunDir, cfg: Config) -> None:
    """Once the extended config passed every check: it becomes the run's config, and a finished run is
    unfinished again (no summary) until the extension writes its own."""
    from imgclf.config import save_config

    save_config(cfg, run.config)
    if run.is_finished():
        log.info("extending %s from %d to %d epochs", run.root, run.read_summary()["epochs_run"], cfg.train.epochs)
        run.summary.unlink()


def _fit_tracked(
    cfg: Config, dataset: Path, out: Path, resume: bool, tracking_uri: str | None, callbacks: list[Any]
) -> dict[str, Any]:
    from imgclf.tracking.session import tracking_session
    from imgclf.training.loop import fit

    with tracking_session(cfg, out, tracking_uri) as tracking:
        return fit(cfg, dataset, out, resume=resume, callbacks=[*callbacks, *tracking], preflight=False)


def fit_run(
    cfg: Config,
    dataset: Path,
    out: Path,
    *,
    resume: bool = False,
    tracking_uri: str | None = None,
    progress: Any = True,
    report: bool = True,
) -> dict[str, Any]:
    """Train a resolved ``cfg`` with MLflow tracking and the run report: the body of ``imgclf train``."""
    summary = _fit_tracked(cfg, dataset, out, resume, tracking_uri, _callbacks(progress))
    return _with_report(summary, out, report)


def refit_run(
    cfg: Config, dataset: Path, parent: RunDir, summary: dict[str, Any], tracking_uri: str | None, progress: Any = True
) -> dict[str, Any]:
    """``train --refit``: ``RUN/refit`` on every image for the parent's best epoch count; the parent's
    summary records it."""
    from imgclf.tracking.session import tracking_session
    from imgclf.io import atomic_write_json
    from imgclf.training.refit import refit

    epochs = int(summary.get("best_epoch") or summary["epochs_run"])
    if cfg.data.batch_size == "auto":  # the parent's epochs were counted in steps of the batch its probe chose
        from imgclf.config import with_overrides

        cfg = with_overrides(cfg, {"data.batch_size": load_config(parent.config).data.batch_size})
    target = parent.refit_run
    log.info(
        "refit: training %s on every image for %d epoch(s), the best epoch of %s", target.root, epochs, parent.root
    )
    with tracking_session(cfg, target.root, tracking_uri) as tracking:
        result = refit(
            cfg,
            dataset,
            target,
            epochs,
            epochs_from=f"best epoch of {parent.root}",
            calibration_from=parent,
            resume=target.last.is_file() and not target.is_finished(),
            callbacks=[*_callbacks(progress), *tracking],
        )
    summary = {**summary, "refit": {"run": str(target.root), "epochs": epochs, "train_images": result["train_images"]}}
    atomic_write_json(parent.summary, {k: v for k, v in summary.items() if k not in ("run_dir", "report")})
    return summary


def _with_report(summary: dict[str, Any], out: Path, report: bool) -> dict[str, Any]:
    summary = {**summary, "run_dir": str(out), "report": None}
    if report:
        from imgclf.report.run_report import write_run_report_safely

        page = write_run_report_safely(out)
        summary["report"] = str(page) if page else None
    return summary


def _callbacks(progress: Any) -> list[Any]:
    if progress is True:
        from imgclf.terminal import RichTrainingProgress

        return [RichTrainingProgress()]
    return [] if progress in (False, None) else [progress]


def predict(
    run_dir: str | Path,
    images: str | Path | Sequence[str | Path],
    out: str | Path = "submission.csv",
    *,
    probs: str | Path | None = None,
    sample: str | Path | None = None,
    category: str = "auto",
    tta: str | int | TTAConfig | None = None,
    batch_size: int = 64,
    device: str = "auto",
    engine: str = "torch",
    progress: Any = True,
) -> dict[str, Any]:
    """Write a competition submission for ``images`` (a folder, files or glob patterns), as ``imgclf predict`` does.

    ``tta``: None (the run's saved TTA config), ``"none"``, ``"adaptive"``, a number of views or a TTAConfig.
    ``progress``: True for the CLI's progress bar, False for none, or an object with ``start(total)``,
    ``advance(images)`` and ``stop()``. Returns rows, format, forward passes and seconds.
    """
    from imgclf.infer.jobs import predict_folder

    if category not in ("auto", "index", "name"):
        raise ConfigError(f"category must be auto, index or name (got {category!r})")
    if engine not in ("torch", "onnx"):
        raise ConfigError(f"engine must be torch or onnx (got {engine!r})")
    tta_cfg = tta if isinstance(tta, TTAConfig) else _run_tta(Path(run_dir), None if tta is None else str(tta))
    return predict_folder(
        Path(run_dir),
        images,
        Path(out),
        probs_out=Path(probs) if probs else None,
        sample=Path(sample) if sample else None,
        category=category,
        batch_size=batch_size,
        device=device,
        engine=engine,
        tta=tta_cfg,
        progress=_predict_progress(progress),
    )


def _predict_progress(progress: Any) -> Any:
    if progress is True:
        from imgclf.terminal import RichPredictProgress

        return RichPredictProgress()
    return None if progress in (False, None) else progress


def _run_tta(run_dir: Path, mode: str | None) -> TTAConfig:
    from imgclf.infer.tta_config import tta_from_options

    return tta_from_options(run_dir, mode, None, None, None, None)


def load_run(run_dir: str | Path, device: str = "auto") -> LoadedRun:
    """A finished run ready for inference: ``.model`` (eval mode, on CUDA when there is one), ``.classes``, ``.pre``,
    ``.temperature``, ``.cfg``."""
    from imgclf.run.load import load_run as _load_run  # torch: imported on first use, not by `import imgclf.api`

    return _load_run(Path(run_dir), device)
