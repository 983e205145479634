"""From per-file facts to the manifest table: copy and look-alike flags with their evidence, the policy's verdicts, the guard.

Only identical files and verified copies become ``exact_duplicate``, ``near_duplicate``, ``label_conflict``
or ``train_test_leak``; a look-alike (a different capture) is flagged ``lookalike`` and nothing else.

Example::

    table = assess(records, CleanOptions(), root=Path("data/cars"))
    check_max_drop(table, 0.05, CleanOptions().policy)   # DataError when a class would lose more than 5 %
    table.attrs["duplicates"]              # what the duplicate search did (for the report)
    table.attrs["pairs"]                   # one dict per flagged pair: flag, path, other, evidence
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
#: The strongest relation a file has, in the manifest's ``similarity`` column.
SIMILARITY = {
    "exact_duplicate": "identical",
    "near_duplicate": "copy",
    "label_conflict": "copy",
    "train_test_leak": "copy",
    "lookalike": "look-alike",
}


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


def _group_flags(rows: list[dict], members: list[int], dups: Duplicates, pairs: list[dict]) -> dict[int, Flags]:
    out: dict[int, Flags] = {i: [] for i in members}

    def flag(i: int, name: str, j: int, text: str) -> None:
        evidence = dups.evidence(i, j)
        out[i].append((name, f"{text}: {evidence}"))
        pairs.append({"flag": name, "path": rows[i]["path"], "other": rows[j]["path"], "evidence": evidence})

    for i in members:
        me = rows[i]
        others = [j for j in members if j != i]
        same = [j for j in others if rows[j]["split"] == me["split"] and rows[j]["label"] == me["label"]]
        exact = [j for j in same if dups.node[j] == dups.node[i]]
        if exact:
            flag(i, "exact_duplicate", exact[0], f"exact duplicate of {rows[exact[0]]['path']}")
        near = [j for j in same if dups.node[j] != dups.node[i]]
        if near:
            j = _closest(i, near, dups)
            flag(i, "near_duplicate", j, f"near duplicate of {rows[j]['path']}")
        if me["split"] == "train":
            conflict = [j for j in others if rows[j]["split"] == "train" and rows[j]["label"] != me["label"]]
            if conflict:
                j = _closest(i, conflict, dups)
                flag(i, "label_conflict", j, f"label conflict with {rows[j]['path']} labelled {rows[j]['label']!r}")
        leak = [j for j in others if rows[j]["split"] != me["split"]]
        if leak:
            j = _closest(i, leak, dups)
            flag(i, "train_test_leak", j, f"train/test leak with {rows[j]['path']}")
    return out


def _lookalike_flags(
    rows: list[dict], dups: Duplicates, flags: list[Flags], pairs: list[dict]
) -> list[tuple[int, int]]:
    """``lookalike`` on both sides of each rejected candidate pair (the first partner named; a count of the rest)."""
    partners: dict[int, list[tuple[int, str]]] = {}
    found = []
    for i, j, evidence in dups.lookalikes:
        partners.setdefault(i, []).append((j, evidence))
        partners.setdefault(j, []).append((i, evidence))
        found.append((i, j))
        pairs.append({"flag": "lookalike", "path": rows[i]["path"], "other": rows[j]["path"], "evidence": evidence})
    for i, mine in partners.items():
        j, evidence = mine[0]
        where = f"{rows[j]['split']}" + (f", labelled {rows[j]['label']!r}" if rows[j]["label"] else "")
        more = f" (and {len(mine) - 1} more)" if len(mine) > 1 else ""
        flags[i].append(("lookalike", f"look-alike of {rows[j]['path']} ({where}){more}: {evidence}"))
    return found


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
        bound=options.max_residual,
        radius=options.hash_radius,
        load_many=load_many,
        progress=progress,
    )
    groups = dups.group_members()
    pairs: list[dict] = []
    for members in groups:
        for i, extra in _group_flags(rows, members, dups, pairs).items():
            flags[i].extend(extra)
    lookalike_pairs = _lookalike_flags(rows, dups, flags, pairs)
    copy_group = {i: n for n, members in enumerate(groups) for i in members}
    if options.group_lookalikes:
        groups = _merged(groups, lookalike_pairs)
    group_of = {i: f"g{n + 1:04d}" for n, members in enumerate(groups) for i in members}

    policy = options.policy
    keep = []
    for row, fl in zip(rows, flags):
        relevant = [f for f, _ in fl if row["split"] == "train" or f in UNREADABLE_FLAGS]
        keep.append(not any(policy[f] == "drop" for f in relevant))
    _keep_one(rows, flags, dups, copy_group, keep, policy)

    table = pd.DataFrame.from_records(rows)
    table["flags"] = [";".join(f for f, _ in fl) for fl in flags]
    table["reasons"] = ["; ".join(r for _, r in fl) for fl in flags]
    table["dup_group"] = [group_of.get(i, "") for i in range(len(rows))]
    table["similarity"] = [next((SIMILARITY[f] for f in SIMILARITY if any(f == g for g, _ in fl)), "") for fl in flags]
    table["keep"] = keep
    table["proposed"] = proposed(table, policy)
    table.attrs["duplicates"] = {
        **asdict(dups.summary),
        "lookalike_pairs": len(lookalike_pairs),
        "grouped_lookalikes": options.group_lookalikes,
    }
    table.attrs["pairs"] = pairs
    return table


def _merged(groups: list[list[int]], links: list[tuple[int, int]]) -> list[list[int]]:
    """Connected components of the copy groups joined by look-alike links (``group_lookalikes``)."""
    parent: dict[int, int] = {}

    def root(i: int) -> int:
        while parent.setdefault(i, i) != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for members in groups:
        for i in members[1:]:
            parent[root(i)] = root(members[0])
    for i, j in links:
        parent[root(i)] = root(j)
    by_root: dict[int, list[int]] = {}
    for i in sorted(parent):
        by_root.setdefault(root(i), []).append(i)
    return sorted(m for m in by_root.values() if len(m) > 1)


def _keep_one(
    rows: list[dict],
    flags: list[Flags],
    dups: Duplicates,
    copy_group: dict[int, int],
    keep: list[bool],
    policy: dict[str, Policy],
) -> None:
    """Per class in train: one file per set of identical bytes (exact_duplicate), then one per group (near_duplicate)."""
    for flag, key in (("exact_duplicate", lambda i: dups.node[i]), ("near_duplicate", lambda i: copy_group[i])):
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


def check_max_drop(table: pd.DataFrame, max_drop: float, policy: dict[str, Policy], by_class: bool = True) -> None:
    """Raise a one-line DataError when the policy removes more than ``max_drop`` of any class's readable images
    (``by_class=False``, label sets or values: of all the training images).

    Unreadable files are not counted: no setting can train on them.
    """
    if max_drop >= 1.0:
        return
    train = table[table["split"] == "train"]
    groups = train.groupby("label", sort=True) if by_class else [(None, train)]
    for label, rows in groups:
        flags = rows["flags"].astype(str).str.split(";")
        unreadable = flags.map(lambda fl: bool(set(fl) & set(UNREADABLE_FLAGS)))
        removed = rows[~rows["keep"] & ~unreadable]
        total = int((~unreadable).sum())
        if total and len(removed) > max_drop * total:
            causes = [f for fl in removed["flags"].str.split(";") for f in fl if policy.get(f) in ("drop", "keep_one")]
            flag = max(sorted(set(causes)), key=causes.count) if causes else "policy"
            raise DataError(
                f"prepare would remove {len(removed)} of {total} training images "
                f"{'of the dataset' if label is None else f'of class {label!r}'} "
                f"({len(removed) / total:.0%}; most by {flag}={policy.get(flag, 'drop')}), over --max-drop {max_drop:g}: "
                "nothing written; change the policy or pass --max-drop 1.0 to accept"
            )
