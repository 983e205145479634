"""From proxy to target: train with a sweep's best values, and check that the proxy's ranking transfers.

``config_from_sweep`` applies the best proxy trial's values to a target config, except the keys that
define the target job itself (backbone, weights, image size, subset, epochs). ``sweep_transfer``
retrains the best and worst K proxy trials on the target job and reports the Spearman rank
correlation between proxy and target scores and the compute ratio (target seconds / proxy seconds
per trial): a high correlation at a large ratio is the evidence that the proxy is worth using.

Example::

    cfg, applied, kept = config_from_sweep(load_config("target.yaml"), "cars-lr", "sqlite:///sweeps/cars-lr/optuna.db")
    result = sweep_transfer("cars-lr", storage, load_config("target.yaml"), top=2, bottom=2, out=Path("sweeps/cars-lr/transfer"))
    result.spearman, result.compute_ratio
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from imgclf.config import Config, with_overrides
from imgclf.io import atomic_write_text
from imgclf.run.rundir import RunDir
from imgclf.errors import ConfigError, DataError
from imgclf.experiments.sweep import load_study
from imgclf.report.tables import markdown_table, write_csv

log = logging.getLogger("imgclf")

# What makes the target job the target job: never copied from the proxy.
TARGET_KEYS = ("model.backbone", "model.weights", "data.image_size", "data.subset", "train.epochs")


def _complete_trials(study) -> list:
    import optuna

    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def apply_sweep_params(cfg: Config, params: dict[str, Any]) -> tuple[Config, dict[str, Any], dict[str, Any]]:
    """``(config, applied, kept)``: ``params`` on top of ``cfg`` except the target-specific keys."""
    applied = {k: v for k, v in params.items() if k not in TARGET_KEYS}
    kept = {k: v for k, v in params.items() if k in TARGET_KEYS}
    try:
        return with_overrides(cfg, applied), applied, kept
    except ConfigError as exc:
        raise ConfigError(f"the sweep's values do not fit this config: {exc}") from None


def config_from_sweep(cfg: Config, study_name: str, storage_url: str) -> tuple[Config, dict[str, Any], dict[str, Any]]:
    """The target config with the study's best trial applied (see :func:`apply_sweep_params`)."""
    study = load_study(study_name, storage_url)
    if not _complete_trials(study):
        raise ConfigError(f"study {study_name!r} has no finished trial yet")
    return apply_sweep_params(cfg, dict(study.best_trial.params))


@dataclass
class TransferResult:
    rows: list[dict[str, Any]]
    spearman: float  # NaN when it is undefined (fewer than 2 trials, or constant scores)
    spearman_p: float
    compute_ratio: float  # mean target seconds / mean proxy seconds
    monitor: str
    markdown: str
    out: Path
    cpu_ratio: float = math.nan  # the same in CPU seconds of the training process (NaN when a trial lacks them)


def pick_trials(study, top: int, bottom: int) -> list[tuple[str, Any]]:
    """The best ``top`` and the worst ``bottom`` finished trials (no trial twice), best first."""
    if top < 0 or bottom < 0 or top + bottom < 2:
        raise ConfigError(
            "--top and --bottom must be >= 0 and pick at least 2 trials together (a rank correlation needs two)"
        )
    maximize = study.direction.name == "MAXIMIZE"
    ranked = sorted(_complete_trials(study), key=lambda t: t.value, reverse=maximize)
    if len(ranked) < 2:
        raise ConfigError(
            f"study {study.study_name!r} has {len(ranked)} finished trial(s); a transfer check needs at least 2"
        )
    picked = [("top", t) for t in ranked[:top]]
    taken = {t.number for _, t in picked}
    worst = [t for t in ranked[::-1] if t.number not in taken][:bottom]
    picked += [("bottom", t) for t in reversed(worst)]
    return picked


