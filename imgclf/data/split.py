"""Stratified, seeded, grouped train/validation split.

Grouped: every member of a duplicate group lands on the same side, so a near-copy of a
validation image can never sit in the training set and inflate validation accuracy.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import pandas as pd

from imgclf.errors import DataError
from imgclf.io import atomic_path

log = logging.getLogger("imgclf")


def stratified_group_split(
    labels: list[int], groups: list[str], val_fraction: float, seed: int, class_names: list[str] | None = None
) -> np.ndarray:
    """Return a boolean array, True where the sample goes to validation.

    Groups are assigned whole; per class (a group counts for its most common label) groups
    are shuffled with ``seed`` and taken until the class's validation share is reached.
    Every class with at least two groups gets at least one validation group; a class with a single
    image (or a single duplicate group) gets none, and a warning naming it (``class_names`` when given).

    >>> stratified_group_split([0, 0, 1, 1], ["a", "b", "c", "d"], 0.5, seed=0).sum()
    2
    """
    if val_fraction <= 0:
        return np.zeros(len(labels), dtype=bool)
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    by_class: dict[int, list[str]] = defaultdict(list)
    for g, idx in members.items():
        majority = np.bincount([labels[i] for i in idx]).argmax()
        by_class[int(majority)].append(g)
    rng = np.random.default_rng(seed)
    is_val = np.zeros(len(labels), dtype=bool)
    lonely = sorted(cls for cls, gs in by_class.items() if len(gs) == 1)
    if lonely and val_fraction > 0:
        names = [class_names[c] if class_names and c < len(class_names) else str(c) for c in lonely]
        log.warning(
            "%d class(es) have a single image (or duplicate group) and get no validation image: %s",
            len(lonely),
            ", ".join(names[:10]) + (", ..." if len(names) > 10 else ""),
        )
    for cls in sorted(by_class):
        class_groups = sorted(by_class[cls])
        rng.shuffle(class_groups)
        total = sum(len(members[g]) for g in class_groups)
        target = max(1, int(round(val_fraction * total))) if len(class_groups) > 1 else 0
        taken = 0
        for g in class_groups[:-1]:  # the last group always stays in training
            if taken >= target:
                break
            is_val[members[g]] = True
            taken += len(members[g])
    return is_val


def _group_matrix(targets: np.ndarray, groups: list[str]) -> tuple[list[list[int]], np.ndarray]:
    """The members of each group (first-seen order) and each group's label vector: the max over its members."""
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    rows = list(members.values())
    y = np.asarray(targets) > 0.5
    return rows, np.stack([y[idx].any(axis=0) for idx in rows]).astype(int)


def multilabel_group_split(targets: np.ndarray, groups: list[str], val_fraction: float, seed: int) -> np.ndarray:
    """True where the sample goes to validation: iterative stratification (iterstrat) over groups, each assigned
    whole, so every label's validation share is near ``val_fraction`` and no duplicate group straddles.

    >>> multilabel_group_split(np.eye(4)[[0, 0, 1, 1, 2, 2, 3, 3]], list("abcdefgh"), 0.5, seed=0).sum()
    4
    """
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    is_val = np.zeros(len(groups), dtype=bool)
    rows, y = _group_matrix(targets, groups)
    if val_fraction <= 0 or len(rows) < 2:
        return is_val
    n_val = min(len(rows) - 1, max(1, int(round(val_fraction * len(rows)))))
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=n_val, random_state=seed)
    _, val_groups = next(splitter.split(np.zeros(len(rows)), y))
    for g in val_groups:
        is_val[rows[g]] = True
    return is_val


def multilabel_group_folds(targets: np.ndarray, groups: list[str], k: int, seed: int) -> np.ndarray:
    """Fold index (0..k-1) per sample: iterstrat's multilabel stratified k-fold over groups, each assigned whole."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    rows, y = _group_matrix(targets, groups)
    if k < 2 or k > len(rows):
        raise DataError(f"{k} folds need between 2 and {len(rows)} (the number of image groups)")
    folds = np.full(len(groups), -1, dtype=np.int64)
    splitter = MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for fold, (_, held) in enumerate(splitter.split(np.zeros(len(rows)), y)):
        for g in held:
            folds[rows[g]] = fold
    return folds


def stratified_subset(labels: list[int], indices: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded, stratified fraction of ``indices`` (at least one per class)."""
    if fraction >= 1.0:
        return indices
    rng = np.random.default_rng(seed + 7919)
    chosen = []
    by_class: dict[int, list[int]] = defaultdict(list)
    for i in indices:
        by_class[labels[i]].append(int(i))
    for cls in sorted(by_class):
        items = np.array(by_class[cls])
        rng.shuffle(items)
        chosen.extend(items[: max(1, int(round(fraction * len(items))))].tolist())
    return np.array(sorted(chosen), dtype=int)


def save_split(path: Path, rel_paths: list[str], labels: list[str], is_val: np.ndarray) -> None:
    frame = pd.DataFrame({"path": rel_paths, "label": labels, "split": np.where(is_val, "val", "train")})
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


SPLITS = ("train", "val")


def read_split_frame(path: Path, columns: tuple[str, ...] = ("path", "split"), *, inside: bool = False):
    """A split.csv as a DataFrame of strings, checked: the ``columns`` and split values train or val; with
    ``inside`` (the split of a dataset folder, whose images all lie in it), image paths relative to the dataset
    that stay inside it (no absolute path, no ``..``). A CSV list may name images anywhere: so may its split."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"split file not found: {path}")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path} is not a readable split file ({str(exc).splitlines()[0][:120]})") from None
    if not set(columns) <= set(frame.columns):
        raise DataError(f"{path} is not a split file (needs columns {','.join(columns)})")
    other = frame.loc[~frame["split"].isin(SPLITS), "split"]
    if len(other):
        raise DataError(f"{path} has split value {other.iloc[0][:40]!r}; each image is train or val")
    outside = [p for p in frame["path"] if inside and not _stays_inside(p)]
    if outside:
        raise DataError(f"{path} names image {outside[0][:80]!r}, which is not a path inside the dataset")
    return frame


def _stays_inside(rel: str) -> bool:
    posix = PurePosixPath(rel.replace("\\", "/"))
    return (
        bool(rel.strip())
        and "\0" not in rel
        and not posix.is_absolute()
        and ".." not in posix.parts
        and not PureWindowsPath(rel).drive
    )


def read_split(path: Path) -> dict[str, str]:
    """A saved split.csv as {relative path: "train" | "val"}."""
    frame = read_split_frame(path)
    return dict(zip(frame["path"], frame["split"]))


def load_split(path: Path, rel_paths: list[str]) -> np.ndarray:
    """Re-apply a saved split.csv; every current image must be listed in it."""
    lookup = read_split(path)
    missing = [p for p in rel_paths if p not in lookup]
    if missing:
        raise DataError(f"split file {path} does not list {len(missing)} image(s) of this dataset, e.g. {missing[0]}")
    return np.array([lookup[p] == "val" for p in rel_paths], dtype=bool)
