"""Pareto front of accuracy against cost, and the comparison section built on it."""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imgclf.report.pareto import RunPoint, pareto_front, pareto_section, run_points, write_comparison_page


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[0] and a[1] >= b[1] and a != b


def test_front_keeps_the_cheapest_best_points():
    # (cost, accuracy): 15 s/0.70 is beaten by 10 s/0.80; 30 s/0.85 by 20 s/0.90.
    assert pareto_front([10, 20, 30, 15], [0.8, 0.9, 0.85, 0.7]) == [0, 1]


def test_equal_accuracy_at_higher_cost_is_dominated_but_identical_points_both_stay():
    assert pareto_front([5, 8], [0.9, 0.9]) == [0]
    assert pareto_front([5, 5, 9], [0.9, 0.9, 0.95]) == [0, 1, 2]


def test_missing_values_take_no_part():
    assert pareto_front([1.0, None, math.nan, 3.0], [0.5, 0.99, 0.99, math.nan]) == [0]
    assert pareto_front([], []) == []


def test_lengths_must_match():
    with pytest.raises(ValueError):
        pareto_front([1, 2], [0.5])


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), min_size=1, max_size=25))
def test_front_is_exactly_the_non_dominated_points(points):
    costs, scores = [p[0] for p in points], [p[1] for p in points]
    front = pareto_front(costs, scores)
    for i, p in enumerate(points):
        beaten = any(dominates(q, p) for q in points)
        assert (i in front) == (not beaten)
    assert [costs[i] for i in front] == sorted(costs[i] for i in front)


def _run(tmp_path, name, acc, seconds, latency_s=None, images=100):
    d = tmp_path / name
    d.mkdir()
    (d / "summary.json").write_text(json.dumps({"val_accuracy": acc, "train_seconds": seconds}))
    if latency_s is not None:
        (d / "eval").mkdir()
        (d / "eval" / "metrics.json").write_text(json.dumps({"accuracy": acc, "images": images, "seconds": latency_s}))
    return d


def test_run_points_read_accuracy_training_time_and_latency(tmp_path):
    a = _run(tmp_path, "a", 0.8, 100.0, latency_s=2.0, images=400)
    b = _run(tmp_path, "b", 0.7, 50.0)
    points = run_points([a, b])
    assert points[0] == RunPoint("a", 0.8, 100.0, 5.0)
    assert points[1].latency_ms is None and points[1].train_seconds == 50.0


def test_section_draws_one_scatter_per_recorded_cost_and_marks_the_front(tmp_path):
    dirs = [
        _run(tmp_path, "fast", 0.7, 50.0, 1.0),
        _run(tmp_path, "best", 0.9, 200.0, 3.0),
        _run(tmp_path, "worse", 0.6, 300.0, 4.0),
    ]
    section = pareto_section(run_points(dirs))
    assert section.count("<img") == 2
    assert re.search(r"<td class=\"text\">worse</td>(<td[^>]*>[^<]*</td>){3}<td[^>]*></td><td[^>]*></td>", section)
    assert section.count(">yes<") == 4  # fast and best, on both fronts

    no_latency = pareto_section(run_points([_run(tmp_path, "no-eval", 0.8, 60.0)]))
    assert no_latency.count("<img") == 1


def test_comparison_page_is_self_contained(tmp_path):
    dirs = [_run(tmp_path, "a", 0.7, 50.0), _run(tmp_path, "b", 0.9, 200.0)]
    page = write_comparison_page(dirs, tmp_path / "compare.html").read_text()
    assert "https://" not in page and "http://" not in page
    assert all(s.startswith("data:image/png;base64,") for s in re.findall(r'src="([^"]*)"', page))
