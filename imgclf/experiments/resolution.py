"""What image size do the data's pixels need? A probe that caps the budget recipe's final size.

Under a budget, size and epochs trade against each other: a larger size costs epochs. The recipe puts
resolution first (a small defect or a distant object is lost at a small size, whatever the epochs), but resolution
pays only while the pixels hold more information: a 28 px photo upscaled to 192 px holds no more than at 96 px,
and the epochs that 192 px costs are lost for nothing. The data says which (:mod:`imgclf.experiments.feature_probe`):

1. the probe images' frozen-backbone features at each candidate size (the proxy ladder's rungs up to the largest
   size the budget affords, :func:`candidate_sizes`);
2. held-out accuracy of a logistic regression at each size (cross-validated, as for the orientation probe);
3. the final size is the smallest from which no larger candidate is more than ``TOLERANCE`` more accurate
   (:func:`enough_size`). Measured (BENCHMARKS.md, "The resolution probe"): Fashion-MNIST upscaled from 28 px
   flattens from 96 px (0.82 there, 0.83 at 192), a 32 px object in a 160 px scene keeps climbing (0.19 at 96 px,
   0.34 at 192, 0.44 at 224).

The recipe then trains at that size, and the clock turns the time a larger size would have taken into epochs.
Everything measured goes to ``recipe.json`` (``resolution``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from imgclf.config import Config
from imgclf.experiments.budget import EVAL_SPEEDUP, PROXY_LADDER, CostModel
from imgclf.experiments.feature_probe import PROBE_IMAGES, ProbeSource, embed, held_out_correct, probe_set

log = logging.getLogger("imgclf")

# A larger size must beat a smaller one by more than this much held-out accuracy to be worth its cost. The paired
# difference between two sizes on the probe's 320 images has a standard error of about 1-2 pp.
TOLERANCE = 0.03
PROBE_SHARE = 0.05  # the probe runs when its estimate is at most this share of the budget
FIT_SECONDS = 2.0  # the four cross-validated logistic regressions of one size (320 x 1280 features, 10 classes: 1.8-2.1 s measured)


def candidate_sizes(largest: int) -> list[int]:
    """The sizes the probe compares: the proxy ladder's rungs below ``largest``, and ``largest``.

    >>> candidate_sizes(144)
    [64, 80, 96, 128, 144]
    """
    return [s for s in PROXY_LADDER if s < largest] + [int(largest)]


def enough_size(accuracy: dict[int, float], tolerance: float = TOLERANCE) -> int:
    """The smallest size from which no larger size's held-out accuracy is more than ``tolerance`` higher.

    >>> enough_size({64: 0.78, 96: 0.82, 128: 0.81, 192: 0.83})
    96
    >>> enough_size({64: 0.18, 96: 0.18, 128: 0.24, 192: 0.34})
    192
    """
    sizes = sorted(accuracy)
    for size in sizes:
        if all(accuracy[larger] - accuracy[size] <= tolerance for larger in sizes if larger > size):
            return size
    return sizes[-1]


def probe_resolution(cfg: Config, dataset: Path, sizes: list[int],
                     source: ProbeSource | None = None) -> tuple[dict[int, float], int] | None:
    """Held-out accuracy of the frozen features at each of ``sizes`` (on ``source()``'s images when given), and the
    number of images; None when the data has fewer than two images in some class."""
    probe = source() if source else probe_set(cfg, dataset, max(sizes))
    if probe is None:
        return None
    accuracy = {size: float(held_out_correct(embed(probe, size), probe.labels, cfg.train.seed)["identity"].mean())
                for size in sizes}
    return accuracy, len(probe.labels)


def resolution_cap(cfg: Config, dataset: Path, largest: int, cost: CostModel, budget: float,
                   source: ProbeSource | None = None) -> tuple[int, dict[str, Any]]:
    """The size the final model needs at most (``largest`` when the probe cannot tell, or it would cost more than
    ``PROBE_SHARE`` of the budget: forward passes at ``cost``, plus the fits) and the record for ``recipe.json``."""
    sizes = candidate_sizes(largest)
    if len(sizes) < 2:
        return largest, {"skipped": f"{largest}px is the smallest size the recipe uses", "size": largest}
    estimate = PROBE_IMAGES * sum(cost.seconds_per_image(s) for s in sizes) / EVAL_SPEEDUP + FIT_SECONDS * len(sizes)
    if estimate > PROBE_SHARE * budget:
        return largest, {"skipped": f"its estimate ({estimate:.0f}s) is over {PROBE_SHARE:.0%} of the budget", "size": largest}
    found = probe_resolution(cfg, dataset, sizes, source)
    if found is None:
        return largest, {"skipped": "too few images a class to tell", "size": largest}
    accuracy, images = found
    size = enough_size(accuracy)
    log.info("recipe resolution probe: %dpx is enough of up to %dpx (held-out accuracy %s)", size, largest,
             ", ".join(f"{s}px {a:.2f}" for s, a in accuracy.items()))
    return size, {"size": size, "largest": largest, "accuracy": {str(s): a for s, a in accuracy.items()},
                  "images": images, "tolerance": TOLERANCE}
