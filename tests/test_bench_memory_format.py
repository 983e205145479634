"""bench/memory_format.py: the table runs on a tiny model (its figures are a benchmark, not a test)."""

from __future__ import annotations

from conftest import bench_module

bench = bench_module("memory_format")


def test_the_table_has_both_formats_for_training_and_forward_at_each_size(capsys):
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
            "--rounds",
            "1",
            "--batch",
            "4",
        ]
    )
    rates = result["images_per_s"][32]
    assert set(rates) == {"nchw", "nhwc"} and all(set(r) == {"train", "forward"} for r in rates.values())
    assert all(v > 0 for r in rates.values() for v in r.values())
    assert "| 32 px |" in capsys.readouterr().out
