"""bench/freeze.py: the speed table runs on a tiny model (its figures are a benchmark, not a test)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "bench_freeze", Path(__file__).resolve().parents[1] / "bench" / "freeze.py"
)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_speed_table_has_a_rate_per_size_and_share(capsys):
    result = bench.main(
        [
            "--weights",
            "none",
            "--backbone",
            "test_efficientnet",
            "--sizes",
            "32",
            "--steps",
            "1",
            "--batch",
            "4",
            "--shares",
            "0",
            "0.5",
        ]
    )
    assert set(result["speed_images_per_s"]) == {32}
    assert set(result["speed_images_per_s"][32]) == {0.0, 0.5}
    assert all(rate > 0 for rate in result["speed_images_per_s"][32].values())
    assert "budget" not in result  # no --data: no training runs
    assert "| 32 px |" in capsys.readouterr().out
