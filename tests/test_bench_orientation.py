"""bench/orientation.py: the probe's table by size, on a tiny model (its figures are a benchmark, not a test)."""

from __future__ import annotations

from conftest import bench_module, make_dataset

bench = bench_module("orientation")


def test_the_table_has_a_row_per_size_with_each_views_accuracy_and_the_flip_group(tmp_path, capsys):
    root = make_dataset(tmp_path / "mine" / "dataset", per_class=6, test=0)
    assert bench.main([str(root), "--sizes", "48", "32", "--backbone", "test_efficientnet", "--weights", "none"]) == 0
    out = capsys.readouterr().out
    assert "| dataset | size | images | identity | hflip | vflip | rot90 | flips | probe s |" in out
    rows = [line for line in out.splitlines() if line.startswith("| mine |")]
    assert [r.split("|")[2].strip() for r in rows] == ["32", "48"]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert (
            cells[2] == "18" and all(0 <= float(c) <= 1 for c in cells[3:7]) and cells[7] in ("none", "h", "hv", "d4")
        )
