"""``train.time_limit``: a run that plans its epochs by the clock, like Ultralytics' ``time`` argument.

After every epoch the loop asks :func:`replanned_epochs` how many epochs fit the time left, at the pace the
epochs so far have kept; the learning-rate schedule (:class:`imgclf.train.schedule.WarmupCosine`) is
stretched or shortened to end there, so the run anneals by the limit instead of being cut at a high LR
(a plan made from a few warm-up steps is off whenever the machine's speed changes). ``train.epochs`` stays
the most it may run.
"""

from __future__ import annotations

import statistics


def epoch_pace(walls: list[float]) -> float:
    """Seconds the next epoch is expected to take: the mean of the epochs after the first (which also fills the
    resize cache and warms the allocator) once there are any, else the first's."""
    later = walls[1:]
    return statistics.fmean(later) if later else walls[0]


def replanned_epochs(limit: float, elapsed: float, walls: list[float], done: int, most: int) -> int:
    """The epoch count the run should end at: ``done`` plus as many epochs as fit ``limit - elapsed`` seconds
    at :func:`epoch_pace`, at most ``most``; ``done`` (stop now) when not one more fits.

    >>> replanned_epochs(100, 30, [30.0], 1, 20)
    3
    >>> replanned_epochs(100, 95, [40.0, 30.0, 25.0], 3, 20)
    3
    """
    if not walls:
        return most
    pace = epoch_pace(walls)
    more = int(max(limit - elapsed, 0.0) // pace) if pace > 0 else most
    return max(done, min(most, done + more))
