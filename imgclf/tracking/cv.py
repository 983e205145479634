"""MLflow for ``imgclf cv``: one parent run per CV folder, each fold (and the refit) a nested child.

Nesting is MLflow's own: children carry the tag ``mlflow.parentRunId``; every child is also
tagged ``imgclf.cv`` (the CV folder) and ``imgclf.fold``. The parent's id is kept in
``CV_DIR/mlflow_run.json`` so a resumed CV logs into the same parent. As everywhere in
tracking, a store that fails costs one warning, never the training.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgclf.config import Config
from imgclf.tracking.session import connect_store, ensure_experiment, resolve_tracking_uri
from imgclf.tracking.urls import one_line
from imgclf.run.rundir import RunDir
from imgclf.secrets import mask_url
from imgclf.errors import RunDirError
from imgclf.io import atomic_write_json

log = logging.getLogger("imgclf")


@dataclass
class ParentRun:
    client: Any = None
    run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def child_tags(self, name: str) -> dict[str, str]:
        tags = {**self.tags, "imgclf.fold": name}
        if self.run_id:
            tags["mlflow.parentRunId"] = self.run_id
        return tags


def open_parent(cfg: Config, cv_dir: Path, tracking_uri: str | None) -> ParentRun:
    """Create (or re-open) the parent run; with tracking off or failing, only the CV tag remains."""
    cv_dir = Path(cv_dir)
    tags = {"imgclf.cv": str(cv_dir.resolve())}
    if not cfg.tracking.enabled:
        return ParentRun(tags=tags)
    # The folds log where a run in CV_DIR would (by default CV_DIR/mlflow.db): the parent goes there too.
    uri = resolve_tracking_uri(cv_dir / "fold_1", tracking_uri, cfg.tracking.uri)
    try:
        client = connect_store(uri)
        run_id = _saved_parent(cv_dir, uri, cfg.tracking.experiment)
        if run_id:
            client.update_run(run_id, status="RUNNING")
        else:
            experiment_id = ensure_experiment(client, cfg.tracking.experiment, uri)
            run_id = client.create_run(
                experiment_id, run_name=cv_dir.name, tags={**tags, "imgclf.kind": "cv"}
            ).info.run_id
            atomic_write_json(
                RunDir(cv_dir).mlflow_run,
                {"tracking_uri": mask_url(uri), "experiment": cfg.tracking.experiment, "run_id": run_id},
            )
        return ParentRun(client, run_id, tags)
    except Exception as exc:  # tracking must never break training
        log.warning(
            "tracking: no MLflow parent run for %s (%s); folds are tagged imgclf.cv instead", cv_dir, one_line(exc, uri)
        )
        return ParentRun(tags=tags)


def _saved_parent(cv_dir: Path, uri: str, experiment: str) -> str | None:
    try:
        saved = RunDir(cv_dir).read_mlflow_run()
    except RunDirError:
        return None
    same = saved.get("tracking_uri") == mask_url(uri) and saved.get("experiment") == experiment
    return saved.get("run_id") if same else None


def close_parent(parent: ParentRun, summary: dict[str, Any] | None, status: str = "FINISHED") -> None:
    """Log the CV figures (mean/std over folds, OOF scores) on the parent and close it."""
    if parent.client is None or parent.run_id is None:
        return
    try:
        from mlflow.entities import Metric

        now, metrics = int(time.time() * 1000), []
        for metric, spread in (summary or {}).get("cv", {}).items():
            metrics += [Metric(f"cv_{metric}_mean", float(spread["mean"]), now, 0)]
            if spread.get("std") is not None:
                metrics += [Metric(f"cv_{metric}_std", float(spread["std"]), now, 0)]
        for metric, value in (summary or {}).get("oof", {}).items():
            if isinstance(value, (int, float)) and math.isfinite(float(value)):
                metrics.append(Metric(f"oof_{metric}", float(value), now, 0))
        if metrics:
            parent.client.log_batch(parent.run_id, metrics=metrics)
        parent.client.set_terminated(parent.run_id, status)
    except Exception as exc:
        log.warning(
            "tracking: could not close the MLflow parent run (%s)", str(exc).splitlines()[0] if str(exc) else exc
        )
