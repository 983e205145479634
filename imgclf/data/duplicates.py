"""Copies of the same photo: identical files, and near copies found by hash and verified on pixels.

1. Files with the same bytes are one *node* (an "identical file" match).
2. Candidate pairs of nodes come from the perceptual hashes (whole image against whole image and
   against crop hashes, within :data:`CANDIDATE_RADIUS` bits; see :mod:`imgclf.data.hashindex`).
3. Groups are stars: nodes are visited largest image first. A node whose candidate already belongs
   to a star is checked against that star's representative and joins it if the check passes;
   otherwise it becomes a representative, and each of its unassigned candidates joins it only if the
   pixel check (:mod:`imgclf.data.verify`) passes *against the representative*. No chains: two images
   share a group only when each was verified against the same representative, and every reported
   pair is backed by a pixel check.

Example::

    found = find_duplicates(items, load=thumbnail)
    found.group[3], found.evidence(3, 7)   # "g0002", "near copy (detail correlation 0.97, hash distance 4)"
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from imgclf.data.hashindex import median_nn_distance, radius_pairs
from imgclf.data.near_copy import CANDIDATE_RADIUS, NEAR_COPY_THRESHOLD
from imgclf.data.verify import (
    detail_correlation,
    pixels_equal,
    thumbnail,
)

#: Median nearest-neighbour pHash distance at or below which a set counts as homogeneous (look-alike).
#: Random 64-bit hashes stay above 12 for sets of up to a million images (binomial tail), and a set of
#: unrelated photos sits around 20; at 12 or less, hash matches between distinct images are common.
HOMOGENEOUS_NN_DISTANCE = 12


@dataclass(frozen=True)
class Item:
    path: str  # as shown in the report
    file: Path  # where to read it
    sha256: str
    phash: str  # "" = not searched for near copies (unreadable or tiny): identical files only
    crops: Sequence[int]
    area: int
    bytes: int


@dataclass
class Summary:
    """What the duplicate search did, for the cleaning report."""

    candidates: int = 0  # pairs checked on pixels (each a hash candidate of the node, or of one of the star's members)
    verified: int = 0  # ... that passed
    rejected: int = 0  # ... that failed: hash-similar but different images
    best_rejected: float | None = None  # highest detail correlation among the rejected
    lowest_verified: float | None = None  # lowest detail correlation among the verified
    median_nn_distance: float | None = None
    homogeneous: bool = False
    threshold: float = NEAR_COPY_THRESHOLD
    radius: int = CANDIDATE_RADIUS


@dataclass
class Duplicates:
    items: list[Item]
    node: list[int]  # item -> node (same bytes)
    rep: dict[int, int]  # node -> its star's representative node
    link: dict[int, tuple[int, float, bool]]  # member node -> (hash distance, detail correlation, pixels equal)
    summary: Summary = field(default_factory=Summary)

    def group_members(self) -> list[list[int]]:
        """Item indices per group of two or more items, in order of first item."""
        by_rep: dict[int, list[int]] = {}
        for i, n in enumerate(self.node):
            by_rep.setdefault(self.rep.get(n, n), []).append(i)
        return [m for m in sorted(by_rep.values()) if len(m) > 1]

    def evidence(self, i: int, j: int) -> str:
        """Why items ``i`` and ``j`` count as the same photo, in words that match what was checked."""
        a, b = self.node[i], self.node[j]
        if a == b:
            return "identical file"
        if self.rep.get(b, b) == a or self.rep.get(a, a) == b:
            distance, corr, equal = self.link[b if self.rep.get(b, b) == a else a]
            if equal:
                return "same image, decoded pixels equal"
            return f"near copy (detail correlation {corr:.2f}, hash distance {distance})"
        rep = self.rep.get(a, a)
        path = next(it.path for k, it in enumerate(self.items) if self.node[k] == rep)
        return f"both verified near copies of {path}"


def _nodes(items: list[Item]) -> tuple[list[int], list[int]]:
    first: dict[str, int] = {}
    node = [first.setdefault(it.sha256, len(first)) for it in items]
    heads = list(first.values())
    owner = [0] * len(heads)
    for i in reversed(range(len(items))):
        owner[node[i]] = i
    return node, owner


def find_duplicates(
    items: list[Item],
    load: Callable[[Path], np.ndarray] = thumbnail,
    threshold: float = NEAR_COPY_THRESHOLD,
    radius: int | None = CANDIDATE_RADIUS,
    load_many: Callable[[list[Path]], list[np.ndarray]] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Duplicates:
    """Identical files and verified near-copy stars among ``items``; ``radius=None`` turns the near search off.

    ``load(path)`` gives a :func:`imgclf.data.verify.thumbnail`; ``load_many`` (optional) does it for many
    paths at once, e.g. across processes.
    """
    node, owner = _nodes(items)
    found = Duplicates(items, node, rep={}, link={})
    hashed = [n for n, i in enumerate(owner) if items[i].phash]
    if radius is None or len(hashed) < 2:
        return found
    full = np.array([int(items[owner[n]].phash, 16) for n in hashed], dtype=np.uint64)
    crops = [(k, h) for k, n in enumerate(hashed) for h in items[owner[n]].crops]
    pairs = radius_pairs(
        full, radius, np.array([h for _, h in crops], dtype=np.uint64), np.array([k for k, _ in crops], dtype=np.int64)
    )
    neighbours: dict[int, list[tuple[int, int]]] = {}
    for i, j, d in zip(pairs.i.tolist(), pairs.j.tolist(), pairs.distance.tolist()):
        neighbours.setdefault(hashed[i], []).append((d, hashed[j]))
        neighbours.setdefault(hashed[j], []).append((d, hashed[i]))
    thumbs = _thumbnails(items, owner, sorted(neighbours), load, load_many)
    order = sorted(neighbours, key=lambda n: (-items[owner[n]].area, -items[owner[n]].bytes, items[owner[n]].path))
    check = partial(_check, found, thumbs, threshold, [items[i] for i in owner], set())
    for done, n in enumerate(order, start=1):
        if progress:
            progress(done, len(order))
        if n in found.rep:
            continue
        # A copy of a member is tried against that member's representative (never joined to the member).
        for r in dict.fromkeys(found.rep[m] for _, m in sorted(neighbours[n]) if m in found.rep):
            if check(r, n):
                break
        if n in found.rep:
            continue
        for _, m in sorted(neighbours[n]):
            if m not in found.rep:
                check(n, m)
    reps = [n for n in hashed if found.rep.get(n, n) == n]
    full_reps = np.array([int(items[owner[n]].phash, 16) for n in reps], dtype=np.uint64)
    nn = median_nn_distance(full_reps)
    found.summary.median_nn_distance = nn
    found.summary.homogeneous = nn is not None and nn <= HOMOGENEOUS_NN_DISTANCE
    return found


def _check(
    found: Duplicates, thumbs: dict, threshold: float, heads: list[Item], tried: set, rep: int, node: int
) -> bool:
    """Pixel-check ``node`` against ``rep`` (once per pair); on success ``node`` joins ``rep``'s star with its evidence."""
    if (rep, node) in tried:
        return False
    tried.add((rep, node))
    summary = found.summary
    summary.candidates += 1
    corr = detail_correlation(thumbs[rep], thumbs[node])
    if corr < threshold:
        summary.rejected += 1
        summary.best_rejected = max(corr, -1.0 if summary.best_rejected is None else summary.best_rejected)
        return False
    summary.verified += 1
    summary.lowest_verified = min(corr, 2.0 if summary.lowest_verified is None else summary.lowest_verified)
    found.rep[node] = found.rep[rep] = rep
    a, b = heads[rep], heads[node]
    found.link[node] = (hash_distance(a, b), corr, _same_pixels(a, b, thumbs[rep], thumbs[node]))
    return True


def hash_distance(a: Item, b: Item) -> int:
    """Smallest Hamming distance between one image's whole-image hash and the other's whole or crop hashes."""
    fa, fb = int(a.phash, 16), int(b.phash, 16)
    return min(
        [(fa ^ fb).bit_count()] + [(c ^ fb).bit_count() for c in a.crops] + [(c ^ fa).bit_count() for c in b.crops]
    )


def _thumbnails(items, owner, nodes, load, load_many) -> dict[int, np.ndarray]:
    paths = [items[owner[n]].file for n in nodes]
    thumbs = load_many(paths) if load_many else [load(p) for p in paths]
    return dict(zip(nodes, thumbs))


def _same_pixels(a: Item, b: Item, ta: np.ndarray, tb: np.ndarray) -> bool:
    """Full decode only when the thumbnails already agree exactly (rare, and cheap to rule out)."""
    return a.area == b.area and np.array_equal(ta, tb) and pixels_equal(a.file, b.file)
