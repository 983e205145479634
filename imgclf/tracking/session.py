"""MLflow tracking as a ``fit`` callback: every run recorded, and tracking never breaks training.

What a run logs: the resolved config flattened as params (``cfg.flat()``), every metrics.csv
column per epoch (step = epoch), the summary's numbers as final metrics (``final_val_accuracy``,
``best_epoch``, ``train_seconds``, ...), tags (backbone, strategy, weights, dataset fingerprint,
git commit, run directory) and artifacts (config.yaml, summary.json, metrics.csv, a learning-curve
PNG and eval/confusion_matrix.png when present).

Where it logs: ``--tracking-uri`` > ``tracking.uri`` > ``$MLFLOW_TRACKING_URI`` > the default, an
embedded SQLite file beside the runs: for run ``runs/2024-…-lite0`` that is ``runs/mlflow.db``
with artifacts in ``runs/mlartifacts/``. Nothing needs to be started; ``mlflow ui
--backend-store-uri sqlite:///runs/mlflow.db`` browses it.

The run directory stays the source of truth: if the store cannot be reached or any MLflow call
fails, one warning ("tracking disabled: ...") is logged and training goes on untracked.

Example::

    with tracking_session(cfg, out, tracking_uri) as callbacks:
        summary = fit(cfg, dataset, out, callbacks=callbacks)
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import os
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from imgclf.config import Config
from imgclf.tracking.urls import one_line, sqlalchemy_url
from imgclf.errors import RunDirError
from imgclf.io import atomic_write_json
from imgclf.run.rundir import RunDir
from imgclf.runtime import is_main_process
from imgclf.secrets import mask_url, redact, redact_params, split_userinfo

log = logging.getLogger("imgclf")

DB_NAME = "mlflow.db"
ARTIFACTS_NAME = "mlartifacts"
RUN_DIR_TAG = "imgclf.run_dir"
_BATCH = 100  # MLflow's limit on params per log_batch call
# MLflow's own HTTP defaults (120 s a request, 7 retries with backoff) let a server that accepts
# connections but never answers hold training for many minutes. These bound each call to one
# request of at most 10 s (the first failure turns tracking off); a value the user set in the
# environment wins.
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}


def tracking_uri_in(folder: str | Path, cli_uri: str | None = None, cfg_uri: str | None = None) -> str:
    """The one precedence rule: ``cli_uri`` > ``cfg_uri`` > ``$MLFLOW_TRACKING_URI`` >
    ``sqlite:///<folder>/mlflow.db`` (absolute, so any working directory finds it)."""
    return (
        cli_uri or cfg_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(folder).resolve() / DB_NAME}"
    )


def default_tracking_uri(run_dir: str | Path) -> str:
    """``sqlite:///<parent of the run directory>/mlflow.db``: one store for the runs beside each other."""
    return f"sqlite:///{Path(run_dir).resolve().parent / DB_NAME}"


def resolve_tracking_uri(run_dir: str | Path, cli_uri: str | None = None, cfg_uri: str | None = None) -> str:
    return tracking_uri_in(Path(run_dir).resolve().parent, cli_uri, cfg_uri)


def _sqlite_file(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :]
    return None if path in ("", ":memory:") else Path(path if path.startswith("/") else path)


def dataset_fingerprint(split_csv: str | Path, dataset: str | Path | None = None) -> str | None:
    """16 hex digits of SHA-256 over the sorted (relative path, label, size in bytes) of split.csv.

    The same images give the same fingerprint whatever the split seed; a changed, added or removed
    file changes it. Sizes are read from ``dataset`` (-1 where a file is not found).
    """
    split_csv = Path(split_csv)
    if not split_csv.is_file():
        return None
    frame = pd.read_csv(split_csv, dtype=str, keep_default_na=False)
    root = Path(dataset) if dataset else None
    if root is not None and root.is_file():
        root = root.parent
    digest = hashlib.sha256()
    for rel, label in sorted(zip(frame["path"], frame.get("label", [""] * len(frame)))):
        size = -1
        if root is not None:
            try:
                size = (root / rel).stat().st_size
            except OSError:
                pass
        digest.update(f"{rel}\t{label}\t{size}\n".encode("utf-8"))
    return digest.hexdigest()[:16]


def _param_value(key: str, value: Any) -> str:
    masked = redact_params({key: value})[key]
    return "" if masked is None else str(masked)


