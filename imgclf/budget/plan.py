"""Wall-clock budgets for ``--budget``: parsing, and the pure planning arithmetic of the recipe.

Cost model (documented, measured twice per recipe): training one image at size ``s`` costs
``a + b·s²`` seconds. The ``b·s²`` part is the network (a convnet's work grows with the number of
pixels); ``a`` is what does not shrink with the size (decoding, the loader, the optimiser step
spread over a batch). The warm-up measures throughput at two sizes, which fixes ``a`` and ``b``;
with one measurement the model is pure ``s²`` (``a = 0``), which overestimates the speed-up of
small sizes. The final model's epochs are re-planned by the clock (``train.time_limit``), so an error here
costs the size, never the budget.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from imgclf.data.progressive import size_at
from imgclf.errors import ConfigError

# The sizes the warm-up and the resolution probe compare; the final model's ladder has the in-between rungs too (112
# is 1.36x the pixels of 96, 128 is 1.78x): with the epochs re-planned by the clock, a finer ladder turns more of the
# budget into resolution.
PROBE_LADDER = (64, 80, 96, 128, 160, 192, 224, 256, 288, 320, 384, 448, 512)
SIZE_LADDER = tuple(sorted({*PROBE_LADDER, 112, 144, 176}))
MIN_EPOCHS = 6  # the final model prefers this many epochs: the size shrinks first
# The final model is planned into this share of the time left: its first epoch also fills the resize cache
# and epochs vary; a plan that overruns is cut by the deadline before its learning rate has annealed
# (measured: 4 of 6 planned epochs on the demo data at a 5-minute budget, LR still at a third of its peak).
PLAN_SHARE = 0.85
# A forward pass against a training step of the recipe's model (no backward; the frozen bottom makes the backward
# cheaper): 68 passes/s against 37 training images/s at 192 px on the thin-defect data (2-core AMD EPYC, BENCHMARKS.md
# "The budget recipe made trustworthy"). It was 3.0, which made an 8-view estimate overrun its reserve by 25 s.
EVAL_SPEEDUP = 1.8
_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)\s*$", re.IGNORECASE)
MIN_BUDGET_S = 10.0


def parse_budget(text: str) -> float:
    """``"90s"`` → 90.0, ``"20m"`` → 1200.0, ``"1.5h"`` → 5400.0 (seconds); anything else is one ConfigError line."""
    match = _BUDGET.match(str(text))
    if not match:
        raise ConfigError(f"--budget must be a number with a unit s, m or h, like 90s, 20m or 1.5h (got {text!r})")
    seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if not math.isfinite(seconds) or seconds < MIN_BUDGET_S:
        raise ConfigError(
            f"--budget must be at least {MIN_BUDGET_S:.0f}s: the warm-up alone takes seconds (got {text!r})"
        )
    return seconds


@dataclass(frozen=True)
class CostModel:
    """Seconds to train one image at size ``s``: ``a + b·s²`` (see the module docstring)."""

    a: float
    b: float

    @classmethod
    def fit(cls, points: list[tuple[int, float]]) -> "CostModel":
        """From ``[(size, images_per_second), ...]``: one point gives pure s², two or more a least-squares line in s²."""
        pts = [(float(s) ** 2, 1.0 / ips) for s, ips in points if ips > 0 and math.isfinite(ips)]
        if not pts:
            raise ConfigError("the warm-up measured no training throughput")
        xs = {x for x, _ in pts}
        if len(xs) < 2:
            x, y = pts[-1]
            return cls(0.0, y / x)
        n = len(pts)
        mx, my = sum(x for x, _ in pts) / n, sum(y for _, y in pts) / n
        b = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
        if b <= 0:  # noise: the larger size was not slower; fall back to s² through the largest size
            x, y = max(pts)
            return cls(0.0, y / x)
        a = max(my - b * mx, 0.0)
        return cls(a, b)

    def seconds_per_image(self, size: int) -> float:
        return self.a + self.b * float(size) ** 2


def ladder(cap: int) -> list[int]:
    """The sizes the recipe may choose: the ladder's rungs below the model's size, and that size."""
    return [s for s in SIZE_LADDER if s < cap] + [int(cap)]


def small_size(cap: int) -> int:
    """The warm-up's first, cheap size: the largest probe rung at most half the model's size (the smallest rung if
    none)."""
    rungs = [s for s in PROBE_LADDER if s < cap] + [int(cap)]
    small = [s for s in rungs if s <= cap / 2]
    return small[-1] if small else rungs[0]


Start = Callable[[int], "int | None"]  # final size -> progressive resizing's start size (None: off)


def run_seconds(images: int, cost: CostModel, size: int, epochs: int, start: Start | None = None) -> float:
    """Seconds of ``epochs`` epochs of ``images`` images ending at ``size`` (growing from ``start(size)``)."""
    first = start(size) if start else None
    if first is None:
        return images * epochs * cost.seconds_per_image(size)
    return images * sum(cost.seconds_per_image(size_at(e, epochs, first, size)) for e in range(1, epochs + 1))


def plan_final(
    seconds: float,
    images: int,
    cost: CostModel,
    cap: int,
    max_epochs: int,
    per_epoch_overhead: float = 0.0,
    start: Start | None = None,
) -> tuple[int, int]:
    """``(size, epochs)`` for the final model in ``seconds`` on ``images`` images.

    The largest size of the ladder that fits ``MIN_EPOCHS`` epochs (then as many more epochs as fit, up to
    ``max_epochs``); when none does, the smallest size with as many epochs as fit (at least one). With ``start``
    (final size -> first size: the user's ``data.start_size``) the epochs grow to the size (progressive resizing).
    """
    max_epochs = max(int(max_epochs), 1)

    def epochs_at(size: int) -> int:  # the cost grows with the epochs: count up to the first that does not fit
        epochs = 0
        while (
            epochs < max_epochs
            and run_seconds(images, cost, size, epochs + 1, start) + (epochs + 1) * per_epoch_overhead <= seconds
        ):
            epochs += 1
        return epochs

    want = min(MIN_EPOCHS, max_epochs)
    for size in reversed(ladder(cap)):
        epochs = epochs_at(size)
        if epochs >= want:
            return size, epochs
    smallest = ladder(cap)[0]
    return smallest, max(1, epochs_at(smallest))


def plan_members(
    seconds: float,
    images: int,
    cost: CostModel,
    cap: int,
    max_epochs: int,
    most: int,
    per_run_overhead: float = 0.0,
    start: Start | None = None,
) -> tuple[int, int, int]:
    """``(members, size, epochs)``: how many models ``train --budget`` trains in ``seconds``, each on every image for
    ``epochs`` epochs at ``size``.

    The size comes first: the one :func:`plan_final` gives a single model. Then the most members (up to ``most``)
    of which each still gets that size and ``MIN_EPOCHS`` epochs in an even share of ``seconds`` (less a fit's
    ``per_run_overhead`` for each model after the first); the extra epochs a single model would have are spent
    on them. One model when no two fit. Past ``MIN_EPOCHS`` a fine-tune's extra epochs buy less than another model
    does (demo data, 96 px: one model for 17 epochs 91.1 %; three for 6 epochs each 90.9, 90.1 and 90.3 %,
    together 91.6 %; BENCHMARKS.md "An ensemble under train --budget").
    """
    size, epochs = plan_final(seconds, images, cost, cap, max_epochs, start=start)
    for members in range(max(int(most), 1), 1, -1):
        share = (seconds - (members - 1) * per_run_overhead) / members
        each_size, each_epochs = plan_final(share, images, cost, cap, max_epochs, start=start)
        if each_size >= size and each_epochs >= min(MIN_EPOCHS, max_epochs):
            return members, each_size, each_epochs
    return 1, size, epochs


def epoch_images(images: int, held_out: float) -> int:
    """Training-image equivalents one epoch costs when ``held_out`` of ``images`` are validated, not trained on:
    the training part plus the validation part at a forward pass's cost (:data:`EVAL_SPEEDUP`).

    >>> epoch_images(1000, 0.0), epoch_images(1000, 0.2)
    (1000, 911)
    """
    return round(images * (1 - held_out) + images * held_out / EVAL_SPEEDUP)


def estimate_seconds(val_images: int, members: int, views: int, cost: CostModel, size: int) -> float:
    """Seconds the held-out estimate takes: every model, every TTA view, every held-out image, at a forward pass's
    cost (:data:`EVAL_SPEEDUP`)."""
    return val_images * max(members, 1) * max(views, 1) * cost.seconds_per_image(size) / EVAL_SPEEDUP


def fold_images(images: int, folds: int) -> int:
    """Training-image equivalents one CV fold's epoch costs: its training part plus its validation part."""
    return epoch_images(images, 1 / folds)


# Kept for the run report and the last epoch's spread past the clock's plan: 3 % of the budget, at least 5 s, at most
# 30 s (the report took 1.7 s after a 3-minute budget on the demo data, ~9 s for a tiny run on a loaded machine).
REPORT_RESERVE = (0.03, 5.0, 30.0)


class Clock:
    """Seconds since the recipe (or the command) started."""

    def __init__(self, started: float | None = None):
        self.started = time.perf_counter() if started is None else started

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def report_reserve(budget: float) -> float:
    """Seconds kept back for the report (:data:`REPORT_RESERVE`): 3 % of the budget, at least 5 s, at most 30 s."""
    share, low, high = REPORT_RESERVE
    return min(max(share * budget, low), high)
