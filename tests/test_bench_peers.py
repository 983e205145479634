"""bench/peers.py: planning, scoring and the table (the runs themselves are a benchmark, not a test)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "bench_peers", Path(__file__).resolve().parents[1] / "bench" / "peers.py"
)
peers = importlib.util.module_from_spec(_spec)
sys.modules["bench_peers"] = peers  # its dataclasses look their module up
_spec.loader.exec_module(peers)


def test_plan_takes_the_largest_size_that_allows_the_minimum_epochs():
    # 100 images/s at 128 px; 1000 images; 600 s: 128 px allows 54 epochs, 224 px about 17.
    plan = peers.plan_naive(600, 1000, (128, 100.0), res=None, epochs=None, min_epochs=5)
    assert plan.res == 224 and plan.epochs == int(0.9 * 600 // (1000 / plan.images_per_s))
    slow = peers.plan_naive(60, 1000, (128, 10.0), res=None, epochs=None, min_epochs=5)
    assert slow.res == peers.SIZES[-1] and slow.epochs >= 1
    fixed = peers.plan_naive(600, 1000, (128, 100.0), res=96, epochs=3, min_epochs=5)
    assert (fixed.res, fixed.epochs) == (96, 3)


def test_held_out_epochs_count_training_and_scoring():
    plan = peers.Plan(64, 1, images_per_s=10.0)
    # 80 training + 20 scored images (a third of a step each) = 8.67 s an epoch; 85 % of 100 s
    assert plan.epochs_for(100, 80, 20, share=0.85) == 9
    assert plan.epochs_for(1, 80, 20) == 1  # never zero


def test_score_and_baseline_line(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("Id,Category,label\na.png,0,cat\nb.png,1,dog\nc.png,1,dog\nd.png,0,cat\n")
    sub = tmp_path / "sub.csv"
    sub.write_text("Id,Category\na.png,cat\nb.png,cat\nc.png,dog\n")  # d.png missing: counted wrong
    assert peers.score(sub, labels) == 0.5
    found = peers._RESULT.findall("epoch 1/2\nnaive: test accuracy 0.7950 on 1000; train 120 s (+3 s loading)\n")
    assert found == [("naive", "0.7950", "1000", "120")]


def test_table_is_relative_to_the_naive_row():
    rows = [
        peers.Row("naive", "64 px", 0.80, 100.0),
        peers.Row("imgclf", "--budget 2m", 0.83, 110.0),
        peers.Row("fastai", "–", note="not installed"),
    ]
    text = peers.table(rows)
    assert "| imgclf | --budget 2m | 83.0 % | +3.0 | 110 | 1.10 |" in text
    assert "| fastai | – | – | – | – | – | not installed |" in text


def test_precision_note_is_the_binomial_standard_error():
    assert "standard error of 0.9 pp (6,000 images: 0.4 pp)" in peers.precision_note(0.9, 1000)
    assert peers.precision_note(0.5, 10_000).endswith("standard error of 0.5 pp.")


def test_skipping_train_and_cv_leaves_rows_that_say_so(tmp_path, monkeypatch):
    """`--skip train` runs cv --budget alone (here skipped too): no imgclf command runs, each row says why."""
    import argparse

    ran = []
    monkeypatch.setattr(peers, "imgclf_row", lambda *a, **k: ran.append(a) or peers.Row(a[0], a[2], 0.9, 1.0))
    monkeypatch.setattr(peers, "count_train_images", lambda dataset: 100)
    args = argparse.Namespace(dataset=tmp_path, epochs=None, budget=1.0, skip=["train", "cv"])
    rows = peers._imgclf_rows(args, peers.Plan(64, 1, images_per_s=10.0), 60.0, tmp_path, 60.0)
    assert not ran and [(r.system, r.note) for r in rows] == [
        ("imgclf train --budget", "not run (--skip train)"),
        ("imgclf cv --budget", "not run (--skip cv)"),
    ]
    args.skip = ["cv"]
    rows = peers._imgclf_rows(args, peers.Plan(64, 1, images_per_s=10.0), 60.0, tmp_path, 60.0)
    assert len(ran) == 1 and rows[0].accuracy == 0.9
