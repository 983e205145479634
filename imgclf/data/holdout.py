"""``prepare --holdout F``: a labelled share of the training images set aside as a dataset folder of its own.

The held-out images go to ``<out>/holdout/train/<class>/`` instead of ``<out>/train/<class>/``, so no training
run sees them and ``imgclf evaluate RUN <out>/holdout`` scores any run on them. The share is stratified by
class and seeded; duplicate groups (identical files and verified near copies, the manifest's ``dup_group``)
are held out whole, and only groups whose every image is kept and not proposed for review are eligible, so
the holdout folder needs no blocklist. The manifest lists those rows with ``split`` ``holdout``.

Example::

    table, plan = hold_out(table, plan, fraction=0.2, seed=0)
    (table["split"] == "holdout").sum()   # about 20 % of the kept training images
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from imgclf.data.ingest import SourcePlan
from imgclf.data.split import stratified_group_split

HOLDOUT_DIR = "holdout"
HOLDOUT_SPLIT = "holdout"


def holdout_rows(table: pd.DataFrame, fraction: float, seed: int) -> pd.Series:
    """True for the training rows to hold out (see the module docstring)."""
    train = table[table["split"] == "train"]
    groups = [g if g else f"#{p}" for g, p in zip(train["dup_group"].astype(str), train["path"])]
    clean = train["keep"].astype(bool) & ~train.get("proposed", pd.Series(False, index=train.index)).astype(bool)
    eligible = {g for g, ok in zip(groups, clean) if ok} - {g for g, ok in zip(groups, clean) if not ok}
    rows = [i for i, g in enumerate(groups) if g in eligible]
    labels = train["label"].iloc[rows].tolist()
    names = sorted(set(labels))
    chosen = stratified_group_split(
        [names.index(lbl) for lbl in labels], [groups[i] for i in rows], fraction, seed, names
    )
    mask = pd.Series(False, index=table.index)
    mask.loc[train.index[np.array(rows, dtype=int)[chosen]]] = True
    return mask


def hold_out(table: pd.DataFrame, plan: SourcePlan, fraction: float, seed: int) -> tuple[pd.DataFrame, SourcePlan]:
    """The manifest table and the placement plan with the held-out rows moved under ``holdout/``."""
    mask = holdout_rows(table, fraction, seed)
    table = table.copy()
    moved = dict(zip(table.loc[mask, "path"], f"{HOLDOUT_DIR}/" + table.loc[mask, "path"]))
    table.loc[mask, "path"] = table.loc[mask, "path"].map(moved)
    table.loc[mask, "split"] = HOLDOUT_SPLIT
    train = [dataclasses.replace(f, rel=moved[f.rel]) if f.rel in moved else f for f in plan.train]
    return table, dataclasses.replace(plan, train=train)
