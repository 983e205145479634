"""Learning-rate schedule as a pure function of progress."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, floor: float = 0.01) -> float:
    """Multiplier of the base LR at optimiser step ``step`` (0-based).

    Linear warm-up from ~0 to 1 over ``warmup_steps``, then cosine decay to ``floor``.

    >>> warmup_cosine(0, 100, 10) < warmup_cosine(9, 100, 10) == 1.0
    True
    >>> round(warmup_cosine(100, 100, 10), 3)
    0.01
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def short_run_warmup(warmup_epochs: float, epochs: int) -> float:
    """The warm-up a run of ``epochs`` can have: a warm-up as long as the run would never reach the
    learning rate, so it is cut to ``epochs - 1`` (none for one epoch), the rule ``--refit`` applies.

    >>> short_run_warmup(1.0, 1), short_run_warmup(5.0, 3), short_run_warmup(0.5, 2)
    (0, 2, 0.5)
    """
    return warmup_epochs if warmup_epochs < epochs else max(epochs - 1, 0)
