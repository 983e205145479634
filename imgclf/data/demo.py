"""The offline demo: turn the embedded Fashion-MNIST subset into a competition-style folder.

``materialise_demo`` writes what a Kaggle competition hands out (labelled train folders,
unlabelled test images, a sample submission) plus the held-back answers, so that
``imgclf demo`` exercises the same ingest → train → predict path as a real competition;
``score_submission`` plays the leaderboard. The data's origin is in
``demo_data/PROVENANCE.md`` (rebuilt by ``scripts/build_demo_data.py``).

Example::

    paths = materialise_demo(Path("demo-data"), train_per_class=20)
    ...  # train on paths.dataset, predict into submission.csv
    score_submission(Path("submission.csv"), paths.answers)  # {"accuracy": 0.83, ...}
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from imgclf.errors import ConfigError, DataError

# Upstream label order 0..9, with "/" and " " replaced so each name is a safe folder name.
CLASS_NAMES: tuple[str, ...] = (
    "T-shirt_top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle_boot",
)
# The order a class folder listing gives, hence the order classes.json holds and the index
# a submission's Category refers to.
SORTED_CLASS_NAMES: tuple[str, ...] = tuple(sorted(CLASS_NAMES))

DEMO_NPZ = "fashion_mnist_subset.npz"
MARKER = ".complete"
# Bump when the layout written below changes, so old demo folders are rebuilt.
LAYOUT_VERSION = 1


@dataclass(frozen=True)
class DemoPaths:
    root: Path
    dataset: Path  # what a competition hands out: train/<class>/, test/, sample_submission.csv
    answers: Path  # held-back test labels: Id,Category,label

    @classmethod
    def for_root(cls, root: Path) -> DemoPaths:
        root = Path(root)
        return cls(root=root, dataset=root / "dataset", answers=root / "answers" / "test_labels.csv")


@dataclass(frozen=True)
class DemoArrays:
    x_train: np.ndarray  # (N, 28, 28) uint8
    y_train: np.ndarray  # (N,) upstream label 0..9, indexes CLASS_NAMES
    x_test: np.ndarray
    y_test: np.ndarray


def demo_npz_bytes() -> bytes:
    resource = resources.files("imgclf.data") / "demo_data" / DEMO_NPZ
    try:
        return resource.read_bytes()
    except FileNotFoundError:
        raise DataError(
            f"embedded demo data {DEMO_NPZ} is missing from the imgclf package; "
            "rebuild it with: python scripts/build_demo_data.py"
        ) from None


def load_demo_arrays(data: bytes | None = None) -> DemoArrays:
    """Decode the embedded subset (or ``data``, the bytes of such an .npz)."""
    with np.load(io.BytesIO(demo_npz_bytes() if data is None else data), allow_pickle=False) as npz:
        names = tuple(str(n) for n in npz["class_names"])
        if names != CLASS_NAMES:
            raise DataError(f"embedded demo data has classes {names}, expected {CLASS_NAMES}")
        return DemoArrays(npz["x_train"], npz["y_train"], npz["x_test"], npz["y_test"])


def materialise_demo(root: Path, train_per_class: int | None = None) -> DemoPaths:
    """Write the demo competition under ``root`` (or reuse it if already complete).

    ``train_per_class`` keeps only the first N training images of each class (all 300 when
    None); the 1,000 test images are always written. The folder is built beside ``root``
    and renamed into place, and ``root/.complete`` records the parameters: a complete
    folder with the same parameters is returned untouched, other parameters rebuild it.
    """
    paths = DemoPaths.for_root(root)
    data = demo_npz_bytes()
    params = {"layout": LAYOUT_VERSION, "source_sha256": hashlib.sha256(data).hexdigest()}
    if _read_marker(paths.root) == {**params, "train_per_class": train_per_class}:
        return paths  # fast path: skip decoding when the caller asks for exactly what is there

    arrays = load_demo_arrays(data)
    available = int(np.bincount(arrays.y_train).min())
    n = available if train_per_class is None else train_per_class
    if not 1 <= n <= available:
        raise ConfigError(f"train_per_class must be between 1 and {available}, got {train_per_class}")
    params["train_per_class"] = n
    if _read_marker(paths.root) == params:
        return paths

    _check_replaceable(paths.root)
    paths.root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{paths.root.name}.partial-", dir=paths.root.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the demo folder is ordinary data
    try:
        _write_competition(DemoPaths.for_root(staging), arrays, n)
        # The marker goes in last: a folder holding it is complete by construction.
        (staging / MARKER).write_text(json.dumps(params, sort_keys=True) + "\n")
        _swap_into_place(staging, paths.root, params)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # no-op once renamed into place
    return paths


def _read_marker(root: Path) -> dict | None:
    try:
        return json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _check_replaceable(root: Path) -> None:
    # Only ever delete a folder we wrote (it has a marker) or an empty one: the user may
    # have pointed --root at a folder holding something else.
    if not root.exists():
        return
    if not root.is_dir():
        raise DataError(f"demo folder {root} exists and is not a folder")
    if not (root / MARKER).is_file() and any(root.iterdir()):
        raise DataError(f"{root} exists and is not an imgclf demo folder; choose an empty or new folder")


def _swap_into_place(staging: Path, root: Path, params: dict) -> None:
    old = None
    if root.exists():
        old = root.with_name(f".{root.name}.old-{uuid.uuid4().hex[:8]}")
        root.rename(old)
    try:
        staging.rename(root)
    except OSError:
        # Another process finished the same folder first; theirs is as good as ours.
        if _read_marker(root) != params:
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_competition(paths: DemoPaths, arrays: DemoArrays, train_per_class: int) -> None:
    train_dir = paths.dataset / "train"
    taken = dict.fromkeys(range(len(CLASS_NAMES)), 0)
    for row, (image, label) in enumerate(zip(arrays.x_train, arrays.y_train.tolist())):
        if taken[label] >= train_per_class:
            continue
        taken[label] += 1
        folder = train_dir / CLASS_NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        _save_png(image, folder / f"train_{row + 1:05d}.png")

    test_dir = paths.dataset / "test"
    test_dir.mkdir(parents=True)
    ids = [f"test_{row + 1:05d}.png" for row in range(len(arrays.x_test))]
    for image, image_id in zip(arrays.x_test, ids):
        _save_png(image, test_dir / image_id)

    _write_csv(paths.dataset / "sample_submission.csv", ["Id", "Category"], [[i, 0] for i in ids])
    index_of = {name: i for i, name in enumerate(SORTED_CLASS_NAMES)}
    answers = []
    for image_id, label in zip(ids, arrays.y_test.tolist()):
        name = CLASS_NAMES[label]
        answers.append([image_id, index_of[name], name])
    paths.answers.parent.mkdir(parents=True)
    _write_csv(paths.answers, ["Id", "Category", "label"], answers)


def _save_png(image: np.ndarray, path: Path) -> None:
    # 8-bit greyscale ("L"); the loader converts to RGB like any other photo.
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(path, format="PNG")


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def score_submission(submission_csv: Path, answers_csv: Path) -> dict:
    """Accuracy of a submission against held-back answers, matched by ``Id``.

    ``Category`` may hold class indices (as the competition expects) or class names.

    >>> score_submission(Path("submission.csv"), paths.answers)  # doctest: +SKIP
    {'accuracy': 0.912, 'correct': 912, 'count': 1000}
    """
    answers = _read_rows(Path(answers_csv), ("Id", "Category", "label"))
    truth = {row["Id"]: int(row["Category"]) for row in answers}
    index_of = {row["label"]: int(row["Category"]) for row in answers}

    submission = _read_rows(Path(submission_csv), ("Id", "Category"))
    predicted: dict[str, int] = {}
    for row in submission:
        image_id = (row["Id"] or "").strip()  # None when a row is short
        if image_id in predicted:
            raise DataError(f"submission {submission_csv} lists id {image_id!r} twice")
        predicted[image_id] = _category_index(row["Category"], index_of, image_id)

    missing = sorted(set(truth) - set(predicted))
    unknown = sorted(set(predicted) - set(truth))
    if missing:
        raise DataError(
            f"submission {submission_csv} lacks {len(missing)} of {len(truth)} test ids "
            f"(first: {', '.join(missing[:3])})"
        )
    if unknown:
        raise DataError(
            f"submission {submission_csv} has {len(unknown)} ids not in the test set (first: {', '.join(unknown[:3])})"
        )
    correct = sum(predicted[i] == truth[i] for i in truth)
    return {"accuracy": correct / len(truth) if truth else 0.0, "correct": correct, "count": len(truth)}


def _category_index(value: str, index_of: dict[str, int], image_id: str) -> int:
    value = (value or "").strip()
    if value in index_of:
        return index_of[value]
    try:
        index = int(value)
    except ValueError:
        index = -1
    if not 0 <= index < len(index_of):
        raise DataError(
            f"submission Category {value!r} for {image_id} is neither a class index "
            f"0..{len(index_of) - 1} nor a class name"
        )
    return index


def _read_rows(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            absent = [c for c in required if c not in header]
            if absent:
                raise DataError(
                    f"{path} needs columns {', '.join(required)}; "
                    f"missing {', '.join(absent)} (has: {', '.join(header) or 'nothing'})"
                )
            return list(reader)
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path} is not a readable CSV file: {exc}") from None
