"""From per-file facts to the manifest table: duplicate flags with their evidence, the policy's verdicts, the guard.

Example::

    table = assess(records, CleanOptions(), root=Path("data/cars"))
    check_max_drop(table, 0.05, CleanOptions().policy)   # DataError when a class would lose more than 5 %
    table.attrs["duplicates"]              # what the duplicate search did (for the report)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from imgclf.data.clean import (
    UNREADABLE_FLAGS,
    CleanOptions,
    FileAnalysis,
    Policy,
    file_flags,
)
from imgclf.data.duplicates import Duplicates, Item, find_duplicates
from imgclf.data.hashing import unpack_hashes
from imgclf.errors import DataError

Flags = list[tuple[str, str]]


def _items(rows: list[dict], flags: list[Flags], root: Path | None) -> list[Item]:
    items = []
    for k, (row, fl) in enumerate(zip(rows, flags)):
        names = {f for f, _ in fl}
        readable = not names & set(UNREADABLE_FLAGS)
        # Tiny images match identical files only: a hash of a 32x32 upsample carries too little detail.
        searchable = readable and "tiny" not in names and bool(row.get("phash"))
        file = Path(row["file"]) if row.get("file") else Path(root or ".") / row["path"]
        items.append(Item(
            path=row["path"], file=file,
            sha256=row["sha256"] if readable else f"unreadable-{k}",
            phash=row["phash"] if searchable else "",
            crops=unpack_hashes(row.get("crops", "")) if searchable else [],
            area=int(row["width"]) * int(row["height"]), bytes=int(row["bytes"]),
        ))  # fmt: skip
    return items


def _group_flags(rows: list[dict], members: list[int], dups: Duplicates) -> dict[int, Flags]:
    out: dict[int, Flags] = {i: [] for i in members}
    for i in members:
        me = rows[i]
        others = [j for j in members if j != i]
        same = [j for j in others if rows[j]["split"] == me["split"] and rows[j]["label"] == me["label"]]
        exact = [j for j in same if dups.node[j] == dups.node[i]]
        if exact:
            out[i].append(("exact_duplicate", f"exact duplicate of {rows[exact[0]]['path']}: identical file"))
        near = [j for j in same if dups.node[j] != dups.node[i]]
        if near:
            j = _closest(i, near, dups)
            out[i].append(("near_duplicate", f"near duplicate of {rows[j]['path']}: {dups.evidence(i, j)}"))
        if me["split"] == "train":
            conflict = [j for j in others if rows[j]["split"] == "train" and rows[j]["label"] != me["label"]]
            if conflict:
                j = _closest(i, conflict, dups)
                out[i].append(
                    (
                        "label_conflict",
                        f"label conflict with {rows[j]['path']} labelled {rows[j]['label']!r}: {dups.evidence(i, j)}",
                    )
                )
        leak = [j for j in others if rows[j]["split"] != me["split"]]
        if leak:
            j = _closest(i, leak, dups)
            out[i].append(("train_test_leak", f"train/test leak with {rows[j]['path']}: {dups.evidence(i, j)}"))
    return out


def _closest(i: int, candidates: list[int], dups: Duplicates) -> int:
    """Prefer the partner with direct evidence: identical file, then the star's representative."""
    rep = dups.rep.get(dups.node[i], dups.node[i])
    return min(
        candidates,
        key=lambda j: (
            dups.node[j] != dups.node[i],
            dups.node[j] != rep and dups.rep.get(dups.node[j]) != dups.node[i],
            j,
        ),
    )


