"""Test-time augmentation: average the model's predictions over several views of an image.

- ``fixed_tta``: the first ``n`` views for every image.
- ``adaptive_tta``: the first ``K`` views for every image; further views, one at a time and
  in order, only while the image's averaged prediction is uncertain.

``forward(batch) -> logits`` is the caller's: it owns the model, device, channels_last and
autocast, and returns **raw** logits ``(B, C)``. Temperature scaling is done here (the
``temperature`` argument, from :func:`~imgclf.eval.calibration.fit_temperature`) before aggregation, so it
changes both the returned probabilities and which images count as uncertain.

Batching: each round packs the pending (image, view) pairs of *all* images into batches of
``batch_size``; which pairs are pending never depends on the batch size, so neither do the
results (up to the model's own float differences between batch sizes).

Example::

    views = build_views(cfg.tta.views, 224, mean, std, "bicubic", 0.875)
    result = adaptive_tta(lambda x: model(x.to(device)), images, views, cfg.tta, batch_size=64)
    result.probs.argmax(1), result.total_passes
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from imgclf.config import TTA_AGGREGATES as AGGREGATES
from imgclf.config import TTA_UNCERTAINTIES as UNCERTAINTIES
from imgclf.config import TTAConfig
from imgclf.errors import ConfigError

Forward = Callable[[torch.Tensor], torch.Tensor]
View = Callable[[Any], torch.Tensor]


@dataclass(frozen=True)
class TTAResult:
    probs: np.ndarray  # (N, C) float64, aggregated probabilities
    passes: np.ndarray  # (N,) int, forward passes (views) each image got
    total_passes: int

    @property
    def predictions(self) -> np.ndarray:
        return self.probs.argmax(axis=1)


# ---------------------------------------------------------------- pure pieces


def softmax(logits: Any, axis: int = -1) -> np.ndarray:
    x = _f64(logits)
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def aggregate(logits_stack: Any, how: str = "mean_probs") -> np.ndarray:
    """Views × classes logits → class probabilities (also works on ``(..., V, C)``).

    ``mean_probs`` averages the softmax of each view; ``mean_logits`` takes the softmax of
    the averaged logits (sharper when the views agree).

    >>> aggregate([[2.0, 0.0], [0.0, 2.0]], "mean_probs").round(3).tolist()
    [0.5, 0.5]
    """
    x = _f64(logits_stack)
    if x.ndim < 2:
        raise ValueError(f"aggregate expects (..., views, classes) logits, got shape {x.shape}")
    if how == "mean_probs":
        return softmax(x).mean(axis=-2)
    if how == "mean_logits":
        return softmax(x.mean(axis=-2))
    raise ConfigError(f"unknown TTA aggregate {how!r}; choose one of {', '.join(AGGREGATES)}")


def uncertainty(probs: Any, kind: str = "margin") -> np.ndarray:
    """Per row of ``(..., C)`` probabilities: ``margin`` (top-1 minus top-2; small = unsure)
    or ``entropy`` in nats (large = unsure)."""
    p = _f64(probs)
    if kind == "margin":
        if p.shape[-1] < 2:
            return np.ones(p.shape[:-1])
        top2 = np.partition(p, -2, axis=-1)[..., -2:]
        return top2[..., 1] - top2[..., 0]
    if kind == "entropy":
        safe = np.where(p > 0, p, 1.0)
        return -(p * np.log(safe)).sum(axis=-1)
    raise ConfigError(f"unknown TTA uncertainty {kind!r}; choose one of {', '.join(UNCERTAINTIES)}")


def is_uncertain(probs: Any, kind: str, threshold: float) -> np.ndarray:
    """True where the margin is below / the entropy above ``threshold``."""
    score = uncertainty(probs, kind)
    return score < threshold if kind == "margin" else score > threshold


def _priority(probs: np.ndarray, kind: str) -> np.ndarray:
    """Sort key: smaller = more uncertain = served first when the budget runs short."""
    score = uncertainty(probs, kind)
    return score if kind == "margin" else -score


def _f64(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


# ---------------------------------------------------------------- running state


class _Running:
    """Per-image running aggregate, plus how long the top class has held.

    Views are added one view index at a time, in order, so the sums (and so the results)
    are the same whatever the batching.
    """

    def __init__(self, n_images: int, how: str):
        if how not in AGGREGATES:
            raise ConfigError(f"unknown TTA aggregate {how!r}; choose one of {', '.join(AGGREGATES)}")
        self.how = how
        self.total: np.ndarray | None = None  # (N, C) sum of probs or logits
        self.count = np.zeros(n_images, dtype=np.int64)
        self.top = np.full(n_images, -1, dtype=np.int64)
        self.run = np.zeros(n_images, dtype=np.int64)  # consecutive views the top class held

    def add(self, idx: np.ndarray, logits: np.ndarray) -> None:
        """Add one view's logits for images ``idx`` (distinct)."""
        if self.total is None:
            self.total = np.zeros((len(self.count), logits.shape[1]))
        self.total[idx] += softmax(logits) if self.how == "mean_probs" else logits
        self.count[idx] += 1
        top = self.probs(idx).argmax(axis=1)
        self.run[idx] = np.where(top == self.top[idx], self.run[idx] + 1, 1)
        self.top[idx] = top

    def probs(self, idx: np.ndarray | None = None) -> np.ndarray:
        if self.total is None:
            return np.zeros((len(self.count), 0))
        idx = np.arange(len(self.count)) if idx is None else idx
        mean = self.total[idx] / np.maximum(self.count[idx], 1)[:, None]
        return mean if self.how == "mean_probs" else softmax(mean)


