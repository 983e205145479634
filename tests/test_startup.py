"""Instant start (issue 29): --help, --version, every command's help and a config error import no heavy library.

Each check runs in a fresh interpreter (the test process itself has torch loaded by conftest) and looks at
``sys.modules`` afterwards: a test of what is imported, not of how long it took, so it holds on any machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "timm", "mlflow", "optuna", "sklearn", "pandas", "matplotlib", "scipy", "cleanlab")
COMMANDS = [
    "demo",
    "prepare",
    "show-augs",
    "train",
    "evaluate",
    "predict",
    "cv",
    "ensemble",
    "report",
    "compare",
    "ablate",
    "sweep",
    "sweep-transfer",
    "export",
    "kaggle",
    "kaggle download",
    "kaggle submit",
]

_PROBE = """
import json, sys
from imgclf.cli.main import run
codes = []
for argv in json.loads(sys.argv[1]):
    try:
        run(argv)
        codes.append(0)
    except SystemExit as exc:
        codes.append(exc.code or 0)
print(json.dumps({"codes": codes, "heavy": [m for m in json.loads(sys.argv[2]) if m in sys.modules]}), file=sys.__stdout__)
"""


def _heavy_after(argvs: list[list[str]], cwd: Path) -> dict:
    """Run the CLI in-process in a fresh interpreter for each argv in turn; which heavy modules got imported."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(argvs), json.dumps(HEAVY)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_cli_imports_no_torch(tmp_path):
    assert _heavy_after([], tmp_path) == {"codes": [], "heavy": []}


def test_version_and_help_import_no_torch(tmp_path):
    result = _heavy_after([["--version"], ["--help"]], tmp_path)
    assert result == {"codes": [0, 0], "heavy": []}


def test_every_command_help_imports_no_torch(tmp_path):
    result = _heavy_after([[*command.split(), "--help"] for command in COMMANDS], tmp_path)
    assert result == {"codes": [0] * len(COMMANDS), "heavy": []}


def test_an_unknown_set_key_is_refused_before_torch_is_imported(tmp_path):
    (tmp_path / "data").mkdir()
    argvs = [
        ["train", "data", "--set", "train.epochz=3"],
        ["cv", "data", "--out", "cvout", "--set", "train.epochz=3"],
        ["show-augs", "data", "--set", "train.epochz=3"],
    ]
    result = _heavy_after(argvs, tmp_path)
    assert result == {"codes": [2, 2, 2], "heavy": []}
    assert not (tmp_path / "cvout").exists()
