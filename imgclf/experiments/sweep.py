"""Hyperparameter sweeps with Optuna on a cheap proxy of the target job.

One sweep = one Optuna study: seeded TPE sampler, a pruner fed with each epoch's validation score
(median by default, Hyperband or none), and an objective that trains an ordinary run directory
``<out>/trials/NNNN`` (NNNN = the trial number) with the proxy overrides and the trial's values on
top of the base config. The study lives in an RDB storage: by default an embedded SQLite file
``<out>/optuna.db``; a ``postgresql://`` URL lets several machines run ``imgclf sweep`` on the same
study at once (each runs its own ``trials``; trial numbers are handed out by the database).

Example::

    params, proxy = read_space("space.yaml")
    result = run_sweep(Path("data/cars"), load_config("target.yaml"), params,
                       SweepOptions(trials=20, study="cars-lr", out=Path("sweeps/cars-lr"), proxy=proxy))
    result.best_params  # {"train.lr": 0.0012, ...}
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from imgclf.config import Config, with_overrides
from imgclf.errors import ConfigError, ImgclfError
from imgclf.eval.metrics import monitor_direction
from imgclf.experiments.space import SearchParam, check_space
from imgclf.extras import install_hint
from imgclf.tracking.session import tracking_uri_in
from imgclf.tracking.urls import one_line, sqlalchemy_url
from imgclf.run.claim import SWEEP_STORAGE, check_folder
from imgclf.secrets import mask_url

log = logging.getLogger("imgclf")

PRUNERS = ("median", "hyperband", "none")
STORAGE_NAME = SWEEP_STORAGE
_RACE_WORDS = ("already exists", "duplicate", "uniqueviolation", "database is locked")


class StorageError(ImgclfError):
    """The sweep storage URL cannot be opened (unreachable server, wrong password, bad URL)."""


class SweepInterrupted(ImgclfError):
    """Ctrl-C during a sweep: finished trials are in the study; the same command continues it."""

    exit_code = 130


class _TrialFailed(Exception):
    """A trial whose config or training was rejected (e.g. diverged): recorded as FAIL, the sweep goes on."""


def default_out(study: str) -> Path:
    return Path("sweeps") / study


def default_storage(out: str | Path) -> str:
    return f"sqlite:///{Path(out).resolve() / STORAGE_NAME}"


def direction_for(monitor: str) -> str:
    """Optuna's direction for a monitored column: ``val_loss``, ``val_accuracy`` or ``val_<train.metric>``."""
    return "maximize" if monitor_direction(monitor) == "max" else "minimize"


class _ToImgclfLog(logging.Handler):
    """Hands Optuna's log records to the ``imgclf`` logger, so they are formatted, filtered and redacted like ours."""

    def emit(self, record: logging.LogRecord) -> None:
        log.handle(record)


