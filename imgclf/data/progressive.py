"""Progressive resizing (``data.start_size``): the first epochs train on smaller images, the last third at the
full ``data.image_size`` — fastai's progressive resizing and EfficientNetV2's progressive learning, reduced to a
schedule that is a pure function of the epoch, so every DDP rank and a resumed run agree on it.

A convnet's epoch costs about the number of pixels, so the small early epochs are cheap: 6 epochs growing from
96 to 160 px cost about as much as 4.3 at 160 px. Under a time budget that buys a larger final size for the same
epochs (the early epochs learn the coarse features, the last ones the detail a low size blurs away).
Evaluation always runs at the full size.

>>> [size_at(e, 6, 96, 160) for e in range(1, 7)]
[96, 112, 128, 144, 160, 160]
>>> round(relative_cost(6, 96, 160), 2)
0.72
"""

from __future__ import annotations

import math

MULTIPLE = 8  # sizes are rounded to this (the stride of the first convolutions)
FULL_SHARE = 1 / 3  # the last third of the epochs (at least one) trains at the full size


def full_size_epochs(epochs: int) -> int:
    """How many of the last epochs train at the full size: a third, at least one."""
    return max(1, math.ceil(epochs * FULL_SHARE))


def size_at(epoch: int, epochs: int, start: int | None, final: int) -> int:
    """The training size of ``epoch`` (counted from 1) in a run of ``epochs``: ``start`` at epoch 1, growing
    linearly to ``final`` by the last third of the epochs; ``final`` throughout when ``start`` is None or not
    smaller."""
    if start is None or start >= final:
        return final
    ramp = max(epochs - full_size_epochs(epochs), 0)
    if epoch > ramp:
        return final
    size = start + (final - start) * (epoch - 1) / ramp
    return max(MULTIPLE, min(final, int(round(size / MULTIPLE)) * MULTIPLE))


def relative_cost(epochs: int, start: int | None, final: int) -> float:
    """What the ``epochs`` cost against as many epochs at ``final``, by pixels (1.0 without progressive resizing)."""
    if epochs < 1:
        return 1.0
    return sum((size_at(e, epochs, start, final) / final) ** 2 for e in range(1, epochs + 1)) / epochs