def assess(
    records: list[dict],
    options: CleanOptions = CleanOptions(),
    root: Path | None = None,
    load_many: Callable[[list[Path]], list[np.ndarray]] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """One manifest row per record (path, label, split and the :class:`FileAnalysis` fields).

    Files are read (for the pixel check of near-copy candidates) from ``record["file"]`` or
    ``root / record["path"]``. Adds ``flags`` (';'-joined), ``reasons`` ('; '-joined), ``dup_group`` and
    ``keep`` and ``proposed`` (kept, but listed for review in blocklist.proposed.csv); ``table.attrs["duplicates"]`` holds the duplicate search's summary. Test rows are only ever
    dropped for unreadable data: a submission needs a prediction for every test image.
    """
    rows = sorted(records, key=lambda r: (r["split"], r["path"]))
    flags = [file_flags(FileAnalysis.from_dict(r), options, str(r["path"])) for r in rows]
    dups = find_duplicates(
        _items(rows, flags, root),
        threshold=options.min_similarity,
        radius=options.hash_radius,
        load_many=load_many,
        progress=progress,
    )
    groups = dups.group_members()
    group_of = {i: f"g{n + 1:04d}" for n, members in enumerate(groups) for i in members}
    for members in groups:
        for i, extra in _group_flags(rows, members, dups).items():
            flags[i].extend(extra)

    policy = options.policy
    keep = []
    for row, fl in zip(rows, flags):
        relevant = [f for f, _ in fl if row["split"] == "train" or f in UNREADABLE_FLAGS]
        keep.append(not any(policy[f] == "drop" for f in relevant))
    _keep_one(rows, flags, dups, group_of, keep, policy)

    table = pd.DataFrame.from_records(rows)
    table["flags"] = [";".join(f for f, _ in fl) for fl in flags]
    table["reasons"] = ["; ".join(r for _, r in fl) for fl in flags]
    table["dup_group"] = [group_of.get(i, "") for i in range(len(rows))]
    table["keep"] = keep
    table["proposed"] = proposed(table, policy)
    table.attrs["duplicates"] = asdict(dups.summary)
    return table


def _keep_one(
    rows: list[dict],
    flags: list[Flags],
    dups: Duplicates,
    group_of: dict[int, str],
    keep: list[bool],
    policy: dict[str, Policy],
) -> None:
    """Per class in train: one file per set of identical bytes (exact_duplicate), then one per group (near_duplicate)."""
    for flag, key in (("exact_duplicate", lambda i: dups.node[i]), ("near_duplicate", lambda i: group_of[i])):
        if policy[flag] != "keep_one":
            continue
        sets: dict[tuple, list[int]] = {}
        for i, fl in enumerate(flags):
            if rows[i]["split"] == "train" and any(f == flag for f, _ in fl):
                sets.setdefault((key(i), rows[i]["label"]), []).append(i)
        for same in sets.values():
            alive = [i for i in same if keep[i]] or same
            best = min(alive, key=lambda i: (-rows[i]["width"] * rows[i]["height"], -rows[i]["bytes"], rows[i]["path"]))
            for i in same:
                if i != best and keep[i]:
                    keep[i] = False
                    flags[i][:] = [
                        (f, f"{r} (kept {rows[best]['path']} instead)" if f == flag else r) for f, r in flags[i]
                    ]


def proposed(table: pd.DataFrame, policy: dict[str, Policy]) -> pd.Series:
    """Rows kept now but proposed for the blocklist: train files with a flag whose policy is ``propose``."""
    wanted = {f for f, a in policy.items() if a == "propose"}
    has = table["flags"].astype(str).map(lambda s: bool(wanted & set(s.split(";"))))
    return has & table["keep"] & (table["split"] == "train")


def check_max_drop(table: pd.DataFrame, max_drop: float, policy: dict[str, Policy]) -> None:
    """Raise a one-line DataError when the policy removes more than ``max_drop`` of any class's readable images.

    Unreadable files are not counted: no setting can train on them.
    """
    if max_drop >= 1.0:
        return
    train = table[table["split"] == "train"]
    for label, rows in train.groupby("label", sort=True):
        flags = rows["flags"].astype(str).str.split(";")
        unreadable = flags.map(lambda fl: bool(set(fl) & set(UNREADABLE_FLAGS)))
        removed = rows[~rows["keep"] & ~unreadable]
        total = int((~unreadable).sum())
        if total and len(removed) > max_drop * total:
            causes = [f for fl in removed["flags"].str.split(";") for f in fl if policy.get(f) in ("drop", "keep_one")]
            flag = max(sorted(set(causes)), key=causes.count) if causes else "policy"
            raise DataError(
                f"prepare would remove {len(removed)} of {total} training images of class {label!r} "
                f"({len(removed) / total:.0%}; most by {flag}={policy.get(flag, 'drop')}), over --max-drop {max_drop:g}: "
                "nothing written; change the policy or pass --max-drop 1.0 to accept"
            )
