"""Does the data have an "up"? A probe that picks the flip group (``data.flips``) for the budget recipe.

Flipping and turning training images teaches a model that orientation does not matter. That pays when the
test images come in every orientation (micrographs, satellite tiles, defects on a surface) and wastes a short
fine-tune's capacity when they are all upright (cars, clothes, faces). The data itself says which: a classifier
trained on some images is as good on the *turned* copies of held-out images as on the images themselves only
when turned images are already what the data looks like.

The probe, in a few seconds before the final model (:mod:`imgclf.budget.feature_probe`):

1. up to ``PROBE_IMAGES`` training images (stratified), the eval transform at the probe size, the pretrained
   backbone frozen: one feature vector per image and per view (identity, left-right flip, up-down flip,
   quarter turn);
2. a logistic regression on the identity features, cross-validated: each held-out image is scored as it is and
   in each view, by a model that never saw it;
3. a view is "seen in the data" unless it loses held-out accuracy against the identity, by more than ``TOLERANCE``
   and by more than chance would (McNemar's test on the same images).

The flip group is the largest one whose views are all seen: ``d4`` (up-down flip and quarter turn), ``hv``
(up-down flip), else ``h`` (left-right flip; ``none`` when even that loses accuracy, as for text or digits).
Everything it measured goes to ``recipe.json`` (``orientation``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgclf.budget.feature_probe import PROBE_IMAGES, ProbeSource, embed, held_out_correct, probe_set
from imgclf.config import Config

__all__ = [
    "PROBE_IMAGES",
    "Orientation",
    "choose_flips",
    "probe_size",
    "held_out_correct",
    "lost",
    "oriented",
    "probe_orientation",
    "view",
]

log = logging.getLogger("imgclf")

# A view within this much held-out accuracy of the identity is "seen in the data". An upright dataset loses far
# more than this on up-down flipped or turned images; a dataset without an up loses nothing but noise (the
# paired difference on a few hundred images has a standard error of about 1-2 pp).
TOLERANCE = 0.04
VIEWS = ("identity", "hflip", "vflip", "rot90")


def view(batch: torch.Tensor, name: str) -> torch.Tensor:
    """One view of a ``(N, C, H, W)`` batch (square images, so a quarter turn keeps the shape)."""
    if name == "hflip":
        return batch.flip(-1)
    if name == "vflip":
        return batch.flip(-2)
    if name == "rot90":
        return torch.rot90(batch, 1, dims=(-2, -1))
    return batch


@dataclass(frozen=True)
class Orientation:
    """What the probe measured (held-out accuracy per view) and the flip group it chose."""

    flips: str
    accuracy: dict[str, float]
    images: int
    tolerance: float = TOLERANCE
    size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lost(identity: np.ndarray, other: np.ndarray, tolerance: float = TOLERANCE) -> bool:
    """Whether a view loses accuracy (per-image correctness, as it is and in the view): by more than ``tolerance``
    and by more than chance would — McNemar's z above 2 on the images one gets right and the other wrong, so a
    few misses on a small dataset are not read as an "up".

    >>> lost(np.ones(24, bool), np.r_[np.ones(22, bool), np.zeros(2, bool)])  # 2 of 24: noise
    False
    """
    worse, better = int((identity & ~other).sum()), int((~identity & other).sum())
    return (worse - better) / len(identity) > tolerance and worse - better > 2 * math.sqrt(worse + better)


def choose_flips(correct: dict[str, np.ndarray], tolerance: float = TOLERANCE) -> str:
    """The flip group from each view's per-image held-out correctness: the largest group none of whose views
    :func:`lost` accuracy against the identity."""
    gone = {name for name, hits in correct.items() if name != "identity" and lost(correct["identity"], hits, tolerance)}
    if "hflip" in gone:
        return "none"
    if "vflip" in gone:
        return "h"
    return "hv" if "rot90" in gone else "d4"


def probe_orientation(cfg: Config, dataset: Path, size: int, source: ProbeSource | None = None) -> Orientation | None:
    """Run the probe at ``size`` px (on ``source()``'s images when given: shared with the resolution probe); None
    when the data has fewer than two images in some class (too few to tell)."""
    probe = source() if source else probe_set(cfg, dataset, size)
    if probe is None:
        return None
    correct = held_out_correct(embed(probe, size, VIEWS, view), probe.labels, cfg.train.seed)
    return Orientation(
        choose_flips(correct), {k: float(v.mean()) for k, v in correct.items()}, len(probe.labels), size=size
    )


PROBE_SHARE = 0.03  # the probe runs when its estimate is at most this share of the budget


def probe_seconds(seconds_per_image: float) -> float:
    """The probe's estimated cost from a training image's seconds at its size: a third of that per forward pass."""
    return PROBE_IMAGES * len(VIEWS) * seconds_per_image / 3


def probe_size(sizes: list[int], seconds_per_image: Callable[[int], float], budget: float) -> int:
    """The size to probe at: the largest of ``sizes`` (ascending; the last is the size the final model needs, as the
    resolution probe found) whose estimate fits ``PROBE_SHARE`` of the budget, else the smallest. A size too small
    for the class's details leaves every view near chance, where no view can be seen to lose accuracy (session 26's
    small-object data at 64 px: identity 0.14, quarter turn 0.10 for 10 classes, and d4 chosen for upright objects)."""
    fits = [s for s in sizes if probe_seconds(seconds_per_image(s)) <= PROBE_SHARE * budget]
    return max(fits) if fits else min(sizes)


def oriented(
    cfg: Config, dataset: Path, size: int, seconds_per_image: float, budget: float, source: ProbeSource | None = None
) -> tuple[Config, dict[str, Any]]:
    """``cfg`` with ``data.flips`` set by the probe at ``size`` px, and the record for ``recipe.json``; ``cfg``
    unchanged (and why) when the probe's estimate — ``seconds_per_image``, a training image's cost at ``size``,
    for a third of each of its forward passes — is over ``PROBE_SHARE`` of the budget, or the data is too small."""
    from imgclf.config import with_overrides

    estimate = probe_seconds(seconds_per_image)
    if estimate > PROBE_SHARE * budget:
        return cfg, {
            "skipped": f"its estimate ({estimate:.0f}s) is over {PROBE_SHARE:.0%} of the budget",
            "flips": cfg.data.flips,
        }
    found = probe_orientation(cfg, dataset, size, source)
    if found is None:
        return cfg, {"skipped": "too few images a class to tell", "flips": cfg.data.flips}
    log.info(
        "recipe orientation probe: data.flips=%s (held-out accuracy %s)",
        found.flips,
        ", ".join(f"{k} {v:.2f}" for k, v in found.accuracy.items()),
    )
    return with_overrides(cfg, {"data.flips": found.flips}), found.to_dict()