def _forward_pairs(
    forward: Forward, images: Sequence[Any], views: Sequence[View], pairs: list[tuple[int, int]], batch_size: int
) -> np.ndarray:
    """Raw logits ``(len(pairs), C)`` for (image, view) pairs sorted by image, in full batches."""
    chunks = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        tensors, last_i, image = [], None, None
        for i, v in chunk:
            if i != last_i:  # pairs come sorted by image: fetch each image once per batch
                image, last_i = images[i], i
            tensors.append(views[v](image))
        with torch.inference_mode():
            logits = forward(torch.stack(tensors))
        if logits.ndim != 2 or logits.shape[0] != len(chunk):
            raise ValueError(f"forward returned shape {tuple(logits.shape)} for a batch of {len(chunk)}")
        chunks.append(_f64(logits))
    return np.concatenate(chunks) if chunks else np.empty((0, 0))


def _run_pairs(
    forward: Forward,
    images: Sequence[Any],
    views: Sequence[View],
    pairs: list[tuple[int, int]],
    batch_size: int,
    temperature: float,
    state: _Running,
) -> int:
    """Forward all (image, view) pairs, then add them to ``state`` one view index at a time."""
    pairs = sorted(pairs)
    out = _forward_pairs(forward, images, views, pairs, batch_size) / temperature
    image_idx = np.array([i for i, _ in pairs], dtype=np.int64)
    view_idx = np.array([v for _, v in pairs], dtype=np.int64)
    for v in np.unique(view_idx):  # ascending: each image's views are added in order
        rows = view_idx == v
        state.add(image_idx[rows], out[rows])
    return len(pairs)


def view_logits(forward: Forward, images: Sequence[Any], views: Sequence[View], batch_size: int) -> np.ndarray:
    """Raw logits of every view of every image, ``(N, V, C)``: the input of
    :func:`~imgclf.infer.tta_threshold.choose_adaptive_threshold` (and ``[:, 0]`` of ``fit_temperature``)."""
    _check(images, views, batch_size, 1.0)
    pairs = [(i, v) for i in range(len(images)) for v in range(len(views))]
    out = _forward_pairs(forward, images, views, pairs, batch_size)
    return out.reshape(len(images), len(views), -1)


def _check(images: Sequence[Any], views: Sequence[View], batch_size: int, temperature: float) -> None:
    if not views:
        raise ConfigError("TTA needs at least one view")
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ConfigError(f"temperature must be a positive number, got {temperature}")


def _result(state: _Running, spent: int) -> TTAResult:
    return TTAResult(probs=state.probs(), passes=state.count.copy(), total_passes=spent)


