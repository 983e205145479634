"""Damaged run directories: random bytes or truncations in any file of a finished run, then the
commands that read runs. Every outcome is exit 0 or exit 2 with one line — never a traceback, and
never code execution."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import cli, one_epoch_run

RUN_FILES = [
    "config.yaml",
    "classes.json",
    "preprocessing.json",
    "calibration.json",
    "summary.json",
    "run.json",
    "metrics.csv",
    "split.csv",
    "val_predictions.csv",
    "checkpoints/best.safetensors",
    "checkpoints/last.pt",
]
COMMANDS = ["predict", "evaluate", "report", "compare", "resume"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, Path]:
    return one_epoch_run(tmp_path_factory.mktemp("fuzz"))


def _damage(path: Path, how: str, data: bytes) -> None:
    original = path.read_bytes()
    if how == "truncate":
        path.write_bytes(original[: len(original) // 3])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "flip":
        cut = len(original) // 2
        path.write_bytes(original[:cut] + data + original[cut + len(data) :])
    else:
        path.write_bytes(data)


def _command(name: str, run: Path, dataset: Path, work: Path) -> list:
    return {
        "predict": ["predict", run, dataset / "test", "--out", work / "sub.csv"],
        "evaluate": ["evaluate", run, "--out", work / "eval"],
        "report": ["report", run, "--out", work / "report.html"],
        "compare": ["compare", run, "--out", work / "cmp"],
        "resume": ["train", "--resume", run],
    }[name]


@settings(
    max_examples=24,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    file=st.sampled_from(RUN_FILES),
    how=st.sampled_from(["truncate", "empty", "flip", "garbage"]),
    data=st.binary(min_size=1, max_size=64),
    command=st.sampled_from(COMMANDS),
)
def test_a_damaged_run_file_gives_exit_0_or_one_line_exit_2(finished_run, capsys, file, how, data, command):
    dataset, pristine = finished_run
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run = work / "run"
        shutil.copytree(pristine, run)
        (run / "summary.json").unlink() if command == "resume" else None  # resume continues an unfinished run
        if (run / file).exists():
            _damage(run / file, how, data)
        code, out, err = cli(_command(command, run, dataset, work), capsys)
    assert code in (0, 2), f"{command} on damaged {file} ({how}) exited {code}:\n{err[-1500:]}"
    assert "Traceback" not in err and "Traceback" not in out
    if code == 2:
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert errors and all(len(line) < 400 for line in errors)
