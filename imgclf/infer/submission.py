"""Competition submission files: the format comes from ``sample_submission.csv`` when there is one.

Two shapes of sample are recognised:

- *label*: an id column and one category column (``Id,Category``, ``image_id,label``), filled with
  class names, or class indices when the sample's categories are integers and the class names are not;
  for a multilabel run the column holds space-separated tags (``image_name,tags``: Planet), the labels whose
  probability reaches the run's threshold (0.5, or the tuned per-label thresholds of ``decisions.json``); for
  a regression run it holds the predicted value (``Id,Pawpularity``), an integer grade when the run's metric is
  ``qwk`` (cut at the run's cut-points);
- *wide*: an id column and one probability column per class (log-loss competitions), filled with
  calibrated probabilities in the sample's column order; for a multilabel run one probability per label
  (``StudyInstanceUID,ETT - Abnormal,...``: RANZCR, Plant Pathology 2020).

Sample ids are matched to image files before any inference runs: by relative path or file name
(``0000.jpg``), by stem (``0000``) or, for integer ids, by number (``7`` for ``0007.png``).

Example::

    fmt = read_format(Path("data/cars/sample_submission.csv"), classes)
    paths = match_sample_ids(fmt, test_paths, Path("data/cars/test"))   # sample order, fails fast
    write_submission(Path("submission.csv"), list(fmt.ids), probs, classes, fmt)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
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
    category: str = "name"  # "index" (position in classes.json), "name", "probs" (a wide sample), "tags", "values"
    ids: tuple[str, ...] | None = None  # the sample's row order, when given
    prob_columns: tuple[str, ...] = ()  # a wide sample's class columns, in its order

    @property
    def describe(self) -> str:
        if self.category == "probs":
            return f"{self.id_column} + {len(self.prob_columns)} probability columns"
        if self.category in ("tags", "values"):
            return f"{self.id_column},{self.category_column} ({'space-separated tags' if self.category == 'tags' else 'values'})"
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


def read_format(
    sample: Path | None,
    classes: list[str],
    category: str = "auto",
    max_rows: int | None = None,
    task: str = "multiclass",
) -> SubmissionFormat:
    """Column names, id order and category form from the sample.

    With no sample, categories are class names (``category="index"`` asks for indices). With
    ``category="auto"``: integers in the sample's category column mean class indices, unless the
    class names are themselves integers. A sample with more than two columns must be wide: its
    columns after the id are exactly the run's classes. A sample with no rows is an error.

    ``max_rows`` (the number of images there are: every id needs its own) bounds the work before
    anything is read: a file larger than that many rows can be is refused from its size alone, and
    at most ``max_rows + 1`` rows are parsed.
    """
    if sample is None:
        if task != "multiclass":
            return SubmissionFormat(
                category_column=classes[0] if task == "regression" else "tags", category=_TASK_CATEGORY[task]
            )
        return SubmissionFormat(category="index" if category == "index" else "name")
    if max_rows is not None:
        _check_size(sample, max_rows, len(classes))
    try:
        frame = pd.read_csv(sample, dtype=str, keep_default_na=False, nrows=None if max_rows is None else max_rows + 1)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {sample}: {str(exc).splitlines()[0] if str(exc) else 'empty file'}") from None
    if len(frame.columns) < 2:
        raise DataError(
            f"{sample} needs an id column and a category column (found: {', '.join(map(str, frame.columns))[:120]})"
        )
    if frame.empty:
        raise DataError(f"{sample} has a header but no rows: a sample submission lists one id per test image")
    if max_rows is not None and len(frame) > max_rows:
        raise DataError(
            f"{sample} lists more ids than the {max_rows} image(s) given: every id needs an image of its own"
        )
    id_col = frame.columns[0]
    ids = tuple(frame[id_col])
    if len(frame.columns) > 2:
        return SubmissionFormat(id_col, "", "probs", ids, _wide_columns(sample, frame, classes))
    cat_col = frame.columns[1]
    if task != "multiclass":
        _check_task_column(sample, frame[cat_col], classes, task)
        return SubmissionFormat(id_col, cat_col, _TASK_CATEGORY[task], ids)
    if category == "auto":
        sample_ints = all(_is_int(v) for v in frame[cat_col] if v.strip())
        names_ints = all(c.isdigit() for c in classes)
        category = "index" if sample_ints and not names_ints else "name"
    return SubmissionFormat(id_col, cat_col, category, ids)


_TASK_CATEGORY = {"multilabel": "tags", "regression": "values"}


def _check_task_column(sample: Path, cells: pd.Series, classes: list[str], task: str) -> None:
    """A multilabel sample's tags must be labels the run knows; a regression sample's values must be numbers."""
    if task == "regression":
        bad = next((v for v in cells if v.strip() and not _is_number(v)), None)
        if bad is not None:
            raise DataError(
                f"{sample} column {cells.name!r} holds {_short(bad)}, not a number: this run predicts a value per image"
            )
        return
    known = set(classes)
    unknown = sorted({t for v in cells for t in v.split()} - known)
    if unknown:
        raise DataError(
            f"{sample} holds tag(s) the training set never had: {', '.join(_short(t) for t in unknown[:3])}"
            f" (the run knows {len(classes)}: {', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''})"
        )


# What one sample row may take: an id (a relative path) and one value per class column, generously.
_ROW_BYTES = 1024
_VALUE_BYTES = 32
_SLACK_BYTES = 1 << 20


def _check_size(sample: Path, max_rows: int, n_classes: int) -> None:
    """Refuse, from its size alone, a sample larger than ``max_rows`` rows can be (a 2 GB file, or
    millions of rows, for a folder of a few thousand images): reading it would take minutes."""
    try:
        size = sample.stat().st_size
    except OSError as exc:
        raise DataError(f"cannot read {sample}: {exc.strerror or exc}") from None
    cap = _SLACK_BYTES + (max_rows + 1) * (_ROW_BYTES + _VALUE_BYTES * max(n_classes, 1))
    if size > cap:
        raise DataError(
            f"{sample} is {size / 1e6:,.1f} MB, more than a sample for {max_rows} image(s) can be "
            f"({cap / 1e6:,.1f} MB at most): is it the sample submission of this test set?"
        )


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
    are an error, as is an id with no file. Linear in ids + images, the error included.
    """
    if fmt.ids is None:
        return list(paths)
    ids = [i.strip() for i in fmt.ids]
    keys = [_keys(path, images_dir) for path in paths]
    for how in ("path", "name", "stem", "number"):
        table: dict[str, list[Path]] = defaultdict(list)
        for path, key in zip(paths, keys):
            found = _number(key["stem"]) if how == "number" else key[how]
            if found is not None:
                table[found].append(path)
        wanted = [(_number(i) or i) if how == "number" else i for i in ids]
        if all(w in table for w in wanted):
            return _unique(ids, wanted, table, how)
    raise _no_image_error(ids, paths, keys)


