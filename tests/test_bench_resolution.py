"""bench/resolution.py: the probe's table, on a tiny model (its figures are a benchmark, not a test)."""

from __future__ import annotations

from conftest import bench_module, make_dataset

bench = bench_module("resolution")


def test_the_table_has_a_column_per_size_and_the_size_the_recipe_would_take(tmp_path, capsys):
    root = make_dataset(tmp_path / "mine" / "dataset", per_class=6, test=0)
    assert bench.main([str(root), "--sizes", "32", "48", "--backbone", "test_efficientnet", "--weights", "none"]) == 0
    out = capsys.readouterr().out
    assert "| dataset | images | 32 px | 48 px | enough | gap to largest ± SE | probe s |" in out
    row = next(line for line in out.splitlines() if line.startswith("| mine |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "18" and all(0 <= float(c) <= 1 for c in cells[2:4]) and cells[4] in ("32 px", "48 px")
    assert "±" in cells[5]