def sweep_transfer(
    study_name: str,
    storage_url: str,
    target: Config,
    *,
    top: int = 2,
    bottom: int = 2,
    out: Path | None = None,
    dataset: Path | None = None,
    tracking_uri: str | None = None,
    on_run: Callable[[dict[str, Any]], None] | None = None,
) -> TransferResult:
    """Retrain the picked proxy trials on ``target``; write ``transfer.md`` and ``transfer.csv`` into ``out``."""
    from imgclf.tracking.session import tracking_session
    from imgclf.training.loop import fit

    study = load_study(study_name, storage_url)
    picked = pick_trials(study, top, bottom)
    dataset = Path(dataset or study.user_attrs.get("dataset", ""))
    if not str(dataset) or not dataset.exists():
        raise DataError(f"dataset of study {study_name!r} not found ({dataset}); pass --dataset")
    monitor = study.user_attrs.get("monitor", target.train.monitored)
    out = Path(out or Path(study.user_attrs.get("out", Path("sweeps") / study_name)) / "transfer")
    if target.tracking.experiment == "imgclf":
        target = with_overrides(target, {"tracking.experiment": f"transfer-{study_name}"})
    rows = []
    for group, trial in picked:
        cfg, applied, _ = apply_sweep_params(target, decoded(trial.params))
        run_dir = out / f"trial-{trial.number:04d}"
        if RunDir(run_dir).holds_run():
            raise ConfigError(f"{run_dir} already holds a run; choose another --out")
        with tracking_session(
            cfg, run_dir, tracking_uri, tags={"imgclf.study": study_name, "imgclf.trial": str(trial.number)}
        ) as cbs:
            summary = fit(cfg, dataset, run_dir, callbacks=cbs)
        proxy_seconds = float(trial.user_attrs.get("train_seconds", math.nan))
        proxy_cpu = float(trial.user_attrs.get("train_cpu_seconds") or math.nan)
        row = {
            "trial": trial.number,
            "group": group,
            "proxy_score": float(trial.value),
            "target_score": float(summary[monitor]),
            "proxy_seconds": proxy_seconds,
            "target_seconds": float(summary["train_seconds"]),
            "ratio": float(summary["train_seconds"]) / proxy_seconds if proxy_seconds > 0 else math.nan,
            "proxy_cpu_seconds": proxy_cpu,
            "target_cpu_seconds": float(summary.get("train_cpu_seconds") or math.nan),
            **{k: v for k, v in applied.items()},
            "run_dir": str(run_dir),
        }
        rows.append(row)
        if on_run:
            on_run(row)
    rho, p = _spearman([r["proxy_score"] for r in rows], [r["target_score"] for r in rows])
    ratio = _ratio(rows, "target_seconds", "proxy_seconds")
    cpu_ratio = _ratio(rows, "target_cpu_seconds", "proxy_cpu_seconds")
    markdown = _markdown(study_name, monitor, rows, rho, p, ratio, cpu_ratio)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "transfer.csv", rows)
    atomic_write_text(out / "transfer.md", markdown)
    return TransferResult(
        rows=rows,
        spearman=rho,
        spearman_p=p,
        compute_ratio=ratio,
        monitor=monitor,
        markdown=markdown,
        out=out,
        cpu_ratio=cpu_ratio,
    )


def decoded(params: dict[str, Any]) -> dict[str, Any]:
    """A trial's values as config values: the budget recipe stores list values (``data.crop_scale``) and
    its ``null`` choices as JSON text labels, which Optuna's storage can hold."""
    out = {}
    for key, value in params.items():
        if isinstance(value, str) and (value.startswith("[") or value == "null"):
            try:
                value = json.loads(value)
            except ValueError:
                pass  # a plain string that merely starts with "[": the config judges it
        out[key] = value
    return out


def _ratio(rows: list[dict[str, Any]], target: str, proxy: str) -> float:
    """Mean target over mean proxy, over the rows that have both (NaN when none has)."""
    both = [r for r in rows if not (math.isnan(r[target]) or math.isnan(r[proxy]))]
    proxy_mean = _mean([r[proxy] for r in both])
    return _mean([r[target] for r in both]) / proxy_mean if proxy_mean > 0 else math.nan


def _spearman(x: list[float], y: list[float]) -> tuple[float, float]:
    from scipy.stats import spearmanr

    if len(x) < 2:
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: the correlation is undefined, reported as NaN
        result = spearmanr(x, y)
    return float(result.statistic), float(result.pvalue)


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _markdown(
    study: str, monitor: str, rows: list[dict[str, Any]], rho: float, p: float, ratio: float, cpu_ratio: float
) -> str:
    shown = [{k: v for k, v in r.items() if k != "run_dir"} for r in rows]
    rho_text = (
        "undefined (fewer than 2 trials or constant scores)"
        if math.isnan(rho)
        else f"{rho:.3f} (p = {p:.3g}, n = {len(rows)})"
    )
    return (
        f"# Proxy → target transfer: study `{study}`\n\n"
        f"Scores are {monitor}; `group` says whether a trial was among the proxy's best or worst.\n\n"
        f"{markdown_table(shown)}\n"
        f"- Spearman rank correlation between proxy and target scores: **{rho_text}**\n"
        f"- Compute ratio (mean target seconds / mean proxy seconds per trial): **{ratio:.1f}×** wall-clock, "
        f"**{cpu_ratio:.1f}×** in CPU seconds of the training process (the fairer figure on a shared machine: "
        f"other jobs stretch wall time, not CPU time)\n"
    )
