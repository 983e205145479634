"""Competition submission files: the format comes from ``sample_submission.csv`` when there is one."""

from __future__ import annotations

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
    category: str = "index"  # "index" (position in classes.json) or "name"
    ids: tuple[str, ...] | None = None  # the sample's row order, when given


def find_sample_submission(images_dir: Path) -> Path | None:
    """``sample_submission.csv`` beside or inside the images folder (the usual competition layout)."""
    for candidate in (images_dir / "sample_submission.csv", images_dir.parent / "sample_submission.csv"):
        if candidate.is_file():
            return candidate
    return None


def read_format(sample: Path | None, classes: list[str], category: str = "auto") -> SubmissionFormat:
    """Column names and id order from the sample; categories as indices when the sample's are integers.

    With ``category="auto"``: class names that are themselves integers are written as names;
    otherwise integers in the sample mean class indices (the car competition's ``Id,Category``).
    """
    if sample is None:
        return SubmissionFormat(category="name" if category == "name" else "index")
    try:
        frame = pd.read_csv(sample, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {sample}: {str(exc).splitlines()[0] if str(exc) else 'empty file'}") from None
    if len(frame.columns) < 2:
        raise DataError(f"{sample} needs an id column and a category column (found: {', '.join(frame.columns)})")
    id_col, cat_col = frame.columns[0], frame.columns[1]
    if category == "auto":
        sample_ints = all(v.strip().lstrip("-").isdigit() for v in frame[cat_col] if v.strip())
        names_ints = all(c.isdigit() for c in classes)
        category = "index" if sample_ints and not names_ints else "name"
    return SubmissionFormat(id_col, cat_col, category, tuple(frame[id_col]))


def write_submission(path: Path, ids: list[str], pred: np.ndarray, classes: list[str], fmt: SubmissionFormat) -> pd.DataFrame:
    """Write rows in the sample's order (every sample id must have a prediction)."""
    values = [int(p) if fmt.category == "index" else classes[int(p)] for p in pred]
    frame = pd.DataFrame({fmt.id_column: ids, fmt.category_column: values})
    if fmt.ids is not None:
        by_id = frame.set_index(fmt.id_column)
        missing = [i for i in fmt.ids if i not in by_id.index]
        if missing:
            raise DataError(
                f"sample_submission lists {len(missing)} id(s) with no image in the folder, e.g. {missing[0]!r}"
            )
        frame = by_id.loc[list(fmt.ids)].reset_index()
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return frame


def write_probabilities(path: Path, ids: list[str], probs: np.ndarray, classes: list[str], id_column: str = "Id") -> None:
    frame = pd.DataFrame(probs, columns=classes)
    frame.insert(0, id_column, ids)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f")
