"""The core commands: demo, train, evaluate, predict. Each parses, builds a config, calls one function, prints."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from imgclf.cli.console import RichTrainingProgress, console
from imgclf.config import Config, load_config, read_yaml, build_config
from imgclf.errors import ConfigError, DataError

CONFIG_HELP = "YAML config file (sections data/model/finetune/train/tta/tracking); see `imgclf train --help`."
SET_HELP = "Override one config key, e.g. --set train.epochs=5 --set model.head=mlp_bn (repeatable)."


def default_run_dir(cfg: Config) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{cfg.model.backbone}"


def build_cli_config(config: Optional[Path], overrides: list[str] | None) -> Config:
    return load_config(config, overrides or [])


def train(
    dataset: Optional[Path] = typer.Argument(None, help="Dataset folder (train/<class>/images, optional test/ and sample_submission.csv) or a CSV of path,label."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    set_: list[str] = typer.Option([], "--set", "-s", help=SET_HELP),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory to create (default runs/<time>-<backbone>)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue an interrupted run from its last checkpoint."),
) -> None:
    """Fine-tune a pretrained backbone on DATASET and write a run directory.

    The run directory holds config.yaml, metrics.csv (one row per epoch, with its time),
    summary.json, split.csv, classes.json, environment.json, val_predictions.csv and
    checkpoints/ (best.safetensors, last.pt).
    """
    from imgclf.train.loop import Hooks, fit
    from imgclf.train.rundir import RunDir

    if resume is not None:
        run = RunDir(resume)
        run.require("config", "info", "last")
        if config or set_:
            raise ConfigError("--resume continues a run with its saved config.yaml; drop --config/--set")
        cfg = build_config(read_yaml(run.config))
        dataset = dataset or Path(run.read_info()["dataset"])
        out = resume
    else:
        if dataset is None:
            raise DataError("missing DATASET: imgclf train DATASET [--config FILE] [--set key=value]")
        cfg = build_cli_config(config, set_)
        out = out or default_run_dir(cfg)
        if (out / "summary.json").exists() or (out / "checkpoints" / "last.pt").exists():
            raise ConfigError(f"run directory {out} already holds a run; choose another --out or use --resume {out}")
    if not Path(dataset).exists():
        raise DataError(f"dataset not found: {dataset}")
    summary = fit(cfg, Path(dataset), out, resume=resume is not None, hooks=Hooks(progress=RichTrainingProgress()))
    console.print(
        f"[bold]done[/]: val accuracy {summary['val_accuracy']:.4f} (best epoch {summary['best_epoch']} of "
        f"{summary['epochs_run']}), {summary['train_seconds']:.0f}s of training — run: {out}",
        highlight=False, soft_wrap=True,
    )


def evaluate(
    run_dir: Path = typer.Argument(..., help="A finished run directory."),
    dataset: Optional[Path] = typer.Argument(None, help="Labelled data to score on (default: the run's own validation split)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for metrics.json, per_class.csv, confusion_matrix.csv/png (default RUN_DIR/eval)."),
    batch_size: int = typer.Option(64, help="Images per forward pass."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
) -> None:
    """Accuracy, macro-F1, per-class precision/recall and the confusion matrix of a run."""
    from imgclf.infer.jobs import evaluate_run

    result = evaluate_run(run_dir, dataset, out, batch_size=batch_size, device=device)
    table = Table(title=f"{run_dir} on {result['evaluated_on']}")
    for col in ("class", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="right" if col != "class" else "left")
    for row in result["per_class"].itertuples(index=False):
        table.add_row(str(row[0]), f"{row[1]:.3f}", f"{row[2]:.3f}", f"{row[3]:.3f}", str(row[4]))
    console.print(table)
    console.print(
        f"accuracy {result['accuracy']:.4f}  macro-F1 {result['macro_f1']:.4f}  images {result['images']}  "
        f"forward passes {result['forward_passes']}  ({result['seconds']:.1f}s)",
        highlight=False, soft_wrap=True,
    )
    if "ece_before" in result:
        console.print(f"calibration: temperature {result['temperature']:.3f}, ECE {result['ece_before']:.4f} → {result['ece_after']:.4f}")
    console.print(f"written to {result['out']}")


def predict(
    run_dir: Path = typer.Argument(..., help="A finished run directory."),
    images_dir: Path = typer.Argument(..., help="Folder of images to classify (e.g. the competition's test/)."),
    out: Path = typer.Option(Path("submission.csv"), "--out", "-o", help="Submission CSV to write."),
    probs: Optional[Path] = typer.Option(None, "--probs", help="Also write class probabilities to this CSV."),
    sample: Optional[Path] = typer.Option(None, "--sample", help="sample_submission.csv giving columns and id order (default: found beside IMAGES_DIR)."),
    category: str = typer.Option("auto", help="Write categories as 'index' (position in classes.json), 'name', or 'auto' (follow the sample)."),
    batch_size: int = typer.Option(64, help="Images per forward pass."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
) -> None:
    """Classify every image in IMAGES_DIR and write a competition submission (format from sample_submission.csv)."""
    from imgclf.infer.jobs import predict_folder

    if category not in ("auto", "index", "name"):
        raise ConfigError(f"--category must be auto, index or name (got {category!r})")
    result = predict_folder(run_dir, images_dir, out, probs_out=probs, sample=sample, category=category, batch_size=batch_size, device=device)
    console.print(
        f"wrote {result['out']}: {result['images']} rows, format {result['format']}, "
        f"{result['forward_passes']} forward passes in {result['seconds']:.1f}s",
        highlight=False, soft_wrap=True,
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
        f"run: {result['run_dir']}   submission: {result['submission']}",
        highlight=False, soft_wrap=True,
    )
