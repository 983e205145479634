"""``imgclf sweep`` (Optuna search on a cheap proxy) and ``imgclf sweep-transfer`` (does the proxy's ranking hold on the target?)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer

from imgclf.cli.commands import CONFIG_HELP, SET_HELP, build_cli_config
from imgclf.terminal import console

# No password in the example: the output redaction would mask it (and break the help box's border).
STORAGE_HELP = (
    "Optuna storage URL (default sqlite:///<out>/optuna.db); postgresql://USER@HOST/DB lets several machines share one "
    "study (the password from PGPASSWORD or ~/.pgpass keeps it off the command line)."
)


def sweep_command(
    dataset: Path = typer.Argument(..., help="Dataset folder (as for imgclf train)."),
    space: Path = typer.Option(
        ...,
        "--space",
        help="Search space YAML: config keys → {type: float|int|categorical, ...}; may also hold a proxy: section.",
    ),
    trials: int = typer.Option(
        20, "--trials", "-n", help="Trials this worker runs (several workers on one study add up)."
    ),
    proxy: Optional[Path] = typer.Option(
        None,
        "--proxy",
        help="Proxy overrides YAML (e.g. model.weights, data.image_size, data.subset, train.epochs); replaces the space file's proxy: section.",
    ),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Base (target) config. " + CONFIG_HELP),
    set_: list[str] = typer.Option([], "--set", "-s", help=SET_HELP),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_HELP),
    study: Optional[str] = typer.Option(None, "--study", help="Study name (default: the space file's name)."),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        help="Sweep folder: trials/NNNN run directories, optuna.db, mlflow.db (default sweeps/<study>).",
    ),
    seed: int = typer.Option(0, "--seed", help="TPE sampler seed; give each parallel worker its own."),
    pruner: str = typer.Option(
        "median",
        "--pruner",
        help="median, hyperband or none: stop trials whose per-epoch validation score is hopeless.",
    ),
    tracking_uri: Optional[str] = typer.Option(
        None, "--tracking-uri", help="MLflow store for the trials (default <out>/mlflow.db)."
    ),
) -> None:
    """Search hyperparameters with Optuna (seeded TPE, pruning) on a cheap proxy of the target job.

    Each trial is an ordinary run directory <out>/trials/NNNN. Then: imgclf train DATASET --from-sweep STUDY,
    and imgclf sweep-transfer STUDY --target CONFIG to check the proxy's ranking holds on the target.
    """
    base = build_cli_config(config, set_)  # a config error answers before torch and optuna are imported
    from imgclf.experiments.space import read_proxy, read_space
    from imgclf.experiments.sweep import SweepOptions, default_out, run_sweep

    params, proxy_values = read_space(space)
    if proxy is not None:
        proxy_values = read_proxy(proxy)
    study = study or space.stem
    out = out or default_out(study)

    def on_trial(trial) -> None:
        value = "—" if trial.value is None else f"{trial.value:.4f}"
        values = ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
        secs = trial.user_attrs.get("train_seconds")
        secs_text = f"  {secs:.0f}s" if isinstance(secs, (int, float)) else ""
        console.print(
            f"trial {trial.number:>4}  {trial.state.name.lower():<8} {value}{secs_text}  {values}",
            highlight=False,
            soft_wrap=True,
        )

    console.print(
        f"study {study}: {trials} trial(s), space {', '.join(p.key for p in params)}; proxy {proxy_values or 'none'}",
        highlight=False,
        soft_wrap=True,
    )
    result = run_sweep(
        dataset,
        base,
        params,
        SweepOptions(
            trials=trials,
            study=study,
            out=out,
            storage=storage,
            seed=seed,
            pruner=pruner,
            proxy=proxy_values,
            tracking_uri=tracking_uri,
            on_trial=on_trial,
        ),
    )
    counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(result.counts.items()))
    console.print(f"[bold]study {result.study}[/] ({result.storage}): {counts}", highlight=False, soft_wrap=True)
    if result.best_trial is not None:
        best = ", ".join(f"{k}={_short(v)}" for k, v in result.best_params.items())
        console.print(
            f"best trial {result.best_trial}: {result.monitor} {result.best_value:.4f}  {best}\nrun: {result.best_run_dir}",
            highlight=False,
            soft_wrap=True,
        )
        storage_opt = f" --storage {result.storage}" if storage else ""
        console.print(
            f"next: imgclf train {dataset} --from-sweep {result.study}{storage_opt} [--config TARGET.yaml]",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )


def sweep_transfer_command(
    study: str = typer.Argument(..., help="The sweep's study name."),
    target: Path = typer.Option(
        ..., "--target", help="Config YAML of the target job (bigger backbone, image size, all data, more epochs)."
    ),
    top: int = typer.Option(2, "--top", help="Retrain this many of the proxy's best trials."),
    bottom: int = typer.Option(2, "--bottom", help="Retrain this many of the proxy's worst trials."),
    set_: list[str] = typer.Option([], "--set", "-s", help=SET_HELP),
    storage: Optional[str] = typer.Option(
        None, "--storage", help="The sweep's storage URL (default sqlite:///sweeps/<study>/optuna.db)."
    ),
    dataset: Optional[Path] = typer.Option(None, "--dataset", help="Dataset (default: the one the sweep used)."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Folder for the target runs and transfer.{md,csv} (default <sweep out>/transfer)."
    ),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow store for the target runs."),
) -> None:
    """Retrain the best and worst proxy trials on the target job; report Spearman rank correlation and compute ratio."""
    from imgclf.experiments.sweep import default_out, default_storage
    from imgclf.experiments.transfer import sweep_transfer

    cfg = build_cli_config(target, set_)
    url = storage or default_storage(default_out(study))

    def on_run(row) -> None:
        console.print(
            f"trial {row['trial']:>4} ({row['group']}): proxy {row['proxy_score']:.4f} → target {row['target_score']:.4f}  "
            f"{row['target_seconds']:.0f}s vs {row['proxy_seconds']:.0f}s",
            highlight=False,
            soft_wrap=True,
        )

    result = sweep_transfer(
        study, url, cfg, top=top, bottom=bottom, out=out, dataset=dataset, tracking_uri=tracking_uri, on_run=on_run
    )
    console.print(result.markdown, highlight=False, soft_wrap=True, markup=False)
    rho = "undefined" if math.isnan(result.spearman) else f"{result.spearman:.3f}"
    console.print(
        f"Spearman {rho}, compute ratio {result.compute_ratio:.1f}× wall, {result.cpu_ratio:.1f}× CPU — written: {result.out / 'transfer.md'}, {result.out / 'transfer.csv'}",
        highlight=False,
        soft_wrap=True,
    )


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