class MlflowTracker:
    """The callback. Each hook swallows MLflow errors: the first one turns tracking off with one warning."""

    def __init__(
        self,
        tracking_uri: str,
        experiment: str = "imgclf",
        *,
        run_name: str | None = None,
        tags: dict[str, str] | None = None,
    ):
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_name = run_name
        self.extra_tags = dict(tags or {})
        self.enabled = True
        self.client = None
        self.run_id: str | None = None
        self.run_dir: Path | None = None

    # -- fit hooks -------------------------------------------------------------------------
    def on_fit_start(self, cfg: Config, run_dir: Path, info: dict[str, Any]) -> None:
        self._guard(self._start, cfg, Path(run_dir), info)

    def on_epoch_end(self, row: dict[str, Any]) -> None:
        self._guard(self._log_epoch, row)

    def on_fit_end(self, summary: dict[str, Any], run_dir: Path) -> None:
        self._guard(self._finish, summary, Path(run_dir))

    def end(self, status: str = "FAILED") -> None:
        """Close the MLflow run after training raised (FAILED, or KILLED when interrupted or pruned)."""
        self._guard(self._end, status)

    # -- internals -------------------------------------------------------------------------
    def _guard(self, fn, *args) -> None:
        if not self.enabled or (fn != self._start and self.run_id is None):
            return
        try:
            with bounded_mlflow_http():
                fn(*args)
        except Exception as exc:  # tracking must never break training
            self.enabled = False
            log.warning(
                "tracking disabled: MLflow store %s failed (%s); training continues, the run directory has everything",
                mask_url(self.tracking_uri),
                one_line(exc, self.tracking_uri),
            )

    def _start(self, cfg: Config, run_dir: Path, info: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.client = connect_store(self.tracking_uri)
        experiment_id = ensure_experiment(self.client, self.experiment, self.tracking_uri)
        self.run_id = (
            self._reattach(run_dir)
            or self.client.create_run(
                experiment_id,
                run_name=self.run_name or run_dir.name,
                tags=self._tags(cfg, run_dir, info),
            ).info.run_id
        )
        atomic_write_json(
            RunDir(run_dir).mlflow_run,
            {
                "tracking_uri": mask_url(self.tracking_uri),
                "experiment": self.experiment,
                "run_id": self.run_id,
            },
        )
        from mlflow.entities import Param

        params = [Param(k, _param_value(k, v)) for k, v in cfg.flat().items()]
        for i in range(0, len(params), _BATCH):
            self.client.log_batch(self.run_id, params=params[i : i + _BATCH])

    def _reattach(self, run_dir: Path) -> str | None:
        """On resume, keep logging into the run the interrupted training created."""
        try:
            saved = RunDir(run_dir).read_mlflow_run()
        except RunDirError:
            return None
        if saved.get("tracking_uri") != mask_url(self.tracking_uri) or saved.get("experiment") != self.experiment:
            return None
        try:
            self.client.update_run(saved["run_id"], status="RUNNING")
        except Exception:
            return None
        return saved["run_id"]

    def _tags(self, cfg: Config, run_dir: Path, info: dict[str, Any]) -> dict[str, str]:
        run = RunDir(run_dir)
        env = _read_json(run.environment)
        dataset = _read_json(run.info).get("dataset")
        weights = info.get("weights") or {}
        tags = {
            "imgclf.backbone": str(cfg.model.backbone),
            "imgclf.weights": str(cfg.model.weights),
            "imgclf.pretrained": str(weights.get("pretrained", "")),
            "imgclf.strategy": cfg.finetune.strategy,
            "imgclf.dataset": str(dataset or ""),
            "imgclf.dataset_fingerprint": dataset_fingerprint(run.split, dataset) or "",
            "imgclf.train_images": str(info.get("train_images", "")),
            "imgclf.val_images": str(info.get("val_images", "")),
            RUN_DIR_TAG: str(run_dir.resolve()),
        }
        if env.get("git_commit"):
            tags["mlflow.source.git.commit"] = env["git_commit"]
        tags.update(self.extra_tags)
        return tags

    def _log_epoch(self, row: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        step, now = int(row["epoch"]), int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in row.items() if k != "epoch" and _finite(v)]
        self.client.log_batch(self.run_id, metrics=metrics)

    def _finish(self, summary: dict[str, Any], run_dir: Path) -> None:
        from mlflow.entities import Metric

        from imgclf.run.rundir import METRIC_COLUMNS, read_metrics

        now = int(time.time() * 1000)
        metrics = [
            Metric(f"final_{k}" if k in METRIC_COLUMNS else k, float(v), now, 0)
            for k, v in summary.items()
            if _finite(v)
        ]
        self.client.log_batch(self.run_id, metrics=metrics)
        run = RunDir(run_dir)
        for path in (run.config, run.summary, run.metrics, run.eval.confusion_png):
            if path.is_file():
                self.client.log_artifact(self.run_id, str(path))
        with tempfile.TemporaryDirectory(prefix="imgclf-track-") as tmp:
            from imgclf.report.plots import learning_curves, save_png

            curve = save_png(
                learning_curves({run_dir.name: read_metrics(run.metrics)}), Path(tmp) / "learning_curves.png"
            )
            self.client.log_artifact(self.run_id, str(curve))
        self.client.set_terminated(self.run_id, "FINISHED")

    def _end(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@contextmanager
def bounded_mlflow_http() -> Iterator[None]:
    """MLflow HTTP calls inside get :data:`HTTP_LIMITS` (MLflow reads these variables per request);
    the environment is restored on exit."""
    added = {k: v for k, v in HTTP_LIMITS.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def http_timeout() -> float:
    """Seconds one HTTP request to the tracking server may take (``MLFLOW_HTTP_REQUEST_TIMEOUT`` wins)."""
    try:
        return max(
            0.1, float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", HTTP_LIMITS["MLFLOW_HTTP_REQUEST_TIMEOUT"]))
        )
    except ValueError:
        return float(HTTP_LIMITS["MLFLOW_HTTP_REQUEST_TIMEOUT"])


def connect_store(uri: str):
    """An MlflowClient, after a fast reachability check (one request, no retries)."""
    if uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(_health_request(uri), timeout=http_timeout()).close()
        except Exception as exc:
            raise ConnectionError(f"cannot reach {mask_url(uri)}: {redact(str(exc), uri)}") from None
    db = _sqlite_file(uri)
    if db is None and uri.split(":", 1)[0].split("+")[0] in ("postgresql", "postgres", "mysql", "mssql"):
        _check_database(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        # MLflow announces its schema migrations at INFO on every new store; they are not news here.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=sqlalchemy_url(uri))


def _health_request(uri: str) -> urllib.request.Request:
    """``GET <server>/health``; credentials in the URL go as basic auth (urllib cannot read them there)."""
    bare, user, password = split_userinfo(uri)
    request = urllib.request.Request(bare.rstrip("/") + "/health")
    if user is not None:
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    return request


def _check_database(uri: str) -> None:
    """One connection attempt with a short timeout: MLflow itself retries an unreachable database for ~100 s."""
    import sqlalchemy

    url = sqlalchemy_url(uri)
    args = {"connect_timeout": max(1, int(http_timeout()))} if url.startswith(("postgresql", "mysql")) else {}
    try:
        engine = sqlalchemy.create_engine(url, connect_args=args)
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
    except Exception as exc:
        raise ConnectionError(f"cannot reach {mask_url(uri)}: {one_line(exc, uri)}") from None


def ensure_experiment(client, name: str, uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    db = _sqlite_file(uri)
    # Without this, a SQLite store puts artifacts in ./mlruns of whatever the working directory is.
    location = (db.resolve().parent / ARTIFACTS_NAME).as_uri() if db is not None else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:
        experiment = client.get_experiment_by_name(name)  # another process created it meanwhile
        if experiment is None:
            raise
        return experiment.experiment_id


@contextmanager
def tracking_session(
    cfg: Config,
    run_dir: str | Path,
    tracking_uri: str | None = None,
    *,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    killed: tuple[type[BaseException], ...] = (),
) -> Iterator[list[Any]]:
    """Yield the callbacks for ``fit`` (empty when ``tracking.enabled`` is false).

    If the body raises, the MLflow run is closed as FAILED — or KILLED for Ctrl-C, an
    interrupted training and the exception types in ``killed`` (e.g. ``optuna.TrialPruned``).
    """
    # Under torchrun every process runs the loop; only rank 0 records the run.
    if not cfg.tracking.enabled or not is_main_process():
        yield []
        return
    from imgclf.training.loop import TrainingInterrupted

    tracker = MlflowTracker(
        resolve_tracking_uri(run_dir, tracking_uri, cfg.tracking.uri),
        cfg.tracking.experiment,
        run_name=run_name,
        tags=tags,
    )
    try:
        yield [tracker]
    except BaseException as exc:
        tracker.end("KILLED" if isinstance(exc, (KeyboardInterrupt, TrainingInterrupted, *killed)) else "FAILED")
        raise
