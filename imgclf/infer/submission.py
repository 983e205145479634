"""Competition submission files: the format comes from ``sample_submission.csv`` when there is one.

Two shapes of sample are recognised:

- *label*: an id column and one category column (``Id,Category``, ``image_id,label``), filled with
  class names, or class indices when the sample's categories are integers and the class names are not;
- *wide*: an id column and one probability column per class (log-loss competitions), filled with
  calibrated probabilities in the sample's column order.

Sample ids are matched to image files before any inference runs: by relative path or file name
(``0000.jpg``), by stem (``0000``) or, for integer ids, by number (``7`` for ``0007.png``).

Example::

    fmt = read_format(Path("data/cars/sample_submission.csv"), classes)
    paths = match_sample_ids(fmt, test_paths, Path("data/cars/test"))   # sample order, fails fast
    write_submission(Path("submission.csv"), list(fmt.ids), probs, classes, fmt)
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from imgclf.errors import DataError
from imgclf.io import atomic_path


@dataclass(frozen=True)
class SubmissionFormat:
    id_column: str = "Id"
    category_column: str = "Category"
    category: str = "name"  # "index" (position in classes.json), "name", or "probs" (a wide sample)
    ids: tuple[str, ...] | None = None  # the sample's row order, when given
    prob_columns: tuple[str, ...] = ()  # a wide sample's class columns, in its order

    @property
    def describe(self) -> str:
        if self.category == "probs":
            return f"{self.id_column} + {len(self.prob_columns)} probability columns"
        return f"{self.id_column},{self.category_column} ({self.category})"


def find_sample_submission(images_dir: Path) -> Path | None:
    """``sample_submission.csv`` beside or inside the images folder (the usual competition layout)."""
    for candidate in (images_dir / "sample_submission.csv", images_dir.parent / "sample_submission.csv"):
        if candidate.is_file():
            return candidate
    return None


def _is_int(value: str) -> bool:
    return value.strip().lstrip("-").isdigit()


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def read_format(sample: Path | None, classes: list[str], category: str = "auto") -> SubmissionFormat:
    """Column names, id order and category form from the sample.

    With no sample, categories are class names (``category="index"`` asks for indices). With
    ``category="auto"``: integers in the sample's category column mean class indices, unless the
    class names are themselves integers. A sample with more than two columns must be wide: its
    columns after the id are exactly the run's classes.
    """
    if sample is None:
        return SubmissionFormat(category="index" if category == "index" else "name")
    try:
        frame = pd.read_csv(sample, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {sample}: {str(exc).splitlines()[0] if str(exc) else 'empty file'}") from None
    if len(frame.columns) < 2:
        raise DataError(f"{sample} needs an id column and a category column (found: {', '.join(frame.columns)})")
    id_col = frame.columns[0]
    ids = tuple(frame[id_col])
    if len(frame.columns) > 2:
        return SubmissionFormat(id_col, "", "probs", ids, _wide_columns(sample, frame, classes))
    cat_col = frame.columns[1]
    if category == "auto":
        sample_ints = all(_is_int(v) for v in frame[cat_col] if v.strip())
        names_ints = all(c.isdigit() for c in classes)
        category = "index" if sample_ints and not names_ints else "name"
    return SubmissionFormat(id_col, cat_col, category, ids)


def _wide_columns(sample: Path, frame: pd.DataFrame, classes: list[str]) -> tuple[str, ...]:
    columns = [str(c) for c in frame.columns[1:]]
    if set(columns) != set(classes) or len(columns) != len(classes):
        missing = sorted(set(classes) - set(columns))[:3]
        extra = sorted(set(columns) - set(classes))[:3]
        raise DataError(
            f"{sample} has {len(columns)} value columns but they are not the run's {len(classes)} classes "
            f"(not in the sample: {', '.join(missing) or '-'}; not a class: {', '.join(extra) or '-'})"
        )
    values = frame[columns].to_numpy().ravel()
    if not all(_is_number(v) for v in values if v.strip()):
        raise DataError(f"{sample} has one column per class but non-numeric values; a wide sample holds probabilities")
    return tuple(columns)


def _keys(path: Path, images_dir: Path) -> dict[str, str]:
    try:
        rel = path.relative_to(images_dir)
    except ValueError:
        rel = Path(path.name)
    return {"path": rel.as_posix(), "name": path.name, "stem": rel.with_suffix("").as_posix()}


def match_sample_ids(fmt: SubmissionFormat, paths: list[Path], images_dir: Path) -> list[Path]:
    """The image of each sample id, in the sample's order; raises before any inference is spent.

    One rule for the whole sample: ids are relative paths, file names, stems, or integers
    (zero-padding ignored). Two files that one id could mean (``0000.jpg`` and ``0000.png``)
    are an error, as is an id with no file.
    """
    if fmt.ids is None:
        return list(paths)
    ids = [i.strip() for i in fmt.ids]
    for how in ("path", "name", "stem", "number"):
        table: dict[str, list[Path]] = defaultdict(list)
        for path in paths:
            key = _keys(path, images_dir)["stem" if how == "number" else how]
            if how == "number":
                if not key.isdigit():
                    continue
                key = str(int(key))
            table[key].append(path)
        wanted = [str(int(i)) if how == "number" and i.isdigit() else i for i in ids]
        if all(w in table for w in wanted):
            return _unique(ids, wanted, table, how)
    best = max(("path", "name", "stem"), key=lambda h: sum(i in {_keys(p, images_dir)[h] for p in paths} for i in ids))
    have = {_keys(p, images_dir)[best] for p in paths}
    missing = [i for i in ids if i not in have]
    raise DataError(
        f"sample_submission lists {len(missing)} id(s) with no image among the {len(paths)} given, e.g. {missing[0]!r} "
        f"(ids are matched by file name, stem or number; e.g. file {paths[0].name!r})"
    )


def _unique(ids: list[str], wanted: list[str], table: dict[str, list[Path]], how: str) -> list[Path]:
    for original, key in zip(ids, wanted):
        if len(table[key]) > 1:
            files = ", ".join(p.name for p in table[key][:3])
            raise DataError(f"sample_submission id {original!r} matches {len(table[key])} images by {how} ({files}); keep one of them")
    seen: dict[str, str] = {}
    for original, key in zip(ids, wanted):
        if key in seen:
            raise DataError(f"sample_submission lists one image twice: ids {seen[key]!r} and {original!r}")
        seen[key] = original
    return [table[key][0] for key in wanted]


def write_submission(path: Path, ids: list[str], probs: np.ndarray, classes: list[str], fmt: SubmissionFormat) -> pd.DataFrame:
    """Write one row per id (``probs`` rows align with ``ids``) in the format of ``fmt``."""
    probs = np.asarray(probs)
    if fmt.category == "probs":
        index = {c: i for i, c in enumerate(classes)}
        frame = pd.DataFrame(probs[:, [index[c] for c in fmt.prob_columns]], columns=list(fmt.prob_columns))
        frame.insert(0, fmt.id_column, ids)
        float_format: str | None = "%.6f"
    else:
        pred = probs.argmax(1) if probs.ndim == 2 else probs
        values = [int(p) if fmt.category == "index" else classes[int(p)] for p in pred]
        frame = pd.DataFrame({fmt.id_column: ids, fmt.category_column: values})
        float_format = None
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format=float_format)
    return frame


def write_probabilities(path: Path, ids: list[str], probs: np.ndarray, classes: list[str], id_column: str = "Id") -> None:
    frame = pd.DataFrame(probs, columns=classes)
    frame.insert(0, id_column, ids)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f")
