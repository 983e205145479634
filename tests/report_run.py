"""One tiny trained run shared by the report tests (trained once per test session, through the CLI)."""

from __future__ import annotations

from pathlib import Path

from conftest import TINY, make_dataset

from imgclf.cli.main import run


def trained_run(tmp_path_factory) -> Path:
    """A 1-epoch ``test_efficientnet`` run on a 3-class 32 px dataset; ``train`` wrote its report.html."""
    root = tmp_path_factory.getbasetemp() / "report-run"
    run_dir = root / "run"
    if not (run_dir / "summary.json").is_file():
        dataset = make_dataset(root / "data", per_class=6, test=0)
        args = ["train", str(dataset), "--out", str(run_dir)]
        for item in TINY + ["train.epochs=1"]:
            args += ["--set", item]
        run(args)
    return run_dir
