"""``train.time_limit``: a run that plans its epochs by the clock, like Ultralytics' ``time`` argument.

After every epoch the loop asks :func:`replanned_epochs` how many epochs fit the time left, at the pace the
epochs so far have kept; the learning-rate schedule (:class:`imgclf.train.schedule.WarmupCosine`) is
stretched or shortened to end there, so the run anneals by the limit instead of being cut at a high LR
(a plan made from a few warm-up steps is off whenever the machine's speed changes). ``train.epochs`` stays
the most it may run. Under progressive resizing (``data.start_size``) the epochs differ in size: each future epoch is
timed at its own size (:func:`pace_at`).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable


def epoch_pace(walls: list[float]) -> float:
    """Seconds the next epoch is expected to take: the mean of the epochs after the first (which also fills the
    resize cache and warms the allocator) once there are any, else the first's."""
    later = walls[1:]
    return statistics.fmean(later) if later else walls[0]


def pace_at(sizes: list[int], walls: list[float], size: int) -> float:
    """Seconds an epoch at ``size`` is expected to take, from epochs of ``sizes`` that took ``walls``: the
    :func:`epoch_pace` of those at that size, else the nearest size's scaled by pixels (from a smaller size that
    overestimates: the per-image cost that does not grow with the size is scaled too).

    >>> pace_at([64, 64, 96], [50.0, 40.0, 90.0], 64), pace_at([64, 64, 96], [50.0, 40.0, 90.0], 128)
    (40.0, 160.0)
    """
    history = list(zip(sizes, walls))
    later = history[1:] or history  # the first epoch also fills the resize cache
    same = [w for s, w in later if s == size]
    if same:
        return statistics.fmean(same)
    if not later:
        return 0.0
    near = min({s for s, _ in later}, key=lambda s: (abs(s - size), -s))
    return statistics.fmean(w for s, w in later if s == near) * (size / near) ** 2


def replanned_epochs(limit: float, elapsed: float, walls: list[float], done: int, most: int,
                     sizes: list[int] | None = None, size_of: Callable[[int, int], int] | None = None) -> int:
    """The epoch count the run should end at: ``done`` plus as many epochs as fit ``limit - elapsed`` seconds
    at :func:`epoch_pace`, at most ``most``; ``done`` (stop now) when not one more fits. With ``sizes`` (each
    past epoch's training size) and ``size_of(epoch, epochs)`` (the size of an epoch in a run of ``epochs``),
    each future epoch costs its own size's :func:`pace_at`.

    >>> replanned_epochs(100, 30, [30.0], 1, 20)
    3
    >>> replanned_epochs(100, 95, [40.0, 30.0, 25.0], 3, 20)
    3
    """
    if not walls:
        return most
    left = max(limit - elapsed, 0.0)
    if sizes is None or size_of is None:
        pace = epoch_pace(walls)
        more = int(left // pace) if pace > 0 else most
        return max(done, min(most, done + more))
    best = done
    for epochs in range(done + 1, most + 1):
        if sum(pace_at(sizes, walls, size_of(e, epochs)) for e in range(done + 1, epochs + 1)) > left:
            break
        best = epochs
    return best
