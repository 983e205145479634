"""K-fold cross-validation: stratified, grouped folds, one ordinary run per fold, OOF predictions.

``run_cv`` writes ``CV_DIR``:

- ``cv.json`` (folds, seed, dataset, fold directories) and ``cv_config.yaml`` (the config every fold used);
- ``folds.csv`` (path, label, group, fold) and ``splits/fold_K.csv`` (the split file each fold trains on);
- ``fold_1/`` … ``fold_K/``: normal run directories (every command accepts them);
- ``oof.csv`` and ``classes.json``: every training image once, with the calibrated probabilities of
  the fold that held it out;
- ``summary.json``: per-fold scores, mean ± std and a 95 % t-interval over folds, the OOF scores;
- ``label_issues.csv`` (cleanlab, blocklist format), ``label_issues.html`` (its review page) and ``report.html``;
- with ``refit``: ``refit/``, one more run on every image for the median best epoch of the folds.

Re-running the same command resumes: finished folds (``summary.json``) are skipped and a fold
with ``checkpoints/last.pt`` continues from it.

Example::

    summary = run_cv(cfg, Path("data/cars"), Path("cv/lite0"), folds=5, refit=True)
    summary["cv"]["accuracy"]   # {"mean": 0.91, "std": 0.01, "ci95": [0.89, 0.93]}
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold


from imgclf.config import Config, build_config, read_yaml, save_config, with_overrides
from imgclf.data.samples import TrainingSet, load_training_set
from imgclf.data.pipeline import target_cells
from imgclf.data.split import multilabel_group_folds, save_split
from imgclf.infer.evaluate_targets import SCORES
from imgclf.errors import ConfigError, DataError
from imgclf.eval.metrics import Metric, get_metric, metric_of
from imgclf.experiments.label_issues import (
    rank_label_issues,
    rank_multilabel_issues,
    rank_value_issues,
    write_label_issues,
)
from imgclf.experiments.oof import Oof, read_run_oof, scores, write_oof
from imgclf.experiments.stats import mean_std_ci
from imgclf.extras import available, install_hint
from imgclf.io import atomic_path, atomic_write_json
from imgclf.run.rundir import BlendDir, RunDir
from imgclf.run.specs import read_cv_spec, read_folds
from imgclf.run.trust import run_config

log = logging.getLogger("imgclf")


def make_folds(labels: list[int], groups: list[str], k: int, seed: int) -> np.ndarray:
    """Fold number (1..k) of every sample: stratified by label, duplicate groups kept whole.

    >>> make_folds([0, 0, 1, 1], ["a", "a", "b", "c"], 2, seed=0).tolist()[:2]   # a group shares a fold
    [1, 1]
    """
    n_groups = len(set(groups))
    if k < 2:
        raise ConfigError(f"--folds must be at least 2 (got {k})")
    if n_groups < k:
        raise DataError(
            f"cannot make {k} folds from {n_groups} distinct image groups; use --folds {max(2, n_groups)} or fewer"
        )
    folds = np.zeros(len(labels), dtype=int)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed % 2**32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has only n members": said once below
        for fold, (_, val_idx) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups), start=1):
            folds[val_idx] = fold
    counts = np.bincount(labels)
    if counts.min() < k:
        log.warning(
            "class %d has only %d image(s), fewer than the %d folds: some folds validate without it",
            counts.argmin(),
            counts.min(),
            k,
        )
    return folds


def _rel_paths(samples: TrainingSet) -> list[str]:
    return [samples.rel(p) for p in samples.paths]


def plan_folds(samples: TrainingSet, out: Path, k: int, seed: int) -> np.ndarray:
    """Make the folds, or re-read ``folds.csv`` of an earlier start (the dataset must not have changed)."""
    rel = _rel_paths(samples)
    path = BlendDir(out).folds
    if path.is_file():
        lookup = read_folds(BlendDir(out))
        if set(lookup) != set(rel) or set(lookup.values()) != set(range(1, k + 1)):
            raise DataError(f"{path} does not match the dataset any more (images or --folds changed); use a new --out")
        return np.array([lookup[p] for p in rel], dtype=int)
    if samples.task == "multilabel" and samples.targets is not None:  # iterative stratification, groups whole
        folds = multilabel_group_folds(samples.targets, samples.groups, k, seed) + 1
    else:  # classes, or a regression target's bins (samples.labels)
        folds = make_folds(samples.labels, samples.groups, k, seed)
    frame = pd.DataFrame({"path": rel, "label": target_cells(samples), "group": samples.groups, "fold": folds})
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return folds


def write_fold_splits(samples: TrainingSet, folds: np.ndarray, out: Path) -> list[Path]:
    """``splits/fold_K.csv`` (fold K validates, the rest train) and ``splits/all_train.csv`` (refit)."""
    rel, labels = _rel_paths(samples), target_cells(samples)
    paths = []
    for k in range(1, int(folds.max()) + 1):
        path = out / "splits" / f"fold_{k}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_split(path, rel, labels, folds == k)
        paths.append(path)
    save_split(out / "splits" / "all_train.csv", rel, labels, np.zeros(len(rel), dtype=bool))
    return paths


def _check_resume(cfg: Config, out: Path, k: int) -> tuple[Config, bool]:
    """A re-run must ask for the same CV as the first start (then it resumes); True for a new CV."""
    spec_path = BlendDir(out).cv_spec
    if not spec_path.is_file():
        return cfg, True
    held = read_cv_spec(BlendDir(out)).folds
    if held != k:
        raise ConfigError(f"{out} holds a {held}-fold CV; use --folds {held} to resume it, or another --out")
    saved = build_config(read_yaml(BlendDir(out).cv_config))
    if _resolved(saved) != _resolved(cfg):
        raise ConfigError(
            f"{out} was started with another config ({BlendDir(out).cv_config}); use the same --config/--set to resume, or another --out"
        )
    return saved, False


def _resolved(cfg: Config) -> dict[str, Any]:
    """The config as it trains: ``train.monitor`` resolved (a CV started when it defaulted to
    val_accuracy resumes under a config that leaves it to the default metric, accuracy)."""
    tree = cfg.to_dict()
    tree["train"]["monitor"] = cfg.train.monitored
    return tree


def _record_start(cfg: Config, dataset: Path, out: Path, k: int) -> None:
    """Written once the folds exist, so a CV that could not start leaves nothing to resume."""
    save_config(cfg, BlendDir(out).cv_config)
    atomic_write_json(
        BlendDir(out).cv_spec,
        {
            "folds": k,
            "seed": cfg.data.split_seed,
            "dataset": str(Path(dataset).resolve()),
            "fold_dirs": [f"fold_{i}" for i in range(1, k + 1)],
        },
    )


# train_one(cfg, dataset, out, resume, name) -> summary: the CLI wraps fit with progress and MLflow.
TrainFn = Callable[[Config, Path, Path, bool, str], dict[str, Any]]


def train_runs(cfg: Config, dataset: Path, out: Path, k: int, train_one: TrainFn) -> list[str]:
    """Train every fold that is not finished; return what happened to each (trained/resumed/skipped)."""
    actions = []
    for i in range(1, k + 1):
        run_dir = out / f"fold_{i}"
        state = RunDir(run_dir).state()
        if state == "done":
            actions.append("skipped")
            continue
        if state == "resume":  # the fold's own config, but where tracking data and files go is the user's cfg's
            fold_cfg = run_config(RunDir(run_dir), cfg)
        else:
            fold_cfg = with_overrides(cfg, {"data.split_file": str((out / "splits" / f"fold_{i}.csv").resolve())})
        log.info("fold %d/%d: %s %s", i, k, "resuming" if state == "resume" else "training", run_dir)
        train_one(fold_cfg, dataset, run_dir, state == "resume", f"fold_{i}")
        actions.append("resumed" if state == "resume" else "trained")
    return actions


def collect_oof(out: Path, k: int, classes: list[str]) -> Oof:
    """Every fold's calibrated validation predictions, as one table (each image once)."""
    parts = []
    for i in range(1, k + 1):
        oof = read_run_oof(out / f"fold_{i}")
        if oof.classes != classes:
            raise DataError(
                f"{out / f'fold_{i}'} was trained on other classes than the dataset has now; use a new --out"
            )
        oof.folds = np.full(len(oof.paths), i, dtype=int)
        parts.append(oof)
    merged = Oof(
        [p for o in parts for p in o.paths],
        np.concatenate([o.labels for o in parts]),
        np.concatenate([o.probs for o in parts]),
        classes,
        np.concatenate([o.folds for o in parts]),
        parts[0].task,
    )
    dup = pd.Series(merged.paths).duplicated()
    if dup.any():
        raise DataError(f"image {merged.paths[int(np.flatnonzero(dup)[0])]} is in the validation split of two folds")
    return merged