def _number(key: str) -> str | None:
    """``key`` as a number without zero-padding (``"0007"`` -> ``"7"``), or None when it is not one."""
    return str(int(key)) if key.isascii() and key.isdigit() and len(key) <= 40 else None


def _short(text: str, limit: int = 40) -> str:
    """``repr(text)``, cut: an error line names an id, however long the sample made it."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _no_image_error(ids: list[str], paths: list[Path], keys: list[dict[str, str]]) -> DataError:
    """The error for ids with no image: how many, and three examples (sets built once: 2,000 ids against
    2,000 images took 77 s when each id rebuilt the set of file names)."""
    have = {how: {key[how] for key in keys} for how in ("path", "name", "stem")}
    best = max(have, key=lambda how: sum(i in have[how] for i in ids))
    missing = [i for i in ids if i not in have[best]]
    examples = ", ".join(_short(i) for i in missing[:3])
    file_example = f"; e.g. file {_short(paths[0].name)}" if paths else ""
    return DataError(
        f"sample_submission lists {len(missing)} id(s) with no image among the {len(paths)} given, e.g. {examples} "
        f"(ids are matched by file name, stem or number{file_example})"
    )


def _unique(ids: list[str], wanted: list[str], table: dict[str, list[Path]], how: str) -> list[Path]:
    for original, key in zip(ids, wanted):
        if len(table[key]) > 1:
            files = ", ".join(p.name for p in table[key][:3])
            raise DataError(
                f"sample_submission id {_short(original)} matches {len(table[key])} images by {how} ({files}); keep one of them"
            )
    seen: dict[str, str] = {}
    for original, key in zip(ids, wanted):
        if key in seen:
            raise DataError(f"sample_submission lists one image twice: ids {_short(seen[key])} and {_short(original)}")
        seen[key] = original
    return [table[key][0] for key in wanted]


def write_submission(
    path: Path,
    ids: list[str],
    probs: np.ndarray,
    classes: list[str],
    fmt: SubmissionFormat,
    decide: Callable[[np.ndarray], np.ndarray] | None = None,
) -> pd.DataFrame:
    """Write one row per id (``probs`` rows align with ``ids``) in the format of ``fmt``. ``decide`` turns a
    multilabel run's probabilities into 0/1 rows (its thresholds), or a regression run's values into what is
    submitted (grades, for ``qwk``); without it, 0.5 and the values themselves."""
    probs = np.asarray(probs)
    if fmt.category in ("tags", "values"):
        decided = decide(probs) if decide is not None else (probs >= 0.5 if fmt.category == "tags" else probs[:, 0])
        if fmt.category == "tags":
            values = [" ".join(c for c, on in zip(classes, row) if on) for row in np.asarray(decided)]
        else:
            values = np.asarray(decided).ravel().tolist()
        frame = pd.DataFrame({fmt.id_column: ids, fmt.category_column: values})
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")
        return frame
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


def write_probabilities(
    path: Path, ids: list[str], probs: np.ndarray, classes: list[str], id_column: str = "Id"
) -> None:
    frame = pd.DataFrame(probs, columns=classes)
    frame.insert(0, id_column, ids)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f")