# ---------------------------------------------------------------- TTA


def fixed_tta(
    forward: Forward,
    images: Sequence[Any],
    views: Sequence[View],
    n: int,
    batch_size: int,
    aggregate: str = "mean_probs",
    temperature: float = 1.0,
) -> TTAResult:
    """Every image gets views ``0..n-1``; ``N * n`` forward passes, packed in full batches."""
    _check(images, views, batch_size, temperature)
    if not 1 <= n <= len(views):
        raise ConfigError(f"tta.n is {n} but {len(views)} view(s) are listed; choose 1..{len(views)}")
    state = _Running(len(images), aggregate)
    spent = _run_pairs(
        forward, images, views, [(i, v) for i in range(len(images)) for v in range(n)], batch_size, temperature, state
    )
    return _result(state, spent)


def adaptive_tta(
    forward: Forward,
    images: Sequence[Any],
    views: Sequence[View],
    cfg: TTAConfig,
    batch_size: int,
    temperature: float = 1.0,
) -> TTAResult:
    """Spend extra views only on images the model is unsure about.

    Every image gets the first ``K = cfg.first_views`` views. Then, round by round, each image
    that is still uncertain (``cfg.uncertainty`` vs ``cfg.threshold`` on its aggregated,
    temperature-scaled prediction) gets its next view, until it is no longer uncertain, its
    top class has held for ``cfg.stable_views`` consecutive views (counting the view where it
    first became top; so S=1 never adds views and S > max_views disables this rule), or it
    has ``cfg.max_views`` views (capped by ``len(views)``).

    Budget: ``cfg.budget`` caps the total forward passes and is never exceeded. It must be at
    least the number of images (each needs one view). When a round would exceed it, only the
    most uncertain of that round's images (lowest margin / highest entropy, ties by index)
    get their next view, and TTA stops. If even the first K views do not fit, they are
    handed out one view index at a time the same way.
    """
    _check(images, views, batch_size, temperature)
    n_images = len(images)
    max_views = min(cfg.max_views, len(views))
    k = min(cfg.first_views, max_views)
    budget = math.inf if cfg.budget is None else cfg.budget
    state = _Running(n_images, cfg.aggregate)
    if n_images == 0:
        return _result(state, 0)
    if budget < n_images:
        raise ConfigError(
            f"tta.budget ({cfg.budget}) is below the number of images ({n_images}); each image needs one pass"
        )
    first = k if n_images * k <= budget else 1
    spent = _run_pairs(
        forward, images, views, [(i, v) for i in range(n_images) for v in range(first)], batch_size, temperature, state
    )
    while spent < budget:
        todo = _pending(state, cfg, k, max_views)
        if todo.size == 0:
            break
        if todo.size > budget - spent:
            order = np.argsort(_priority(state.probs(todo), cfg.uncertainty), kind="stable")
            todo = np.sort(todo[order[: int(budget - spent)]])
        pairs = [(int(i), int(state.count[i])) for i in todo]
        spent += _run_pairs(forward, images, views, pairs, batch_size, temperature, state)
    return _result(state, spent)


def _pending(state: _Running, cfg: TTAConfig, k: int, max_views: int) -> np.ndarray:
    """Images that get another view this round."""
    probs = state.probs()
    wants_more = is_uncertain(probs, cfg.uncertainty, cfg.threshold) & (state.run < cfg.stable_views)
    need = (state.count < k) | (wants_more & (state.count < max_views))
    return np.flatnonzero(need)


def run_tta(
    forward: Forward,
    images: Sequence[Any],
    views: Sequence[View],
    cfg: TTAConfig,
    batch_size: int,
    temperature: float = 1.0,
) -> TTAResult:
    """Dispatch on ``cfg.mode``: ``none`` runs ``views[0]`` only (build it as ``identity``)."""
    if cfg.mode == "none":
        return fixed_tta(forward, images, views[:1], 1, batch_size, cfg.aggregate, temperature)
    if cfg.mode == "fixed":
        return fixed_tta(forward, images, views, cfg.n, batch_size, cfg.aggregate, temperature)
    return adaptive_tta(forward, images, views, cfg, batch_size, temperature)
