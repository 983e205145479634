"""The final models: one, or up to ``train.budget_members`` as an equal-weight ensemble, each with an even share of
the time left as its ``train.time_limit`` (the loop re-plans its epochs by the clock)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from imgclf.budget.plan import Clock, report_reserve
from imgclf.config import Config, with_overrides
from imgclf.io import atomic_write_json
from imgclf.run.rundir import RunDir

log = logging.getLogger("imgclf")

# The final model's train.time_limit, as a share of the time left: it re-plans its epochs after each one, so only
# the last epoch's spread (and its validation-free finish) needs a margin.
TIME_SHARE = 0.95
# A final model after the first starts only when its share of the time left is at least this share of the planned one.
MEMBER_FLOOR = 0.5


def final_config(cfg: Config, size: int, epochs: int) -> Config:
    """The final models' config: ``cfg`` at ``size`` for ``epochs`` epochs. The user's ``data.val_fraction`` (0.2 by
    default; the same split for every model) stays held out, the estimate of what is submitted; the last epoch's
    weights are kept (``train.keep=last``), since weights picked on those images would make it optimistic."""
    return with_overrides(
        cfg,
        {
            "data.image_size": int(size),
            "train.epochs": int(epochs),
            "train.patience": None,
            "train.warmup_epochs": min(cfg.train.warmup_epochs, max(int(epochs) - 1, 0)),
            "train.keep": "last",
        },
    )


def train_final(
    cfg: Config, dataset: Path, run: RunDir, tracking_uri: str | None, callbacks: Iterable[Any]
) -> dict[str, Any]:
    from imgclf.tracking.session import tracking_session
    from imgclf.training.loop import fit

    with tracking_session(cfg, run.root, tracking_uri) as tracking:
        return fit(cfg, dataset, run.root, callbacks=[*callbacks, *tracking], preflight=False)


def even_share(clock: Clock, ends_at: float, runs_left: int, overhead: float) -> float:
    """``train.time_limit`` for the next of ``runs_left`` models sharing the time until ``ends_at`` evenly:
    :data:`TIME_SHARE` of its share less a fit's fixed ``overhead``. The loop re-plans its epochs by that limit after
    each one, so it ends, annealed, where the share ends."""
    runs_left = max(int(runs_left), 1)
    share = (ends_at - clock.elapsed()) / runs_left
    return max(TIME_SHARE * (share - overhead), 1.0)


def member_dir(run: RunDir, index: int) -> Path:
    """Where the recipe's model ``index`` (0-based) trains: the run itself for the first, ``RUN/members/<n>`` after."""
    return run.root if index == 0 else run.member(index + 1).root


def train_members(
    final: Config,
    dataset: Path,
    run: RunDir,
    members: int,
    clock: Clock,
    budget: float,
    overhead: float,
    tracking_uri: str | None,
    callbacks: Iterable[Any],
    first: float | None = None,
    held: float = 0.0,
) -> list[dict[str, Any]]:
    """The final models, one after another, each with an even share of the time left as its ``train.time_limit``
    (:func:`even_share`) and its own seed; then, for more than one, ``RUN/ensemble.json`` (equal weights), which
    ``predict RUN`` blends. A model whose share has shrunk below half the planned one (a machine that slowed down)
    is not started: the ensemble keeps the models it has. ``first``: the first model's time limit
    as the plan recorded it (:func:`even_share` at that moment); ``held``: seconds kept for the estimate after them."""
    ends_at, callbacks = budget - report_reserve(budget) - held, list(callbacks)
    planned = (ends_at - clock.elapsed()) / members
    summaries: list[dict[str, Any]] = []
    for index in range(members):
        limit = first if index == 0 and first else even_share(clock, ends_at, members - index, overhead)
        if index and (ends_at - clock.elapsed()) / (members - index) < MEMBER_FLOOR * planned:
            log.warning("recipe: %d of %d final models trained; too little time is left for another", index, members)
            break
        member = with_overrides(final, {"train.time_limit": limit, "train.seed": (final.train.seed + index) % 2**32})
        summaries.append(train_final(member, dataset, RunDir(member_dir(run, index)), tracking_uri, callbacks))
    if len(summaries) > 1:
        atomic_write_json(
            run.ensemble_spec,
            {
                "members": [
                    {"path": member_dir(run, i).relative_to(run.root).as_posix(), "weight": 1.0 / len(summaries)}
                    for i in range(len(summaries))
                ],
                "weights": "equal",
                "source": "train --budget: each model on the same training images, with its own seed",
            },
        )
    return summaries
