"""Help pages and --version: what a new user reads first must be right (issue 17, help and README bugs)."""

from __future__ import annotations

import pytest

from conftest import cli

COMMANDS = [
    "demo",
    "prepare",
    "show-augs",
    "train",
    "evaluate",
    "predict",
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


@pytest.fixture(autouse=True)
def _wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")


def test_version_and_short_help(capsys):
    code, out, _ = cli(["--version"], capsys)
    assert code == 0 and out.startswith("imgclf ") and len(out.strip().split()) >= 2
    code, out, _ = cli(["-h"], capsys)
    assert code == 0 and "Usage: imgclf" in out and "train" in out and "--version" in out


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_no_bool_placeholder_after_flags(command, capsys):
    code, out, _ = cli([*command.split(), "-h"], capsys)
    assert code == 0 and "Usage:" in out
    assert "<bool>" not in out


def test_sweep_help_shows_its_example_whole_inside_an_unbroken_box(capsys):
    code, out, _ = cli(["sweep", "--help"], capsys)
    assert code == 0
    assert "postgresql://USER@HOST/DB" in out and "***" not in out
    box = [line.rstrip() for line in out.splitlines() if line.lstrip().startswith(("│", "╭", "╰"))]
    assert box and len({len(line) for line in box}) == 1  # a masked line would be shorter than its border


def test_export_help_keeps_the_bracketed_input_shape(capsys):
    code, out, _ = cli(["export", "--help"], capsys)
    assert code == 0 and "float32 [batch, 3, size, size]" in out


def test_kaggle_help_says_how_to_install_from_a_checkout(capsys):
    code, out, _ = cli(["kaggle", "--help"], capsys)
    assert code == 0 and "pip install -e '.[kaggle]'" in " ".join(out.split()).replace("│ ", "").replace(" │", "")
