"""Validated readers of the files that say which runs a blend holds, and the rule for the paths they name.

``cv.json`` and ``folds.csv`` (a CV folder, :class:`~imgclf.run.rundir.BlendDir`) and ``ensemble.json`` (an
ensemble folder, or a ``train --budget`` run that trained several models). A folder may come from someone
else, so each file is data to check: a damaged one is one :class:`RunDirError` line naming it, and a fold or a
budget run's member must resolve (symlinks followed) inside the folder that names it.

Example::

    spec = read_cv_spec(BlendDir(Path("cv/lite0")))      # CvSpec(folds=5, fold_dirs=[...fold_1, ...])
    read_ensemble_spec(Path("ens/ensemble.json"))        # [("../cv/lite0", 0.7), ("../cv/lite1", 0.3)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgclf.errors import RunDirError
from imgclf.run.rundir import BlendDir, read_run_csv, read_run_json

MAX_FOLDS = 1000  # far above any CV anyone runs; a larger count is not a cv.json imgclf wrote


@dataclass(frozen=True)
class CvSpec:
    folds: int
    fold_dirs: tuple[Path, ...]  # each inside the CV folder


def inside(root: Path, name: Any, what: Path) -> Path:
    """``root / name`` when it resolves (symlinks followed) inside ``root``; else one line naming ``what``."""
    if not isinstance(name, str) or not name.strip() or "\0" in name:
        raise RunDirError(f"{what} names a member that is not a path: {str(name)[:60]!r}")
    path = root / name
    try:
        resolved, base = path.resolve(), root.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise RunDirError(f"{what} names {name[:80]!r}, which cannot be resolved ({type(exc).__name__})") from None
    if resolved != base and base not in resolved.parents:
        raise RunDirError(
            f"{what} names {name[:80]!r}, which lies outside {root}; a folder may only name what it holds"
        )
    return path


def read_cv_spec(blend: BlendDir) -> CvSpec:
    """cv.json: an object with ``folds`` (an integer, at least 2) and ``fold_dirs`` inside the CV folder."""
    path = blend.cv_spec
    data = read_run_json(path)
    if not isinstance(data, dict):
        raise RunDirError(f"{path} must hold a JSON object (folds, fold_dirs)")
    folds = data.get("folds")
    if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= MAX_FOLDS:
        raise RunDirError(
            f"{path} is not a valid CV file: folds must be an integer from 2 to {MAX_FOLDS}, not {str(folds)[:40]!r}"
        )
    names = data.get("fold_dirs", [f"fold_{k}" for k in range(1, folds + 1)])
    if not isinstance(names, list) or len(names) != folds:
        raise RunDirError(f"{path} is not a valid CV file: fold_dirs must list one folder per fold ({folds})")
    return CvSpec(folds, tuple(inside(blend.root, name, path) for name in names))


def read_folds(blend: BlendDir) -> dict[str, int]:
    """folds.csv as {relative image path: fold number (1..K)}."""
    path = blend.folds
    frame = read_run_csv(path, ("path", "fold"), dtype=str, keep_default_na=False)
    if frame.empty:
        raise RunDirError(f"{path} lists no image")
    numbers = frame["fold"].str.strip()
    bad = ~numbers.str.fullmatch(r"[0-9]{1,4}") | (numbers.str.len() == 0)
    if bad.any() or (numbers.astype(int) < 1).any():
        value = frame["fold"][bad].iloc[0] if bad.any() else "0"
        raise RunDirError(f"{path} is not a valid folds file: fold {value[:40]!r} is not a fold number (1, 2, ...)")
    if frame["path"].duplicated().any() or (frame["path"] == "").any():
        raise RunDirError(f"{path} is not a valid folds file: an image path is blank or listed twice")
    return dict(zip(frame["path"], numbers.astype(int)))


def read_ensemble_spec(path: Path) -> list[tuple[str, float]]:
    """ensemble.json's members as (path as written, weight): an object whose ``members`` is a list of
    ``{"path": str, "weight": finite number >= 0}``, at least one weight positive."""
    data = read_run_json(path)
    members = data.get("members") if isinstance(data, dict) else None
    if not isinstance(members, list) or not members:
        raise RunDirError(f'{path} must hold a JSON object whose "members" is a non-empty list')
    out = []
    for entry in members:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise RunDirError(
                f'{path} is not a valid ensemble file: each member needs a "path" (got {str(entry)[:60]})'
            )
        weight = entry.get("weight")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise RunDirError(
                f"{path} is not a valid ensemble file: weight {str(weight)[:40]!r} of {entry['path'][:60]!r} "
                "must be a finite number >= 0"
            )
        out.append((entry["path"], float(weight)))
    if not any(w > 0 for _, w in out):
        raise RunDirError(f"{path} has no member with a positive weight")
    return out