def interval(values: list[float]) -> dict[str, Any]:
    mean, std, lo, hi = mean_std_ci(values)
    clean = lambda v: None if math.isnan(v) else v  # noqa: E731 - JSON has no NaN
    return {"mean": mean, "std": clean(std), "ci95": [clean(lo), clean(hi)], "values": values}


def summarize(out: Path, k: int, oof: Oof, metric: Metric | None = None) -> dict[str, Any]:
    """Per-fold rows (scored on calibrated probabilities), the spread over folds, and the OOF scores;
    ``metric`` (the config's ``train.metric``, default accuracy) is among them and named in ``metric``."""
    metric = metric or get_metric("accuracy")
    task = oof.task if not oof.task.multiclass else None
    rows = []
    for i in range(1, k + 1):
        run_summary = BlendDir(out).fold(i).read_summary()
        mask = oof.folds == i
        rows.append(
            {
                "fold": i,
                **scores(oof.labels[mask], oof.probs[mask], metric, task),
                "best_epoch": run_summary.get("best_epoch"),
                "epochs_run": run_summary.get("epochs_run"),
                "temperature": run_summary.get("temperature"),
                "train_seconds": run_summary.get("train_seconds"),
                "train_images": run_summary.get("train_images"),
            }
        )
    others = SCORES[oof.task.kind] if task is not None else ("accuracy", "macro_f1", "log_loss")
    names = dict.fromkeys((metric.name, *others))  # the run's metric first
    return {
        "folds": k,
        "metric": metric.name,
        **({"metric_k": metric.k} if metric.name == "top_k" else {}),
        "per_fold": rows,
        "cv": {name: interval([r[name] for r in rows]) for name in names},
        "oof": scores(oof.labels, oof.probs, metric, task),
        **({"task": oof.task.kind} if task is not None else {}),
        "train_seconds": sum(r["train_seconds"] or 0.0 for r in rows),
        "refit": False,
    }


