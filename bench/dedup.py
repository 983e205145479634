"""Copy-vs-look-alike benchmark: copy precision and recall, look-alikes called copies, and time, this code against a baseline.

* ``real``: look-alikes from real pixels (``bench/dedup_corpus.py:real_corpus``: neighbouring tiles of
  scikit-image's photographs and textures, frames of a slowly moving crop, Fashion-MNIST ankle boots),
  with a copy of each kind planted for every third one, its setting stepped over the kind's whole range
  (JPEG q30-95, scale 0.4-1, crops of 0-10 % per side drawn independently, brightness x0.85-1.15, PNG);
  one copy of every fourth planted original sits in ``test/`` (a leak).
* ``scale``: ``--scale`` images of ``copies_corpus``'s kind (synthetic photos with six copies each)
  through ``prepare`` end to end (cold), for the time.

Every corpus is prepared by this checkout and, with ``--baseline DIR`` (another checkout, e.g.
``git worktree add /tmp/dedup-baseline main``), by that code in a subprocess, in the same run.
Corpora are generated once under ``bench/.data/`` (git-ignored). Usage::

    PYTHONPATH=$PWD .venv/bin/python bench/dedup.py --baseline /tmp/dedup-baseline --json-out bench/results/dedup.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, machine, report
from dedup_corpus import RANGE_KINDS, copies_corpus, real_corpus

_ORIGIN = re.compile(r"(?:la|p)(\d+)")
_KIND = re.compile(r"_([a-z0-9]+)\.(?:jpg|png)$")


def _corpus(name: str) -> Path:
    root = DATA / name
    if not (root / ".complete").is_file():
        shutil.rmtree(root, ignore_errors=True)
        if name == "dedup-real":
            real_corpus(root)
        else:
            n = int(name.rsplit("-", 1)[1])
            copies_corpus(root, n=-(-n // 7), seed=7)
        (root / ".complete").touch()
    return root


def measure(name: str, workers: int) -> dict:
    """``prepare`` one corpus with whatever ``imgclf`` this interpreter imports; the figures of :func:`score`."""
    from imgclf.data.prepare import PrepareOptions, prepare

    src = _corpus(name)
    with tempfile.TemporaryDirectory(dir=DATA) as tmp:
        start = time.perf_counter()
        result = prepare(src, Path(tmp) / "out", PrepareOptions(workers=workers, max_drop=1.0))
        seconds = time.perf_counter() - start
    return {**score(result.table), "prepare_s": round(seconds, 1), "images": len(result.table)}


def score(table) -> dict:
    """Copy recall (per kind) and precision, look-alike originals grouped with another origin, what is proposed."""
    origin = {p: int(_ORIGIN.search(p.rsplit("/", 1)[-1]).group(1)) for p in table["path"]}
    group = dict(zip(table["path"], table["dup_group"]))
    flags = dict(zip(table["path"], table["flags"].astype(str)))
    families: dict[int, list[str]] = defaultdict(list)
    members: dict[str, list[str]] = defaultdict(list)
    for path, k in origin.items():
        families[k].append(path)
        if group[path]:
            members[group[path]].append(path)
    originals = [p for p in origin if not _KIND.search(p)]
    copies = [p for p in origin if _KIND.search(p)]
    found = {p for p in copies if group[p] and group[p] == group[families[origin[p]][0]]}
    pairs = [(a, b) for m in members.values() for i, a in enumerate(m) for b in m[i + 1 :]]
    false_pairs = [(a, b) for a, b in pairs if origin[a] != origin[b]]
    merged = {p for p in originals if group[p] and any(origin[q] != origin[p] for q in members[group[p]])}
    of_kind = {kind: [p for p in copies if p.endswith((f"_{kind}.jpg", f"_{kind}.png"))] for kind in _kinds(copies)}
    by_kind = {kind: f"{sum(p in found for p in paths)}/{len(paths)}" for kind, paths in of_kind.items()}
    leaks = [p for p in copies if p.startswith("test/")]
    proposed = (
        table["proposed"]
        if "proposed" in table.columns
        else table["flags"].astype(str).str.contains("label_conflict|train_test_leak")
    )
    return {
        "originals": len(originals), "planted_copies": len(copies),
        "copies_found": f"{len(found)}/{len(copies)}", "recall": round(len(found) / len(copies), 4) if copies else None,
        "recall_by_kind": by_kind,
        "precision": round(1 - len(false_pairs) / len(pairs), 4) if pairs else None,
        "lookalike_originals_called_copies": f"{len(merged)}/{len(originals)}",
        "lookalike_share_called_copies": round(len(merged) / len(originals), 4),
        "files_flagged_near_duplicate": sum("near_duplicate" in f for f in flags.values()),
        "files_flagged_lookalike": sum("lookalike" in f for f in flags.values()),
        "label_conflict_files": sum("label_conflict" in f for f in flags.values()),
        "test_copies_flagged_as_leak": f"{sum('train_test_leak' in flags[p] for p in leaks)}/{len(leaks)}",
        "proposed_for_removal": int(proposed.sum()),
        "duplicate_search": {k: v for k, v in (table.attrs.get("duplicates") or {}).items() if not isinstance(v, float) or not math.isnan(v)},
    }  # fmt: skip


def _kinds(copies: list[str]) -> list[str]:
    return sorted({_KIND.search(p).group(1) for p in copies}, key=lambda k: (k not in RANGE_KINDS, k))


def _baseline(name: str, workers: int, checkout: Path) -> dict:
    """The same measurement by another checkout's code, in a subprocess (its imgclf on PYTHONPATH)."""
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    subprocess.run([sys.executable, __file__, "--measure", name, "--workers", str(workers), "--json-out", str(out)], env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=10_000, help="images in the timing corpus (0: skip it)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--baseline", type=Path, default=None, help="a checkout of the code to compare with (e.g. main)"
    )
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # one corpus, this interpreter's imgclf
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    if args.measure:
        args.json_out.write_text(json.dumps(measure(args.measure, args.workers)))
        return
    import imgclf

    results: dict = {
        "machine": machine(),
        "this": str(Path(imgclf.__file__).parents[1]),
        "baseline": str(args.baseline or ""),
    }
    for name in ["dedup-real"] + ([f"dedup-scale-{args.scale}"] if args.scale else []):
        _corpus(name)
        results[name] = {"this": measure(name, args.workers)}
        if args.baseline:
            results[name]["baseline"] = _baseline(name, args.workers, args.baseline)
    report("dedup", results, args.json_out)


if __name__ == "__main__":
    main()
