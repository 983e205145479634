"""Near-duplicate benchmark: precision and recall on two generated corpora, and time at 10k and 100k images.

* (a) ``--lookalike`` distinct look-alike images (crops of one micrograph-like texture under one
  illumination, each with its own small mark): every near-duplicate flag is a false one.
* (b) ``--originals`` photos, each with six altered copies (JPEG q40, x0.5, 5 % crop, brightness
  +-10 %, PNG of the decoded JPEG), one copy of every fourth original in ``test/`` (a leak): recall
  is the share of copies grouped with their original, precision the share of same-group pairs that
  really share an origin.
* Scale: ``--scale`` images of corpus (b)'s kind through ``prepare`` end to end (cold), then the
  duplicate search alone on the same files; then the candidate search alone on ``--hash-scale``
  hashes, built from the scale set's real hashes by XOR-ing each origin's hashes with its own random
  64-bit mask per replica (distances inside a family are kept, families land far apart).

Corpora are generated once under ``bench/.data/`` (git-ignored). Usage::

    .venv/bin/python bench/dedup.py                       # the full run (a 500, b 200, 10k, 100k)
    .venv/bin/python bench/dedup.py --scale 0 --hash-scale 0   # accuracy only
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from imgclf.data.duplicates import Item, find_duplicates
from imgclf.data.hashindex import radius_pairs
from imgclf.data.hashing import unpack_hashes
from imgclf.data.prepare import PrepareOptions, prepare
from imgclf.data.verify import thumbnail

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, machine, report
from dedup_corpus import copies_corpus, lookalike_corpus

_ORIGIN = re.compile(r"(?:la|p)(\d+)")


def _corpus(name: str, make, **kw) -> tuple[Path, dict[str, int]]:
    root = DATA / name
    done = root / ".complete"
    if not done.is_file():
        shutil.rmtree(root, ignore_errors=True)
        make(root, **kw)
        done.touch()
    files = sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")
    )
    return root, {f: int(_ORIGIN.search(f.rsplit("/", 1)[-1]).group(1)) for f in files}


def _prepared(src: Path, workers: int):
    out = src.parent / f"{src.name}-prepared"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    result = prepare(src, out, PrepareOptions(workers=workers, max_drop=1.0))
    return result, time.perf_counter() - start


def _score(table, origin: dict[str, int]) -> dict:
    group = dict(zip(table["path"], table["dup_group"]))
    by_group: dict[str, list[str]] = defaultdict(list)
    for path, g in group.items():
        if g:
            by_group[g].append(path)
    pairs = [(a, b) for members in by_group.values() for i, a in enumerate(members) for b in members[i + 1 :]]
    true_pairs = sum(origin[a] == origin[b] for a, b in pairs)
    families: dict[int, list[str]] = defaultdict(list)
    for path, k in origin.items():
        families[k].append(path)
    copies = [(p, k) for k, members in families.items() for p in members if len(members) > 1]
    found = sum(bool(group[p]) and all(group[q] == group[p] for q in families[k]) for p, k in copies)
    flags = table["flags"].astype(str)
    leaks = table[table["path"].str.startswith("test/") & table["path"].map(lambda p: len(families[origin[p]]) > 1)]
    return {
        "files": len(table),
        "files_flagged_near_duplicate": int(flags.str.contains("near_duplicate").sum()),
        "files_in_a_group": int((table["dup_group"] != "").sum()),
        "same_group_pairs": len(pairs),
        "precision": round(true_pairs / len(pairs), 4) if pairs else None,
        "recall": round(found / len(copies), 4) if copies else None,
        "test_copies_flagged_as_leak": f"{int(leaks['flags'].str.contains('train_test_leak').sum())}/{len(leaks)}",
        "duplicate_search": table.attrs.get("duplicates"),
    }


def _items(table, root: Path) -> list[Item]:
    return [
        Item(r.path, root / r.path, r.sha256, r.phash, unpack_hashes(r.crops), r.width * r.height, r.bytes)
        for r in table.itertuples()
        if r.phash
    ]


def _scale(n: int, workers: int) -> tuple[dict, list[Item], dict[str, int]]:
    src, origin = _corpus(f"dedup-scale-{n}", copies_corpus, n=-(-n // 7), seed=7)
    result, seconds = _prepared(src, workers)
    items = _items(result.table, result.out)
    start = time.perf_counter()
    full = np.array([int(it.phash, 16) for it in items], dtype=np.uint64)
    crops = [(k, h) for k, it in enumerate(items) for h in it.crops]
    pairs = radius_pairs(full, 7, np.array([h for _, h in crops], dtype=np.uint64), np.array([k for k, _ in crops]))
    search_s = time.perf_counter() - start
    start = time.perf_counter()
    thumbs = [thumbnail(it.file) for it in items]
    thumbs_s = time.perf_counter() - start
    cached = dict(zip([it.file for it in items], thumbs))
    start = time.perf_counter()
    found = find_duplicates(items, load_many=lambda paths: [cached[p] for p in paths])
    dedup_s = time.perf_counter() - start
    figures = {
        "images": result.n_train + result.n_test,
        "prepare_end_to_end_s": round(seconds, 1),
        "prepare_images_per_s": round((result.n_train + result.n_test) / seconds, 1),
        "workers": workers,
        "candidate_search_s": round(search_s, 2),
        "candidate_pairs": len(pairs.i),
        "thumbnails_single_process_s": round(thumbs_s, 1),
        "thumbnail_ms_per_image": round(1000 * thumbs_s / len(items), 2),
        "star_building_and_pixel_checks_s": round(dedup_s, 1),
        "pairs_checked": found.summary.candidates,
        "pixel_check_ms_per_pair": round(1000 * max(0.0, dedup_s - search_s) / max(1, found.summary.candidates), 2),
        "accuracy": _score(result.table, {k: v for k, v in origin.items()}),
    }
    return figures, items, origin


def _hash_scale(items: list[Item], origin: dict[str, int], n: int, radius: int = 7) -> dict:
    rng = np.random.default_rng(0)
    replicas = -(-n // len(items))
    fam = np.array([origin[it.path] for it in items])
    full0 = np.array([int(it.phash, 16) for it in items], dtype=np.uint64)
    crops0 = np.array([it.crops for it in items], dtype=np.uint64)
    fulls, crops = [], []
    for _ in range(replicas):
        masks = rng.integers(0, 2**63, size=fam.max() + 1, dtype=np.uint64) * np.uint64(2) + rng.integers(
            0, 2, size=fam.max() + 1, dtype=np.uint64
        )
        fulls.append(full0 ^ masks[fam])
        crops.append(crops0 ^ masks[fam][:, None])
    full = np.concatenate(fulls)[:n]
    crop = np.concatenate(crops)[:n]
    owners = np.repeat(np.arange(len(full)), crop.shape[1])
    start = time.perf_counter()
    pairs = radius_pairs(full, radius, crop.ravel(), owners)
    seconds = time.perf_counter() - start
    return {"hashes": len(full), "queries_per_image": 1 + crop.shape[1], "radius": radius,
            "candidate_search_s": round(seconds, 1), "candidate_pairs": len(pairs.i)}  # fmt: skip


def _items_from_prepared(n: int) -> tuple[list[Item], dict[str, int]]:
    """The scale set's items from an earlier run's manifest and analysis cache (for ``--hash-only``)."""
    import json

    from imgclf.data.manifest import read_manifest

    out = DATA / f"dedup-scale-{n}-prepared"
    facts = json.loads((out / ".imgclf-work" / "analysis.json").read_text())["facts"]
    table = read_manifest(out)
    table["crops"] = [facts[s]["crops"] for s in table["sha256"]]
    items = _items(table, out)
    return items, {it.path: int(_ORIGIN.search(it.path.rsplit("/", 1)[-1]).group(1)) for it in items}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lookalike", type=int, default=500)
    parser.add_argument("--originals", type=int, default=200)
    parser.add_argument("--scale", type=int, default=10_000)
    parser.add_argument("--hash-scale", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--hash-only", type=int, nargs="*", metavar="RADIUS",
                        help="only the candidate search on --hash-scale hashes, at these radii, from an earlier run's 10k set")  # fmt: skip
    args = parser.parse_args()
    if args.hash_only:
        items, origin = _items_from_prepared(args.scale)
        report(
            "dedup candidate search",
            {
                "machine": machine(),
                **{f"radius_{r}": _hash_scale(items, origin, args.hash_scale, r) for r in args.hash_only},
            },
            args.json_out,
        )
        return

    results: dict = {"machine": machine()}
    src, origin = _corpus(f"dedup-lookalike-{args.lookalike}", lookalike_corpus, n=args.lookalike)
    result, seconds = _prepared(src, args.workers)
    results["a_lookalike"] = {**_score(result.table, origin), "prepare_s": round(seconds, 1)}
    src, origin = _corpus(f"dedup-copies-{args.originals}", copies_corpus, n=args.originals)
    result, seconds = _prepared(src, args.workers)
    results["b_copies"] = {**_score(result.table, origin), "prepare_s": round(seconds, 1)}
    if args.scale:
        results["scale"], items, origin = _scale(args.scale, args.workers)
        if args.hash_scale:
            results["hash_scale"] = _hash_scale(items, origin, args.hash_scale)
    report("dedup", results, args.json_out)


if __name__ == "__main__":
    main()
