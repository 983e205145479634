"""The core commands: demo, train, evaluate, predict. Each parses, builds a config, calls one function, prints."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table

from imgclf.cli import tta_options
from imgclf.terminal import RichTrainingProgress, console

if TYPE_CHECKING:
    from imgclf.config import Config

CONFIG_HELP = "YAML config file (sections data/model/finetune/train/tta/tracking); `imgclf train --print-config` shows every key with its default."
DEVICE_HELP = "auto (CUDA when there is one, else the CPU), cpu, cuda or cuda:N."
SET_HELP = "Override one config key, e.g. --set train.epochs=5 --set model.head=mlp_bn (repeatable)."


def build_cli_config(config: Optional[Path], overrides: list[str] | None) -> Config:
    from imgclf.config import load_config  # pydantic: not on the path of --help and --version

    return load_config(config, overrides or [])


def train(
    dataset: Optional[Path] = typer.Argument(
        None,
        help="Dataset folder (train/<class>/images, optional test/ and sample_submission.csv), or a labels CSV: path,label, tags, 0/1 columns or a number.",
    ),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    set_: list[str] = typer.Option([], "--set", "-s", help=SET_HELP),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Run directory to create (default runs/<time>-<backbone>)."
    ),
    resume: Optional[Path] = typer.Option(
        None,
        "--resume",
        help="Continue an interrupted run from its last checkpoint; with --set train.epochs=N, extend a run (finished or not) to N epochs.",
    ),
    deterministic: bool = typer.Option(
        False,
        "--deterministic",
        help="Seed everything and use deterministic algorithms (sets train.deterministic=true): two runs of one config give the same metrics.",
    ),
    tracking_uri: Optional[str] = typer.Option(
        None,
        "--tracking-uri",
        help="MLflow store (default $MLFLOW_TRACKING_URI or sqlite:///<runs folder>/mlflow.db; tracking.enabled=false turns it off).",
    ),
    from_sweep: Optional[str] = typer.Option(
        None,
        "--from-sweep",
        help="Apply the best values of this sweep study (backbone, weights, image size, subset, epochs stay this config's).",
    ),
    storage: Optional[str] = typer.Option(
        None, "--storage", help="Storage URL of the --from-sweep study (default sqlite:///sweeps/<study>/optuna.db)."
    ),
    devices: int = typer.Option(
        1,
        "--devices",
        min=1,
        help="Data-parallel on N local processes (one per GPU, or N CPU processes): launches torchrun for you. data.batch_size stays the global batch.",
    ),
    refit: bool = typer.Option(
        False,
        "--refit",
        help="After training, train one more model on every image (RUN/refit) for the best epoch count validation chose; predict with RUN/refit.",
    ),
    budget: Optional[str] = typer.Option(
        None,
        "--budget",
        help="Wall-clock budget like 90s, 20m or 1.5h for the whole run: measure speed, choose the largest image size that fits and that the data is shown to need (a frozen-feature probe by size), train the final model(s) at that size with their epochs timed by the clock, holding out data.val_fraction (0.2) of the images, then score what is submitted on them: the estimate, with its standard error. Writes RUN/recipe.json.",
    ),
    print_config: bool = typer.Option(
        False,
        "--print-config",
        help="Print the resolved config (defaults, then --config, then --set) as YAML and exit; a starting point for your own config file.",
    ),
) -> None:
    """Fine-tune a pretrained backbone on DATASET and write a run directory.

    The run directory holds config.yaml, metrics.csv (one row per epoch, with its time),
    summary.json, split.csv, classes.json, environment.json, val_predictions.csv and
    checkpoints/ (best.safetensors, last.pt).

    --set train.metric=accuracy|log_loss|macro_f1|qwk|roc_auc|top_k (the competition's metric) picks the
    kept checkpoint and early stopping and adds val_<metric> to metrics.csv and summary.json.

    A labels CSV with space-separated tags, one 0/1 column per label, or a numeric target trains a multilabel
    or regression model (data.task, found from the labels; task.json says which): metrics
    map|mean_auc|f1_micro|f1_macro|f1_samples|f2_samples|bce, or rmse|mae|r2|qwk.
    """
    from imgclf import api

    if print_config:
        import yaml

        console.print(
            yaml.safe_dump(build_cli_config(config, set_).to_dict(), sort_keys=False), highlight=False, end=""
        )
        return
    summary = api.train(
        dataset,
        out,
        config=config,
        overrides=set_,
        resume=resume,
        deterministic=deterministic,
        tracking_uri=tracking_uri,
        from_sweep=from_sweep,
        storage=storage,
        devices=devices,
        refit=refit,
        progress=RichTrainingProgress(),
        budget=budget,
    )
    from imgclf.runtime import is_main_process as is_main  # torch: after the config's errors

    if not is_main():
        return  # under torchrun, rank 0 reports for every process
    report = summary["report"]
    refit_note = f" — refit: {summary['refit']['run']} (predict with it)" if summary.get("refit") else ""
    if summary.get("recipe"):
        refit_note += (
            f" — budget {summary['recipe']['budget_seconds']:.0f}s, used {summary['recipe']['elapsed_seconds']:.0f}s"
            f"; {estimate_text(summary['recipe'].get('estimate') or {})}"
        )
    console.print(
        f"[bold]done[/]: {describe_result(summary)}, {summary['train_seconds']:.0f}s of training — run: {summary['run_dir']}{refit_note}"
        + (f" — report: {report}" if report else ""),
        highlight=False,
        soft_wrap=True,
    )


def estimate_text(estimate: dict) -> str:
    """``estimate 0.8230 ± 0.0150 accuracy: the submitted …`` from a budget run's ``recipe.estimate``."""
    if estimate.get("value") is None:
        return f"estimate {estimate.get('what', 'none')}"
    from imgclf.report.recipe import over_one_model_text

    se = f" ± {estimate['se']:.4f}" if estimate.get("se") is not None else ""
    extras = over_one_model_text(estimate)
    return f"estimate {estimate['value']:.4f}{se} {estimate.get('metric', 'accuracy')}: {estimate.get('what', '')}" + (
        f"; {extras}" if extras else ""
    )


def describe_result(summary: dict) -> str:
    members = int((summary.get("recipe") or {}).get("members") or 1)
    if members > 1:
        return (
            f"trained {members} models, the first for {summary['epochs_run']} epoch(s): an equal-weight ensemble "
            "that predict blends"
        )
    if summary.get("recipe"):
        return f"trained one model for {summary['epochs_run']} epoch(s)"
    if summary.get("val_accuracy") is None and summary.get("val_loss") is None:
        return f"trained {summary['epochs_run']} epoch(s) on every image (no validation split)"
    metric = summary.get("metric", "accuracy")
    if summary.get("task") in ("multilabel", "regression"):
        value = summary.get(f"val_{metric}")
        shown = f"{value:.4f}" if value is not None else "undefined"
        return f"val {metric} {shown} (best epoch {summary['best_epoch']} of {summary['epochs_run']})"
    own = (
        f"val {metric} {summary[f'val_{metric}']:.4f}, "
        if metric != "accuracy" and summary.get(f"val_{metric}") is not None
        else ""
    )
    return f"{own}val accuracy {summary['val_accuracy']:.4f} (best epoch {summary['best_epoch']} of {summary['epochs_run']})"


def evaluate(
    run_dir: Path = typer.Argument(
        ...,
        help="A finished run directory (a budget run with members is scored as their blend), a CV folder or an ensemble folder.",
    ),
    dataset: Optional[Path] = typer.Argument(
        None,
        help="Labelled data to score on, e.g. the holdout folder of `imgclf prepare --holdout` (default: the run's own validation split; a CV or ensemble folder's out-of-fold predictions).",
    ),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        help="Folder for metrics.json, per_class.csv, confusion_matrix.csv/png (default RUN_DIR/eval).",
    ),
    batch_size: int = typer.Option(64, min=1, help="Images per forward pass."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    tta: Optional[str] = tta_options.TTA_OPTION,
    tta_threshold: Optional[float] = tta_options.THRESHOLD_OPTION,
    tta_max_views: Optional[int] = tta_options.MAX_VIEWS_OPTION,
    tta_budget: Optional[int] = tta_options.BUDGET_OPTION,
    tta_views: Optional[str] = tta_options.VIEWS_OPTION,
    tta_compare: bool = tta_options.COMPARE_OPTION,
    tta_ns: str = tta_options.NS_OPTION,
    tta_measure: bool = tta_options.MEASURE_OPTION,
) -> None:
    """The run's metric (train.metric), accuracy, macro-F1, log-loss (before and after temperature scaling),
    per-class precision/recall and the confusion matrix of a run."""
    from imgclf.infer.jobs import evaluate_run
    from imgclf.infer.tta_config import tta_from_options
    from imgclf.run.claim import check_folder
    from imgclf.runtime import resolve_device

    resolve_device(device)
    if out is not None:  # a new or empty folder, or an earlier evaluation's: never a folder of other files
        check_folder(out, "evaluate")

    tta_cfg = tta_from_options(run_dir, tta, tta_threshold, tta_max_views, tta_budget, tta_views)
    if tta_compare:
        tta_options.print_tta_compare(run_dir, dataset, out, tta_cfg, tta_ns, batch_size, device, tta_measure)
        return
    result = evaluate_run(run_dir, dataset, out, tta=tta_cfg, batch_size=batch_size, device=device)
    blend = f" (the blend of its {result['models']} models)" if result.get("models", 1) > 1 else ""
    if "task" in result:  # multilabel or regression: the scores, then where the per-label table is
        scores = "  ".join(
            f"{k} {v:.4f}" + (" (the run's metric)" if k == result["metric"] else "")
            for k, v in result.items()
            if k in TASK_SCORES and v is not None
        )
        console.print(f"{run_dir}{blend} on {result['evaluated_on']} ({result['task']}, {result['images']} images)")
        console.print(f"{scores}  ({result['seconds']:.1f}s)", highlight=False, soft_wrap=True)
        console.print(f"written to {result['out']}")
        return
    table = Table(title=f"{run_dir}{blend} on {result['evaluated_on']}")
    for col in ("class", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="right" if col != "class" else "left")
    for row in result["per_class"].itertuples(index=False):
        table.add_row(str(row[0]), f"{row[1]:.3f}", f"{row[2]:.3f}", f"{row[3]:.3f}", str(row[4]))
    console.print(table)
    how = (
        f"{tta_options.tta_text(tta_cfg)}, {tta_options.passes_text(result['forward_passes'], result['images'], result['passes_per_image'], result.get('models', 1), tta_cfg.mode == 'adaptive')}"
        if result.get("source") != "oof"
        else "no forward pass (the folds' own predictions, without TTA; pass a DATASET to predict it anew)"
    )
    console.print(
        f"{score_text(result)}  images {result['images']}  {how}  ({result['seconds']:.1f}s)",
        highlight=False,
        soft_wrap=True,
    )
    if "ece_before" in result:
        console.print(
            f"calibration: temperature {result['temperature']:.3f}, ECE {result['ece_before']:.4f} → {result['ece_after']:.4f}, "
            f"log-loss {result['log_loss_before']:.4f} → {result['log_loss_after']:.4f}"
        )
    console.print(f"written to {result['out']}")


TASK_SCORES = (
    "f1_micro", "f1_macro", "f1_samples", "f2_samples", "mean_auc", "map", "bce", "accuracy", "rmse", "mae", "r2", "qwk",
)  # fmt: skip


def score_text(result: dict) -> str:
    """``qwk 0.81 (the run's metric)  accuracy 0.90  macro-F1 0.88  log-loss 0.31``: the run's metric first."""
    names = {"accuracy": "accuracy", "macro_f1": "macro-F1", "log_loss": "log-loss"}
    metric = result.get("metric", "accuracy")
    shown = [metric, *(k for k in names if k != metric)]
    parts = [
        f"{names.get(k, k)} {result[k]:.4f}" + (" (the run's metric)" if k == metric else "")
        for k in shown
        if result.get(k) is not None
    ]
    return "  ".join(parts)


def predict(
    run_dir: Path = typer.Argument(..., help="A finished run directory."),
    images: list[str] = typer.Argument(
        ...,
        help="Images to classify: a folder (e.g. the competition's test/), image files, or glob patterns such as 'test/*.tif'.",
    ),
    out: Path = typer.Option(Path("submission.csv"), "--out", "-o", help="Submission CSV to write."),
    probs: Optional[Path] = typer.Option(None, "--probs", help="Also write class probabilities to this CSV."),
    sample: Optional[Path] = typer.Option(
        None,
        "--sample",
        help="sample_submission.csv giving columns and id order (default: found beside the images). Ids match file names or stems; a sample with one column per class gets calibrated probabilities.",
    ),
    category: str = typer.Option(
        "auto",
        help="Write categories as 'index' (position in classes.json), 'name', or 'auto' (follow the sample; names without one).",
    ),
    batch_size: int = typer.Option(64, min=1, help="Images per forward pass."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    engine: str = typer.Option(
        "torch", help="torch (PyTorch) or onnx (ONNX Runtime on the run's export/model.onnx, exported on first use)."
    ),
    tta: Optional[str] = tta_options.TTA_OPTION,
    tta_threshold: Optional[float] = tta_options.THRESHOLD_OPTION,
    tta_max_views: Optional[int] = tta_options.MAX_VIEWS_OPTION,
    tta_budget: Optional[int] = tta_options.BUDGET_OPTION,
    tta_views: Optional[str] = tta_options.VIEWS_OPTION,
) -> None:
    """Classify IMAGES and write a competition submission (format from sample_submission.csv)."""
    from imgclf import api
    from imgclf.infer.tta_config import tta_from_options
    from imgclf.runtime import resolve_device

    resolve_device(device)
    tta_cfg = tta_from_options(run_dir, tta, tta_threshold, tta_max_views, tta_budget, tta_views)
    result = api.predict(
        run_dir,
        images,
        out,
        probs=probs,
        sample=sample,
        category=category,
        batch_size=batch_size,
        device=device,
        engine=engine,
        tta=tta_cfg,
    )
    console.print(
        f"wrote {result['out']}: {result['images']} rows, format {result['format']}, {tta_options.tta_text(tta_cfg)}, "
        f"{tta_options.passes_text(result['forward_passes'], result['images'], result['passes_per_image'], result.get('models', 1), tta_cfg.mode == 'adaptive')} in {result['seconds']:.1f}s",
        highlight=False,
        soft_wrap=True,
    )


def demo(
    quick: bool = typer.Option(False, "--quick", help="A smaller, faster demo (under 3 minutes on 2 CPU cores)."),
    workdir: Path = typer.Option(Path("demo-data"), help="Where the demo dataset is materialised."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default runs/demo[-quick]-<time>)."),
) -> None:
    """The whole job on the embedded default: Fashion-MNIST subset → fine-tune embedded EfficientNet-Lite0 →
    evaluate → predict the test folder → score the submission against the held-back labels."""
    from imgclf.demo import run_demo

    result = run_demo(quick=quick, workdir=workdir, out=out, progress=RichTrainingProgress())
    console.print(
        f"\n[bold]demo finished[/] in {result['seconds']:.0f}s: validation accuracy {result['val_accuracy']:.4f}, "
        f"[bold]test accuracy {result['test_accuracy']:.4f}[/] on {result['test_images']} held-back images\n"
        f"run: {result['run_dir']}   submission: {result['submission']}"
        + (f"   report: {result['report']}" if result.get("report") else ""),
        highlight=False,
        soft_wrap=True,
    )
