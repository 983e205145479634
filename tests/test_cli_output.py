"""What a command prints while it works: each fact once, no ``nan`` for a validation that did not happen, and
Optuna's lines through imgclf's logger."""

from __future__ import annotations

import logging
from pathlib import Path

from conftest import TINY, cli
from imgclf.terminal import SayOnce, epoch_line

ROW = {
    "epoch": 3,
    "lr": 1e-3,
    "train_loss": 0.5,
    "train_accuracy": 0.8,
    "epoch_seconds": 1.5,
    "images_per_second": 40.0,
}


def test_an_epoch_without_validation_prints_no_val_part():
    assert "val" not in epoch_line({**ROW, "val_loss": float("nan"), "val_accuracy": float("nan")})
    assert "val" not in epoch_line({**ROW, "val_loss": None, "val_accuracy": None})
    assert "val loss 0.7000 acc 0.6000" in epoch_line({**ROW, "val_loss": 0.7, "val_accuracy": 0.6})


def test_a_line_marked_once_is_said_once_per_command_handler():
    record = lambda msg: logging.LogRecord("imgclf", logging.INFO, __file__, 1, msg, (), None)  # noqa: E731
    once = SayOnce()
    marked = [record("blocklist b.csv removed 2 image(s)") for _ in range(3)]
    for r in marked:
        r.once = True
    assert [once.filter(r) for r in marked] == [True, False, False]
    assert [once.filter(record("epoch line")) for _ in range(2)] == [True, True]  # unmarked lines are never dropped
    assert SayOnce().filter(marked[0])  # a new command (a new handler) says it again


def test_train_with_refit_states_the_blocklist_and_the_frozen_groups_once(tiny_dataset: Path, tmp_path: Path, capsys):
    """--refit trains two models in one command: both load the data and start a fit, the lines show once."""
    (tiny_dataset / "blocklist.csv").write_text("key,reason\ntrain/alpha/alpha_000.png,blurred\n")
    code, _, err = cli(
        [
            "train",
            tiny_dataset,
            "--out",
            tmp_path / "run",
            "--refit",
            "--set",
            "finetune.freeze_bottom=0.3",
            *[x for o in TINY for x in ("--set", o)],
        ],
        capsys,
    )
    assert code == 0, err
    assert err.count("removed 1 image(s)") == 1
    assert err.count("layer groups stay") == 1


def test_optuna_lines_go_through_the_imgclf_logger():
    import optuna

    from imgclf.experiments.sweep import route_optuna_logging

    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda r: seen.append(r.getMessage())  # type: ignore[method-assign]
    imgclf_log = logging.getLogger("imgclf")
    imgclf_log.addHandler(handler)
    try:
        route_optuna_logging()
        route_optuna_logging()  # twice: still one route
        optuna.logging.get_logger("optuna.study").warning("a study warning")
        optuna.logging.get_logger("optuna.study").info("Trial 0 finished")  # per-trial chatter stays out
    finally:
        imgclf_log.removeHandler(handler)
    assert seen == ["a study warning"]
