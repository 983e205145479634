"""Issue 29, second red team: bad inputs accepted silently, hangs and storms, and tracebacks where a
damaged input should get one line and exit 2. One test per case, named for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import cli, make_dataset


def _one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err
    return lines[0]


# --- prepare: a numeric safety option of inf, nan or <= 0 -------------------------------------------

@pytest.mark.parametrize("option, value", [
    ("--max-archive-ratio", "inf"), ("--max-archive-ratio", "nan"), ("--max-archive-ratio", "0"),
    ("--max-archive-gb", "inf"), ("--max-archive-gb", "-1"), ("--max-aspect", "inf"), ("--min-similarity", "nan"),
    ("--max-drop", "nan"),
])
def test_prepare_refuses_a_non_finite_or_non_positive_limit(tmp_path: Path, capsys, option: str, value: str):
    data = make_dataset(tmp_path / "src", per_class=2, test=0)
    code, _, err = cli(["prepare", data, "--out", tmp_path / "out", option, value], capsys)
    assert code == 2
    assert option in _one_error_line(err)
    assert not (tmp_path / "out").exists()
