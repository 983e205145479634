"""What image size do the data's pixels need? A probe that caps the budget recipe's final size.

Under a budget, size and epochs trade against each other: a larger size costs epochs. The recipe puts
resolution first (a small defect or a distant object is lost at a small size, whatever the epochs), but resolution
pays only while the pixels hold more information: a 28 px photo upscaled to 192 px holds no more than at 96 px,
and the epochs that 192 px costs are lost for nothing. The data says which (:mod:`imgclf.budget.feature_probe`):

1. the probe images' frozen-backbone features at each candidate size (the probe ladder's rungs up to the largest
   size the budget affords, :func:`candidate_sizes`);
2. held-out accuracy of a logistic regression at each size (cross-validated, as for the orientation probe);
3. the final size is the smallest that the evidence shows to lose at most ``TOLERANCE`` against every larger
   candidate: the paired gap in held-out accuracy *plus one standard error of it* (:func:`enough_size`). Without
   that evidence the default stands: the largest size the budget affords. A gap within the noise is no evidence
   that the pixels are not needed: on a held-out set of thin defects the old rule (gap alone under 3 points) chose
   80 px on accuracies of 0.66-0.72 measured with 2.6 pp of noise, and a plain 160 px run beat the recipe by
   1.7 pp. Measured (BENCHMARKS.md, "The resolution probe"): Fashion-MNIST upscaled from 28 px flattens from
   96 px (0.82 there, 0.83 at 192), a 32 px object in a 160 px scene keeps climbing (0.19 at 96 px, 0.34 at 192,
   0.44 at 224).

The recipe then trains at that size, and the clock turns the time a larger size would have taken into epochs.
Everything measured goes to ``recipe.json`` (``resolution``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.budget.feature_probe import PROBE_IMAGES, ProbeSource, embed, held_out_correct, probe_set
from imgclf.budget.plan import EVAL_SPEEDUP, PROBE_LADDER, CostModel
from imgclf.config import Config
from imgclf.experiments.stats import paired_gap

log = logging.getLogger("imgclf")

# A smaller size is enough when a larger one is shown to add at most this much held-out accuracy (gap + 1 SE): the
# frozen-feature accuracy the recipe gives up for the epochs a smaller size buys. The paired difference between two
# sizes on the probe's 320 images has a standard error of about 1-2 pp, so a cap needs a gap of about 1-2 pp or less.
TOLERANCE = 0.03
PROBE_SHARE = 0.05  # the probe runs when its estimate is at most this share of the budget
FIT_SECONDS = 2.0  # the four cross-validated logistic regressions of one size (320 x 1280 features, 10 classes: 1.8-2.1 s measured)


def candidate_sizes(largest: int) -> list[int]:
    """The sizes the probe compares: the probe ladder's rungs below ``largest``, and ``largest``.

    >>> candidate_sizes(144)
    [64, 80, 96, 128, 144]
    """
    return [s for s in PROBE_LADDER if s < largest] + [int(largest)]


def enough_size(correct: dict[int, np.ndarray], tolerance: float = TOLERANCE) -> int:
    """The smallest size whose held-out accuracy no larger size beats by more than ``tolerance``, counting one
    standard error of each paired gap against the cap (:func:`paired_gap`); the largest size when none is shown.

    >>> right = lambda k, n=400: np.arange(n) < k  # k of n images right, the same ones at every size
    >>> enough_size({64: right(300), 96: right(330), 192: right(332)})  # 96 px: 0.5 points below 192 px, 0.3 SE
    96
    >>> enough_size({64: right(300), 96: right(310), 192: right(330)})  # 5 points at 96 px, 15 at 64 px: no cap
    192
    """
    sizes = sorted(correct)
    for size in sizes:
        if all(sum(paired_gap(correct[size], correct[larger])) <= tolerance for larger in sizes if larger > size):
            return size
    return sizes[-1]


def probe_resolution(
    cfg: Config, dataset: Path, sizes: list[int], source: ProbeSource | None = None
) -> dict[int, np.ndarray] | None:
    """Per-image held-out correctness of the frozen features at each of ``sizes`` (on ``source()``'s images when
    given); None when the data has fewer than two images in some class."""
    probe = source() if source else probe_set(cfg, dataset, max(sizes))
    if probe is None:
        return None
    return {size: held_out_correct(embed(probe, size), probe.labels, cfg.train.seed)["identity"] for size in sizes}


def resolution_cap(
    cfg: Config, dataset: Path, largest: int, cost: CostModel, budget: float, source: ProbeSource | None = None
) -> tuple[int, dict[str, Any]]:
    """The size the final model needs at most (``largest`` when the probe cannot tell, or it would cost more than
    ``PROBE_SHARE`` of the budget: forward passes at ``cost``, plus the fits) and the record for ``recipe.json``."""
    sizes = candidate_sizes(largest)
    if len(sizes) < 2:
        return largest, {"skipped": f"{largest}px is the smallest size the recipe uses", "size": largest}
    estimate = PROBE_IMAGES * sum(cost.seconds_per_image(s) for s in sizes) / EVAL_SPEEDUP + FIT_SECONDS * len(sizes)
    if estimate > PROBE_SHARE * budget:
        return largest, {
            "skipped": f"its estimate ({estimate:.0f}s) is over {PROBE_SHARE:.0%} of the budget",
            "size": largest,
        }
    correct = probe_resolution(cfg, dataset, sizes, source)
    if correct is None:
        return largest, {"skipped": "too few images a class to tell", "size": largest}
    size = enough_size(correct)
    accuracy = {s: float(c.mean()) for s, c in correct.items()}
    gap, se = paired_gap(correct[size], correct[largest])
    log.info(
        "recipe resolution probe: %dpx %s (held-out accuracy %s)",
        size,
        f"is enough of up to {largest}px" if size < largest else "is the largest the budget affords, kept",
        ", ".join(f"{s}px {a:.2f}" for s, a in accuracy.items()),
    )
    return size, {
        "size": size,
        "largest": largest,
        "accuracy": {str(s): a for s, a in accuracy.items()},
        "images": len(correct[largest]),
        "tolerance": TOLERANCE,
        "effect": {
            "gap_to_largest": gap,
            "se": se,
            "rule": "cap only where gap + 1 SE <= tolerance against every larger size; else the largest size",
        },
    }
