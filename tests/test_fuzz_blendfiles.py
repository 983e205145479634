"""Damaged files of CV folders, ensembles and runs, read by the readers that cv, ensemble, predict and evaluate use:
folds.csv, cv.json, oof.csv, ensemble.json, split.csv and preprocessing.json. Random bytes, truncations, a cell
or a JSON value replaced by something else: every outcome is a result or an ImgclfError (one line, exit 2) —
never another exception — and no file changes."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import TINY, make_dataset
from imgclf.config import load_config, save_config
from imgclf.data.samples import load_training_set
from imgclf.data.split import read_split, save_split
from imgclf.data.transforms import Preprocessing, eval_transform
from imgclf.errors import ImgclfError
from imgclf.experiments.cv import _check_resume, plan_folds
from imgclf.experiments.oof import Oof, read_oof, write_oof
from imgclf.infer.jobs import evaluation_images
from imgclf.infer.model_set import resolve_model_set
from imgclf.run.rundir import RunDir

FILES = ["cv/folds.csv", "cv/cv.json", "cv/oof.csv", "run/ensemble.json", "run/split.csv", "run/preprocessing.json"]
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 10**12)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A dataset, a CV folder (two folds) and a budget-style run with one member, all without training:
    the readers need the files, not the weights."""
    root = tmp_path_factory.mktemp("blendfiles")
    dataset = make_dataset(root / "data", per_class=4, test=0)
    samples = load_training_set(dataset)
    cfg = load_config(None, TINY)
    cv = root / "cv"
    cv.mkdir()
    save_config(cfg, cv / "cv_config.yaml")
    folds = plan_folds(samples, cv, 2, cfg.data.split_seed)
    (cv / "cv.json").write_text(
        json.dumps({"folds": 2, "seed": 42, "dataset": str(dataset), "fold_dirs": ["fold_1", "fold_2"]})
    )
    rel = [samples.rel(p) for p in samples.paths]
    probs = np.random.default_rng(0).dirichlet(np.ones(len(samples.classes)), len(rel))
    write_oof(cv / "oof.csv", Oof(rel, np.array(samples.labels), probs, samples.classes, folds))
    (cv / "classes.json").write_text(json.dumps(samples.classes))
    run = root / "run"
    for folder in (cv / "fold_1", cv / "fold_2", run, run / "members" / "2"):
        folder.mkdir(parents=True, exist_ok=True)
        save_config(cfg, RunDir(folder).config)
        RunDir(folder).summary.write_text("{}")
        RunDir(folder).classes.write_text(json.dumps(samples.classes))
    (run / "ensemble.json").write_text(
        json.dumps({"members": [{"path": ".", "weight": 0.5}, {"path": "members/2", "weight": 0.5}]})
    )
    save_split(run / "split.csv", rel, [samples.classes[i] for i in samples.labels], folds == 1)
    (run / "run.json").write_text(json.dumps({"dataset": str(dataset)}))
    (run / "preprocessing.json").write_text(
        json.dumps(Preprocessing(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)).to_dict())
    )
    return root


def _damage(path: Path, how: str, data: bytes, value, pick: int) -> None:
    original = path.read_bytes()
    if how == "truncate":
        path.write_bytes(original[: pick % max(1, len(original))])
    elif how == "flip":
        at = pick % max(1, len(original))
        path.write_bytes(original[:at] + data + original[at + len(data) :])
    elif how == "value" and path.suffix == ".json":
        path.write_text(json.dumps(_replace(json.loads(original), value, pick)))
    elif how == "value":  # a CSV cell
        lines = original.decode().splitlines()
        row = lines[pick % len(lines)].split(",")
        row[(pick // 7) % len(row)] = str(value).replace(",", ";").replace("\n", " ")
        lines[pick % len(lines)] = ",".join(row)
        path.write_text("\n".join(lines) + "\n")
    else:
        path.write_bytes(data)


def _replace(tree, value, pick: int):
    """``tree`` with one value (the ``pick``-th of a walk) or the whole of it replaced by ``value``."""
    if pick % 5 == 0 or not isinstance(tree, (dict, list)) or not tree:
        return value
    keys = list(tree) if isinstance(tree, dict) else list(range(len(tree)))
    key = keys[pick % len(keys)]
    copy = dict(tree) if isinstance(tree, dict) else list(tree)
    copy[key] = _replace(tree[key], value, pick // len(keys))
    return copy


def _read(root: Path, file: str) -> None:
    """What the commands do with the file, up to the point where they would load a model."""
    cv, run = root / "cv", root / "run"
    if file == "cv/folds.csv":
        plan_folds(load_training_set(root / "data"), cv, 2, 42)
    elif file == "cv/cv.json":
        _check_resume(load_config(None, TINY), cv, 2)
        resolve_model_set(cv)
    elif file == "cv/oof.csv":
        read_oof(cv)
    elif file == "run/ensemble.json":
        resolve_model_set(run).classes()
    elif file == "run/split.csv":
        read_split(run / "split.csv")
        evaluation_images(run, None, json.loads((run / "classes.json").read_text()))
    else:
        eval_transform(Preprocessing.from_dict(RunDir(run).read_preprocessing()))


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    file=st.sampled_from(FILES),
    how=st.sampled_from(["truncate", "empty", "flip", "garbage", "value", "value"]),
    data=st.binary(min_size=1, max_size=48),
    value=JSON_VALUES,
    pick=st.integers(0, 10**6),
)
def test_a_damaged_blend_file_is_read_or_refused_in_one_line(pristine, file, how, data, value, pick):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ("data", "cv", "run"):
            shutil.copytree(pristine / name, root / name, symlinks=True)
        run_json = root / "run" / "run.json"
        run_json.write_text(json.dumps({"dataset": str(root / "data")}))
        _damage(root / file, how, data, value, pick)
        before = _digests(root)
        try:
            _read(root, file)
        except ImgclfError as exc:
            assert exc.exit_code == 2
            assert "\n" not in str(exc) and len(str(exc)) < 400, str(exc)
        assert _digests(root) == before


@pytest.mark.parametrize("file", FILES)
def test_the_undamaged_files_read_without_error(pristine, tmp_path, file):
    for name in ("data", "cv", "run"):
        shutil.copytree(pristine / name, tmp_path / name, symlinks=True)
    (tmp_path / "run" / "run.json").write_text(json.dumps({"dataset": str(tmp_path / "data")}))
    _read(tmp_path, file)
