"""Sub-quadratic search for pairs of 64-bit hashes within a Hamming radius (multi-index hashing).

Each hash is cut into four 16-bit blocks. Two hashes at most ``r`` bits apart differ in at most
``r // 4`` bits in at least one block (pigeonhole), so probing, per block, every key within ``r // 4``
bits of the query's block finds every pair — no pair is missed, and unrelated hashes are rarely
touched. Each query costs ``4 * (number of probe keys)`` table lookups plus the bucket sizes, instead
of one comparison per indexed hash.

Example::

    pairs = radius_pairs(np.array(full_hashes, dtype=np.uint64), radius=7)
    pairs.i, pairs.j, pairs.distance    # i < j, distance <= 7
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

_BLOCKS = 4
_BLOCK_BITS = 16
_CHUNK = 1 << 21  # probe keys per step: bounds memory to a few tens of MB


@dataclass
class Pairs:
    i: np.ndarray  # int64, i < j
    j: np.ndarray
    distance: np.ndarray  # smallest Hamming distance found for the pair


def _masks(bits: int, flips: int) -> np.ndarray:
    out = [0]
    for k in range(1, flips + 1):
        out += [sum(1 << b for b in combo) for combo in combinations(range(bits), k)]
    return np.array(out, dtype=np.int64)


def _probe(index: np.ndarray, queries: np.ndarray, owners: np.ndarray, radius: int) -> list[np.ndarray]:
    """Rows ``(owner, item, distance)`` for every query/item pair within ``radius`` (owner != item)."""
    masks = _masks(_BLOCK_BITS, radius // _BLOCKS)
    found = []
    step = max(1, _CHUNK // len(masks))
    for block in range(_BLOCKS):
        shift = np.uint64(block * _BLOCK_BITS)
        keys = ((index >> shift) & np.uint64(0xFFFF)).astype(np.int64)
        order = np.argsort(keys, kind="stable")
        counts = np.bincount(keys, minlength=1 << _BLOCK_BITS)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        for lo in range(0, len(queries), step):
            q = queries[lo : lo + step]
            probes = (((q >> shift) & np.uint64(0xFFFF)).astype(np.int64)[:, None] ^ masks[None, :]).ravel()
            n_hits = counts[probes]
            hit = n_hits > 0
            probes, n_hits = probes[hit], n_hits[hit]
            query_of = (np.arange(len(q) * len(masks)) // len(masks))[hit]
            total = int(n_hits.sum())
            if not total:
                continue
            run = np.repeat(np.arange(len(probes)), n_hits)
            within = np.arange(total) - np.repeat(np.cumsum(n_hits) - n_hits, n_hits)
            items = order[starts[probes][run] + within]
            qi = query_of[run] + lo
            dist = np.bitwise_count(queries[qi] ^ index[items]).astype(np.int64)
            keep = (dist <= radius) & (owners[qi] != items)
            found.append(np.stack([owners[qi][keep], items[keep], dist[keep]], axis=1))
    return found


def radius_pairs(
    index: np.ndarray, radius: int, queries: np.ndarray | None = None, owners: np.ndarray | None = None
) -> Pairs:
    """Pairs of indexed hashes within ``radius`` bits; ``queries`` (owned by index rows ``owners``) add more probes.

    With extra queries (e.g. crop hashes of each image), a pair is also found when any query of one item
    is within ``radius`` of the other item's indexed hash.
    """
    index = np.asarray(index, dtype=np.uint64)
    q = index if queries is None else np.concatenate([index, np.asarray(queries, dtype=np.uint64)])
    own = (
        np.arange(len(index))
        if owners is None
        else np.concatenate([np.arange(len(index)), np.asarray(owners, dtype=np.int64)])
    )
    found = _probe(index, q, own, radius) if len(index) > 1 else []
    rows = np.concatenate(found) if found else np.zeros((0, 3), dtype=np.int64)
    if not len(rows):
        empty = np.zeros(0, dtype=np.int64)
        return Pairs(empty, empty, empty)
    i, j = np.minimum(rows[:, 0], rows[:, 1]), np.maximum(rows[:, 0], rows[:, 1])
    key = i * len(index) + j
    order = np.lexsort((rows[:, 2], key))
    first = np.concatenate(([True], key[order][1:] != key[order][:-1]))
    pick = order[first]
    return Pairs(i[pick], j[pick], rows[pick, 2])


def median_nn_distance(hashes: np.ndarray, sample: int = 1000, seed: int = 0) -> float | None:
    """Median Hamming distance from (a sample of) the hashes to their nearest other hash; None below 2."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    if len(hashes) < 2:
        return None
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(hashes), size=min(sample, len(hashes)), replace=False)
    nearest = []
    for lo in range(0, len(picks), 64):
        rows = picks[lo : lo + 64]
        dist = np.bitwise_count(hashes[rows, None] ^ hashes[None, :]).astype(np.int64)
        dist[np.arange(len(rows)), rows] = 65
        nearest.append(dist.min(axis=1))
    return float(np.median(np.concatenate(nearest)))
