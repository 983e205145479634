"""``train.time_limit``: a run that plans its epochs by the clock, like Ultralytics' ``time`` argument.

After every epoch the loop asks :func:`replanned_epochs` how many epochs fit the time left, at the pace the
epochs so far have kept, and the run's :class:`imgclf.training.epoch_plan.EpochPlan` ends there: its learning-rate
schedule is stretched or shortened with it, so the run anneals by the limit instead of being cut at a high LR
(a plan made from a few warm-up steps is off whenever the machine's speed changes). ``train.epochs`` stays
the most it may run. Under progressive resizing (``data.start_size``) the epochs differ in size: each future epoch is
timed at its own size (:func:`pace_at`), scaled from the nearest size trained so far by ``train.time_cost`` (the
budget warm-up's measured ``a + b·s²`` per image) or, without it, by pixels.

Whole epochs rarely fill the limit: with 100 s epochs up to 100 s would go unused. :func:`replanned` adds a last,
partial epoch (at least :data:`MIN_PARTIAL` of one) that trains on part of the shuffled images; the plan ends
with it, so the loop stops the epoch where the schedule does.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

MIN_PARTIAL = 0.25  # a shorter last epoch is not worth its validation and checkpoint


def epoch_pace(walls: list[float]) -> float:
    """Seconds the next epoch is expected to take: the mean of the epochs after the first (which also fills the
    resize cache and warms the allocator) once there are any, else the first's."""
    later = walls[1:]
    return statistics.fmean(later) if later else walls[0]


def pixels(size: int) -> float:
    """The default relative cost of one training image at ``size``: its pixels."""
    return float(size) ** 2


@dataclass(frozen=True)
class Growth:
    """What the clock needs under progressive resizing: each past epoch's training size and training seconds (its
    wall time less validation, which runs at the final size whatever the training size), the size of epoch ``e`` in
    a run of ``n`` (``size_of(e, n)``), and the relative cost of one training image at a size (``train.time_cost``,
    the budget warm-up's ``a + b·s²``; by default the pixels, which overestimates larger sizes)."""

    sizes: list[int]
    trains: list[float]
    size_of: Callable[[int, int], int]
    cost: Callable[[int], float] = pixels


def pace_at(
    sizes: list[int],
    walls: list[float],
    size: int,
    trains: list[float] | None = None,
    cost: Callable[[int], float] = pixels,
) -> float:
    """Seconds an epoch at ``size`` is expected to take, from epochs of ``sizes`` that took ``walls`` (of which
    ``trains`` trained; the rest validated): the :func:`epoch_pace` of those at that size, else the nearest size's
    with its training part scaled by ``cost(size) / cost(nearest)`` (by pixels, the default, a smaller size's
    overestimates: the per-image cost that does not grow with the size is scaled too).

    >>> pace_at([64, 64, 96], [50.0, 40.0, 90.0], 64), pace_at([64, 64, 96], [50.0, 40.0, 90.0], 128)
    (40.0, 160.0)
    >>> pace_at([64, 64], [50.0, 40.0], 128, trains=[45.0, 30.0], cost=lambda s: 4096 + s * s)  # 10 + 30 x 2.5
    85.0
    """
    return sum(parts_at(sizes, walls, size, trains, cost))


def parts_at(
    sizes: list[int],
    walls: list[float],
    size: int,
    trains: list[float] | None = None,
    cost: Callable[[int], float] = pixels,
) -> tuple[float, float]:
    """:func:`pace_at` as ``(the rest, training)``: the seconds an epoch at ``size`` spends outside training
    (validation, checkpoint) and training."""
    trains = walls if trains is None else trains
    history = list(zip(sizes, walls, trains))
    later = history[1:] or history  # the first epoch also fills the resize cache
    same = [(w, t) for s, w, t in later if s == size]
    if same:
        wall, train = statistics.fmean(w for w, _ in same), statistics.fmean(t for _, t in same)
        return wall - min(train, wall), min(train, wall)
    if not later:
        return 0.0, 0.0
    near = min({s for s, _, _ in later}, key=lambda s: (abs(s - size), -s))
    wall = statistics.fmean(w for s, w, _ in later if s == near)
    train = min(statistics.fmean(t for s, _, t in later if s == near), wall)
    return wall - train, train * cost(size) / cost(near)


def replanned_epochs(
    limit: float, elapsed: float, walls: list[float], done: int, most: int, growth: Growth | None = None
) -> int:
    """The epoch count the run should end at: ``done`` plus as many epochs as fit ``limit - elapsed`` seconds
    at :func:`epoch_pace`, at most ``most``; ``done`` (stop now) when not one more fits. With ``growth``
    (progressive resizing) each future epoch costs its own size's :func:`pace_at`.

    >>> replanned_epochs(100, 30, [30.0], 1, 20)
    3
    >>> replanned_epochs(100, 95, [40.0, 30.0, 25.0], 3, 20)
    3
    """
    if not walls:
        return most
    left = max(limit - elapsed, 0.0)
    if growth is None:
        pace = epoch_pace(walls)
        more = int(left // pace) if pace > 0 else most
        return max(done, min(most, done + more))
    best = done
    for epochs in range(done + 1, most + 1):
        g = growth
        if (
            sum(pace_at(g.sizes, walls, g.size_of(e, epochs), g.trains, g.cost) for e in range(done + 1, epochs + 1))
            > left
        ):
            break
        best = epochs
    return best


def replanned(
    limit: float,
    elapsed: float,
    walls: list[float],
    done: int,
    most: int,
    growth: Growth | None = None,
    trains: list[float] | None = None,
) -> tuple[int, float]:
    """``(epochs, fraction)``: :func:`replanned_epochs`, then one more epoch trained on ``fraction`` of its images
    when the time the whole epochs leave holds at least :data:`MIN_PARTIAL` of one (its validation in full);
    ``fraction`` is 1.0 when the last epoch is whole. ``trains``: each past epoch's training seconds (without
    ``growth``; the rest of an epoch's wall time is not shortened by training less).

    >>> replanned(100, 30, [30.0], 1, 20)  # 70 s left at 30 s an epoch: two more, and a third of one
    (4, 0.333)
    >>> replanned(100, 30, [30.0], 1, 20, trains=[20.0])  # 10 s of each epoch validate: (70 - 60 - 10) / 20
    (3, 1.0)
    """
    whole = replanned_epochs(limit, elapsed, walls, done, most, growth)
    if not walls or whole >= most:
        return whole, 1.0
    n = whole + 1
    if growth is None:
        train = min(epoch_pace(trains if trains is not None else walls), epoch_pace(walls))
        parts = [(epoch_pace(walls) - train, train)] * (n - done)
    else:
        parts = [
            parts_at(growth.sizes, walls, growth.size_of(e, n), growth.trains, growth.cost)
            for e in range(done + 1, n + 1)
        ]
    rest, train = parts[-1]
    left = limit - elapsed - sum(a + b for a, b in parts[:-1]) - rest
    fraction = left / train if train > 0 else 0.0
    return (n, round(fraction, 3)) if MIN_PARTIAL <= fraction < 1.0 else (whole, 1.0)
