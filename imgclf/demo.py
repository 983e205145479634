"""The demo job: the whole pipeline on the embedded Fashion-MNIST subset, scored against held-back labels."""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Any

from imgclf.config import load_config
from imgclf.data.demo import materialise_demo, score_submission
from imgclf.tracking.session import tracking_session
from imgclf.infer.jobs import evaluate_run, predict_folder
from imgclf.report.run_report import write_run_report_safely
from imgclf.run.rundir import RunDir
from imgclf.training.loop import fit

QUICK_TRAIN_PER_CLASS = 200


def demo_config_path(quick: bool) -> Path:
    name = "demo-quick.yaml" if quick else "demo.yaml"
    return Path(str(resources.files("imgclf") / "configs" / name))


def run_demo(
    quick: bool = False,
    workdir: Path = Path("demo-data"),
    out: Path | None = None,
    progress=None,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Materialise the demo data, train, evaluate, predict ``test/`` and score it; return the figures."""
    t0 = time.perf_counter()
    paths = materialise_demo(Path(workdir), train_per_class=QUICK_TRAIN_PER_CLASS if quick else None)
    cfg = load_config(demo_config_path(quick), overrides)
    out = Path(out) if out else Path("runs") / f"demo{'-quick' if quick else ''}-{time.strftime('%Y%m%d-%H%M%S')}"
    with tracking_session(cfg, out) as callbacks:  # the demo is a run like any other: recorded in MLflow
        summary = fit(cfg, paths.dataset, out, callbacks=[*([progress] if progress else []), *callbacks])
    evaluation = evaluate_run(out)
    submission = RunDir(out).submission
    predict_folder(out, paths.dataset / "test", submission)
    scored = score_submission(submission, paths.answers)
    report = write_run_report_safely(out)  # after evaluation, so the report shows its latency too
    return {
        "seconds": time.perf_counter() - t0,
        "train_seconds": summary["train_seconds"],
        "val_accuracy": evaluation["accuracy"],
        "test_accuracy": scored["accuracy"],
        "test_images": scored["count"],
        "run_dir": str(out),
        "submission": str(submission),
        "report": str(report) if report else None,
    }