def route_optuna_logging() -> None:
    """Optuna's own lines (warnings and up) through imgclf's logger instead of its default stderr handler; its
    per-trial INFO lines are dropped (the sweep and the recipe say what each trial did). Idempotent."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.logging.disable_default_handler()
    optuna.logging.disable_propagation()
    optuna_log = logging.getLogger("optuna")
    if not any(isinstance(h, _ToImgclfLog) for h in optuna_log.handlers):
        optuna_log.addHandler(_ToImgclfLog())


def open_storage(url: str, *, create: bool = True):
    """An Optuna RDB storage for ``url``; any failure is a one-line StorageError with the password masked.

    ``create=False`` refuses a SQLite file that does not exist yet (reading a study must not create one).
    Every study is made or loaded on one of these, so this is where Optuna's logging is routed through ours.
    """
    import optuna

    route_optuna_logging()
    real = sqlalchemy_url(url)
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if real.startswith("sqlite:///"):
        db = Path(real[len("sqlite:///") :])
        if not create and not db.is_file():
            raise StorageError(f"no sweep storage at {db}; pass --storage URL (the one the sweep used)")
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot open sweep storage {mask_url(url)}: {exc.strerror or exc}") from None
        engine_kwargs = {"connect_args": {"timeout": 60}}  # local workers wait for the file lock
    for attempt in range(4):
        try:
            return optuna.storages.RDBStorage(real, engine_kwargs=engine_kwargs)
        except ImportError:
            hint = f" ({install_hint('psycopg2')})" if real.startswith("postgresql") else ""
            raise StorageError(
                f"cannot open sweep storage {mask_url(url)}: no database driver installed for it{hint}"
            ) from None
        except Exception as exc:
            message = one_line(exc, url, real)
            # Two workers creating the schema at the same moment: the loser retries and finds it made.
            if attempt < 3 and any(w in message.lower() for w in _RACE_WORDS):
                time.sleep(1.0 + attempt)
                continue
            raise StorageError(f"cannot open sweep storage {mask_url(url)}: {message}") from None


def load_study(name: str, storage_url: str):
    """An existing study (read-only use: best trial, transfer); unknown names list what is there."""
    import optuna

    storage = open_storage(storage_url, create=False)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = optuna.get_all_study_names(storage)
        there = f"; studies there: {', '.join(names)}" if names else "; it holds no studies"
        raise ConfigError(f"no study {name!r} in {mask_url(storage_url)}{there}") from None


def make_pruner(name: str, max_epochs: int):
    import optuna

    if name == "median":
        # Judge from the second finished trial on (the default 5 would never prune a short proxy sweep);
        # steps are epochs 1, 2, ... so every epoch's report counts.
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(max_epochs, 1), reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"--pruner must be one of {', '.join(PRUNERS)} (got {name!r})")


class PruningCallback:
    """A ``fit`` callback: report each epoch's score to the trial and stop hopeless trials."""

    def __init__(self, trial, monitor: str):
        self.trial = trial
        self.monitor = monitor
        self.seconds = 0.0
        self.cpu_seconds = 0.0

    def on_epoch_end(self, row: dict[str, Any]) -> None:
        import optuna

        self.seconds += float(row.get("epoch_seconds", 0.0))
        self.cpu_seconds += float(row.get("epoch_cpu_seconds", 0.0))
        self.trial.set_user_attr("train_seconds", self.seconds)
        self.trial.set_user_attr("train_cpu_seconds", self.cpu_seconds)
        self.trial.report(float(row[self.monitor]), int(row["epoch"]))
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {row['epoch']} ({self.monitor} {row[self.monitor]:.4f})")


@dataclass
class SweepOptions:
    trials: int
    study: str
    out: Path
    storage: str | None = None  # None = sqlite:///<out>/optuna.db
    seed: int = 0
    pruner: str = "median"
    proxy: dict[str, Any] = field(default_factory=dict)
    tracking_uri: str | None = None  # None = tracking.uri, $MLFLOW_TRACKING_URI or <out>/mlflow.db
    on_trial: Callable[[Any], None] | None = None  # called with each finished FrozenTrial
    timeout: float | None = None  # seconds: launch no new trial after this (a running one finishes)
    callbacks: tuple[Any, ...] = ()  # more ``fit`` callbacks for every trial (e.g. one that prunes at a deadline)


@dataclass
class SweepResult:
    study: str
    storage: str  # masked
    direction: str
    monitor: str
    counts: dict[str, int]  # study-wide: COMPLETE / PRUNED / FAIL / RUNNING ...
    best_value: float | None
    best_params: dict[str, Any]
    best_trial: int | None
    best_run_dir: str | None


def proxy_config(base: Config, proxy: dict[str, Any], study: str) -> Config:
    """The proxy job: base config + proxy overrides; trials track into experiment ``sweep-<study>``."""
    values = dict(proxy)
    if base.tracking.experiment == "imgclf" and "tracking.experiment" not in values:
        values["tracking.experiment"] = f"sweep-{study}"
    try:
        return with_overrides(base, values)
    except ConfigError as exc:
        raise ConfigError(f"proxy settings make an invalid config: {exc}") from None