def median_best_epoch(per_fold: list[dict[str, Any]]) -> int:
    """The epoch count for refit: the median of the folds' best epochs, rounded half up, at least 1."""
    best = [int(r["best_epoch"]) for r in per_fold if r.get("best_epoch")]
    if not best:
        raise DataError("no fold recorded a best epoch; cannot choose the refit's epoch count")
    return max(1, int(math.floor(float(np.median(best)) + 0.5)))


def run_cv(
    cfg: Config,
    dataset: Path,
    out: Path,
    *,
    folds: int,
    train_one: TrainFn,
    refit: bool = False,
) -> dict[str, Any]:
    """Plan (or re-read) the folds, train what is missing, then write OOF, summary, label issues, report."""
    from imgclf.experiments.cv_refit import run_refit
    from imgclf.experiments.cv_report import write_cv_report
    from imgclf.report.label_review import write_label_review

    out, dataset = Path(out), Path(dataset)
    cfg, new = _check_resume(cfg, out, folds)
    samples = load_training_set(
        dataset,
        Path(cfg.data.blocklist) if cfg.data.blocklist else None,
        task=cfg.data.task,
        target_column=cfg.data.target_column,
    )
    out.mkdir(parents=True, exist_ok=True)
    fold_of = plan_folds(samples, out, folds, cfg.data.split_seed)
    if new:
        _record_start(cfg, dataset, out, folds)
    write_fold_splits(samples, fold_of, out)
    actions = train_runs(cfg, dataset, out, folds, train_one)
    oof = collect_oof(out, folds, samples.classes)
    write_oof(BlendDir(out).oof, oof)
    atomic_write_json(BlendDir(out).classes, samples.classes)
    if not oof.task.multiclass:
        atomic_write_json(BlendDir(out).task, oof.task.to_dict())
    trained = build_config(read_yaml(RunDir(out / "fold_1").config))  # the metric the folds resolved and kept by
    summary = summarize(out, folds, oof, metric_of(trained.train, samples.task))
    summary["actions"] = actions
    summary["label_issues"] = None
    if available("cleanlab"):
        rank = {"multilabel": rank_multilabel_issues, "regression": rank_value_issues}.get(
            samples.task, rank_label_issues
        )
        ranked = rank(oof.labels, oof.probs)
        write_label_issues(BlendDir(out).label_issues, oof, ranked)
        write_label_review(BlendDir(out).label_issues, dataset)  # label_issues.html: the candidates as thumbnails
        summary["label_issues"] = int(len(ranked))
    else:
        log.warning("no label-issue candidates: cleanlab is not installed (%s)", install_hint("cleanlab"))
    if refit:
        summary["refit"] = run_refit(cfg, dataset, out, median_best_epoch(summary["per_fold"]), train_one)
    atomic_write_json(BlendDir(out).summary, summary)
    summary["report"] = str(write_cv_report(out))
    return summary