def run_sweep(dataset: Path, base: Config, space: list[SearchParam], options: SweepOptions) -> SweepResult:
    """Run ``options.trials`` trials of the study (creating it, or joining it if it exists)."""
    import optuna

    if options.trials < 1:
        raise ConfigError(f"--trials must be at least 1 (got {options.trials})")
    if not Path(dataset).exists():
        raise ImgclfError(f"dataset not found: {dataset}")
    cfg = proxy_config(base, options.proxy, options.study)
    check_space(space, cfg)
    out = Path(options.out)
    check_folder(out, "sweep")  # new, empty or a sweep's own folder (several workers share one): never other files
    url = options.storage or default_storage(out)
    storage = open_storage(url)
    monitor = cfg.train.monitored  # val_<train.metric> unless train.monitor is set
    study = optuna.create_study(
        study_name=options.study,
        storage=storage,
        direction=direction_for(monitor),
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=options.seed, constant_liar=True),
        pruner=make_pruner(options.pruner, cfg.train.epochs),
    )
    _check_study(study, monitor, out)
    for key, value in {
        "dataset": str(Path(dataset).resolve()),
        "monitor": monitor,
        "out": str(out.resolve()),
        "proxy": json.dumps(options.proxy),
        "space": json.dumps([p.describe() for p in space]),
    }.items():
        study.set_user_attr(key, value)
    tracking_uri = tracking_uri_in(out, options.tracking_uri, cfg.tracking.uri)

    def objective(trial) -> float:
        return _run_trial(trial, dataset, cfg, space, out, tracking_uri, options.study, options.callbacks)

    callbacks = [lambda _study, trial: options.on_trial(trial)] if options.on_trial else []
    try:
        study.optimize(
            objective, n_trials=options.trials, timeout=options.timeout, catch=(_TrialFailed,), callbacks=callbacks
        )
    except ImgclfError as exc:
        if exc.exit_code == 130:
            raise SweepInterrupted(
                f"sweep interrupted; finished trials are kept in study {options.study!r} — the same command continues it"
            ) from None
        raise
    return _result(study, mask_url(url), monitor)


def _check_study(study, monitor: str, out: Path) -> None:
    saved = study.user_attrs.get("monitor")
    if saved and saved != monitor:
        raise ConfigError(
            f"study {study.study_name!r} optimises {saved}, but this config monitors {monitor}; use another --study"
        )
    trials_dir = out / "trials"
    if not study.trials and trials_dir.is_dir() and any(trials_dir.iterdir()):
        # A new study numbers its trials from 0 again: it would train into another study's folders.
        raise ConfigError(f"{trials_dir} holds trials of another study; choose another --out or --study")


def _run_trial(
    trial,
    dataset: Path,
    cfg: Config,
    space: list[SearchParam],
    out: Path,
    tracking_uri: str,
    study_name: str,
    extra: tuple[Any, ...] = (),
) -> float:
    import optuna

    from imgclf.tracking.session import tracking_session
    from imgclf.training.loop import TrainingInterrupted, fit

    values = {p.key: p.suggest(trial) for p in space}
    run_dir = out / "trials" / f"{trial.number:04d}"
    trial.set_user_attr("run_dir", str(run_dir.resolve()))
    try:
        trial_cfg = with_overrides(cfg, values)
        tags = {"imgclf.study": study_name, "imgclf.trial": str(trial.number)}
        with tracking_session(
            trial_cfg,
            run_dir,
            tracking_uri,
            run_name=f"{study_name}-{trial.number:04d}",
            tags=tags,
            killed=(optuna.TrialPruned,),
        ) as tracking:
            pruning = PruningCallback(trial, trial_cfg.train.monitored)
            summary = fit(trial_cfg, Path(dataset), run_dir, callbacks=[*tracking, pruning, *extra])
    except TrainingInterrupted:
        raise
    except ImgclfError as exc:
        trial.set_user_attr("error", str(exc))
        log.warning("trial %d failed: %s", trial.number, exc)
        raise _TrialFailed(str(exc)) from None
    trial.set_user_attr("train_seconds", summary["train_seconds"])
    trial.set_user_attr("train_cpu_seconds", summary.get("train_cpu_seconds"))
    trial.set_user_attr("epochs_run", summary["epochs_run"])
    value = summary.get(trial_cfg.train.monitored)
    if value is None:  # no validation split, or the metric is undefined on it (e.g. ROC AUC of one class)
        trial.set_user_attr("error", f"{trial_cfg.train.monitored} is undefined for this trial")
        raise _TrialFailed(f"{trial_cfg.train.monitored} is undefined for this trial")
    return float(value)


def _result(study, storage: str, monitor: str) -> SweepResult:
    import optuna

    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    best = study.best_trial if complete else None
    return SweepResult(
        study=study.study_name,
        storage=storage,
        direction=study.direction.name.lower(),
        monitor=monitor,
        counts=counts,
        best_value=best.value if best else None,
        best_params=dict(best.params) if best else {},
        best_trial=best.number if best else None,
        best_run_dir=best.user_attrs.get("run_dir") if best else None,
    )
