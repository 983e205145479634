"""A run folder is untrusted input: what a folder from someone else can and cannot decide.

Each case: one line and exit 2 (no traceback), or the correct result; and no file outside the output changes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import TINY, cli, one_epoch_run
from imgclf.config import load_config
from imgclf.experiments.oof import read_run_oof, write_oof


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[Path, Path]:
    return one_epoch_run(tmp_path_factory.mktemp("foreign"))


@pytest.fixture
def work(tmp_path, pristine) -> dict[str, Path]:
    """A copy of the dataset and of a finished run in ``tmp_path`` (the run's run.json names the copy)."""
    dataset, run = pristine
    shutil.copytree(dataset, tmp_path / "data")
    shutil.copytree(run, tmp_path / "run")
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    (tmp_path / "run" / "run.json").write_text(json.dumps({**info, "dataset": str(tmp_path / "data")}))
    return {"root": tmp_path, "data": tmp_path / "data", "run": tmp_path / "run"}


def snapshot(root: Path, *outputs: Path) -> dict[str, str]:
    """Every file under ``root`` except the outputs, with a digest of its bytes."""
    skip = [o.resolve() for o in outputs]
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink() and not any(s == p.resolve() or s in p.resolve().parents for s in skip)
    }


def one_line_exit_2(code: int, out: str, err: str, names: str | None = None) -> str:
    assert code == 2, err[-1500:]
    assert "Traceback" not in err + out
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    if names:
        assert names in errors[0], errors[0]
    return errors[0]


def set_config(run: Path, **values) -> None:
    """Change ``section.key`` values (``tracking__uri=...``) in the run's config.yaml."""
    tree = yaml.safe_load((run / "config.yaml").read_text())
    for dotted, value in values.items():
        section, key = dotted.split("__")
        tree[section][key] = value
    (run / "config.yaml").write_text(yaml.safe_dump(tree))


def predict(run: Path, work: dict[str, Path], capsys) -> tuple[int, str, str]:
    return cli(["predict", run, work["data"] / "test", "--out", work["root"] / "sub.csv"], capsys)


# -- 1. credentials: where tracking data goes is the user's --------------------------------------------------


def test_resume_sends_nothing_to_a_tracking_uri_in_the_runs_config(work, capsys, monkeypatch):
    import urllib.request

    import imgclf.tracking.session as tracking

    run = work["run"]
    set_config(run, tracking__enabled=True, tracking__uri="http://their-server.invalid:5000")
    (run / "summary.json").unlink()  # an interrupted run: resume continues it
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "my-secret")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    contacted: list[str] = []

    def refuse(uri: str):
        contacted.append(uri)
        raise ConnectionError("no store in this test")

    def no_network(request, *args, **kwargs):
        raise AssertionError(f"a request was attempted: {getattr(request, 'full_url', request)}")

    monkeypatch.setattr(tracking, "connect_store", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    before = snapshot(work["root"], run)
    code, out, err = cli(["train", "--resume", run], capsys)
    assert code == 0, err[-1500:]
    assert contacted and not any("their-server" in uri for uri in contacted)
    assert contacted[0] == f"sqlite:///{work['root'].resolve() / 'mlflow.db'}"  # the user's default store
    assert "ignoring tracking.uri=http://their-server.invalid:5000" in out + err
    assert snapshot(work["root"], run) == before


def test_resume_uses_a_tracking_uri_only_when_the_user_gives_it_again(work, monkeypatch):
    from imgclf.api import resumed_config
    from imgclf.tracking.session import resolve_tracking_uri

    run = work["run"]
    set_config(run, tracking__uri="http://their-server.invalid")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg, _, _ = resumed_config(run, None)
    assert cfg.tracking.uri is None
    cfg, _, _ = resumed_config(run, None, ["tracking.uri=http://their-server.invalid"])
    assert cfg.tracking.uri == "http://their-server.invalid"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mine.invalid")
    cfg, _, _ = resumed_config(run, None)
    assert resolve_tracking_uri(run, None, cfg.tracking.uri) == "http://mine.invalid"


def test_a_cv_fold_resumed_from_its_own_config_tracks_where_the_user_says(work):
    from imgclf.experiments.cv import train_runs

    out = work["root"] / "cv"
    fold = out / "fold_1"
    shutil.copytree(work["run"], fold)
    (fold / "summary.json").unlink()
    set_config(fold, tracking__uri="http://their-server.invalid", data__cache_dir=str(work["root"] / "elsewhere"))
    user = load_config(None, [*TINY, "tracking.uri=sqlite:///mine.db"])
    seen = []
    train_runs(user, work["data"], out, 1, lambda cfg, *args: seen.append(cfg) or {})
    assert seen[0].tracking.uri == "sqlite:///mine.db" and seen[0].data.cache_dir is None


# -- 2. where files are written is the user's ---------------------------------------------------------------


def test_resume_creates_no_folder_at_a_cache_dir_the_runs_config_names(work, capsys):
    run, elsewhere = work["run"], work["root"] / "elsewhere" / "cache"
    set_config(run, data__cache=True, data__cache_dir=str(elsewhere))
    (run / "summary.json").unlink()
    before = snapshot(work["root"], run, work["data"] / ".imgclf-cache")
    code, _, err = cli(["train", "--resume", run], capsys)
    assert code == 0, err[-1500:]
    assert not (work["root"] / "elsewhere").exists()
    assert snapshot(work["root"], run, work["data"] / ".imgclf-cache") == before


# -- 3. paths a folder names stay inside it ------------------------------------------------------------------


def _budget_manifest(run: Path, member: str) -> None:
    (run / "ensemble.json").write_text(
        json.dumps({"members": [{"path": ".", "weight": 0.5}, {"path": member, "weight": 0.5}]})
    )


@pytest.mark.parametrize("member", ["../../elsewhere/run", "ABSOLUTE"])
def test_predict_refuses_a_budget_run_whose_member_lies_outside_it(work, capsys, member):
    elsewhere = work["root"] / "elsewhere" / "run"
    shutil.copytree(work["run"], elsewhere)
    _budget_manifest(work["run"], str(elsewhere) if member == "ABSOLUTE" else member)
    before = snapshot(work["root"], work["root"] / "sub.csv")
    one_line_exit_2(*predict(work["run"], work, capsys), names="outside")
    assert snapshot(work["root"], work["root"] / "sub.csv") == before


def test_evaluate_refuses_a_members_symlink_out_of_the_run(work, capsys):
    elsewhere = work["root"] / "elsewhere"
    shutil.copytree(work["run"], elsewhere / "2")
    (work["run"] / "members").symlink_to(elsewhere, target_is_directory=True)
    _budget_manifest(work["run"], "members/2")
    before = snapshot(work["root"], work["root"] / "eval")
    one_line_exit_2(*cli(["evaluate", work["run"], "--out", work["root"] / "eval"], capsys), names="outside")
    assert snapshot(work["root"], work["root"] / "eval") == before


def test_a_budget_run_whose_members_lie_inside_it_still_predicts(work, capsys):
    shutil.copytree(work["run"], work["root"] / "copy")
    (work["run"] / "members").mkdir()
    shutil.move(work["root"] / "copy", work["run"] / "members" / "2")
    _budget_manifest(work["run"], "members/2")
    code, _, err = predict(work["run"], work, capsys)
    assert code == 0, err[-1500:]


def make_cv(root: Path, run: Path, **spec) -> Path:
    """A finished CV folder of two folds (copies of ``run``), its oof.csv from the run's validation predictions."""
    cv = root / "cv"
    for k in (1, 2):
        shutil.copytree(run, cv / f"fold_{k}")
    (cv / "cv.json").write_text(
        json.dumps({"folds": 2, "seed": 0, "dataset": "", "fold_dirs": ["fold_1", "fold_2"], **spec})
    )
    oof = read_run_oof(run)
    oof.folds = pd.Series(range(len(oof.paths))).mod(2).add(1).to_numpy()
    write_oof(cv / "oof.csv", oof)
    (cv / "classes.json").write_text(json.dumps(oof.classes))
    return cv


@pytest.mark.parametrize("fold_dir", ["../elsewhere", "ABSOLUTE"])
def test_predict_refuses_a_cv_folder_whose_cv_json_lists_folds_outside_it(work, capsys, fold_dir):
    shutil.copytree(work["run"], work["root"] / "elsewhere")
    name = str(work["root"] / "elsewhere") if fold_dir == "ABSOLUTE" else fold_dir
    cv = make_cv(work["root"], work["run"], fold_dirs=["fold_1", name])
    before = snapshot(work["root"], work["root"] / "sub.csv")
    one_line_exit_2(*predict(cv, work, capsys), names="outside")
    assert snapshot(work["root"], work["root"] / "sub.csv") == before


# -- 4. validated readers: one line naming the file -----------------------------------------------------------

ENSEMBLE_JSON = {
    "nan_weight": '{"members": [{"path": ".", "weight": NaN}]}',
    "inf_weight": '{"members": [{"path": ".", "weight": Infinity}]}',
    "negative_weight": '{"members": [{"path": ".", "weight": -1}]}',
    "string_weight": '{"members": [{"path": ".", "weight": "0.5"}]}',
    "top_level_list": '[{"path": ".", "weight": 1}]',
    "missing_path": '{"members": [{"weight": 1}]}',
    "members_not_a_list": '{"members": {"path": ".", "weight": 1}}',
    "invalid_json": '{"members": [',
}


@pytest.mark.parametrize("case", sorted(ENSEMBLE_JSON))
def test_predict_on_a_damaged_ensemble_json_exits_2_naming_it(work, capsys, case):
    (work["run"] / "ensemble.json").write_text(ENSEMBLE_JSON[case])
    before = snapshot(work["root"], work["root"] / "sub.csv")
    one_line_exit_2(*predict(work["run"], work, capsys), names="ensemble.json")
    assert snapshot(work["root"], work["root"] / "sub.csv") == before


CV_JSON = {
    "invalid_json": '{"folds": 2',
    "a_list": "[2]",
    "no_folds_key": '{"fold_dirs": ["fold_1", "fold_2"]}',
    "folds_a_string": '{"folds": "2"}',
}


def _started_cv(work: dict[str, Path]) -> Path:
    """A CV folder as ``imgclf cv`` leaves it once the folds are planned: cv.json, cv_config.yaml, folds.csv."""
    from imgclf.config import save_config
    from imgclf.data.samples import load_training_set
    from imgclf.experiments.cv import plan_folds

    cv = work["root"] / "cv"
    cv.mkdir()
    save_config(load_config(None, TINY), cv / "cv_config.yaml")
    plan_folds(load_training_set(work["data"]), cv, 2, 42)
    (cv / "cv.json").write_text(
        json.dumps({"folds": 2, "seed": 42, "dataset": str(work["data"]), "fold_dirs": ["fold_1", "fold_2"]})
    )
    (cv / ".imgclf.lock").write_text("cv")  # imgclf cv holds its folder under this lock, naming itself
    return cv


def _cv_resume(work: dict[str, Path], capsys) -> tuple[int, str, str]:
    return cli(
        ["cv", work["data"], "--folds", "2", "--out", work["root"] / "cv", *sum((["--set", s] for s in TINY), [])],
        capsys,
    )


@pytest.mark.parametrize("case", sorted(CV_JSON))
def test_cv_resume_with_a_damaged_cv_json_exits_2_naming_it(work, capsys, case):
    cv = _started_cv(work)
    (cv / "cv.json").write_text(CV_JSON[case])
    before = snapshot(work["root"])
    one_line_exit_2(*_cv_resume(work, capsys), names="cv.json")
    assert snapshot(work["root"]) == before


FOLDS_CSV = {
    "garbage_bytes": b"\xff\xfe\x00garbage\x81\x00\n\x00\x00",
    "no_fold_column": b"path,label\ntrain/alpha/alpha_000.png,alpha\n",
    "non_integer_fold": b"path,label,group,fold\ntrain/alpha/alpha_000.png,alpha,g,one\n",
    "blank_fold": b"path,label,group,fold\ntrain/alpha/alpha_000.png,alpha,g,\n",
    "empty_file": b"",
    "header_only": b"path,label,group,fold\n",
}


@pytest.mark.parametrize("case", sorted(FOLDS_CSV))
def test_cv_resume_with_a_damaged_folds_csv_exits_2_naming_it(work, capsys, case):
    cv = _started_cv(work)
    (cv / "folds.csv").write_bytes(FOLDS_CSV[case])
    before = snapshot(work["root"])
    one_line_exit_2(*_cv_resume(work, capsys), names="folds.csv")
    assert snapshot(work["root"]) == before


def _damage_oof(cv: Path, case: str) -> None:
    frame = pd.read_csv(cv / "oof.csv", dtype=str, keep_default_na=False)
    prob = next(c for c in frame.columns if c.startswith("prob_"))
    if case == "unknown_label":
        frame.loc[0, "label"] = "zebra"
    elif case == "non_numeric_probability":
        frame.loc[0, prob] = "lots"
    elif case == "nan_probability":
        frame.loc[0, prob] = "nan"
    elif case == "no_path_column":
        frame = frame.drop(columns="path")
    elif case == "non_integer_fold":
        frame.loc[0, "fold"] = "1.5"
    frame.to_csv(cv / "oof.csv", index=False)


@pytest.mark.parametrize(
    "case", ["unknown_label", "non_numeric_probability", "nan_probability", "no_path_column", "non_integer_fold"]
)
def test_ensemble_of_a_member_with_damaged_predictions_exits_2_naming_the_file(work, capsys, case):
    cv = make_cv(work["root"], work["run"])
    _damage_oof(cv, case)
    out = work["root"] / "ens"
    before = snapshot(work["root"], out)
    one_line_exit_2(*cli(["ensemble", cv, work["run"], "--out", out], capsys), names="oof.csv")
    assert snapshot(work["root"], out) == before


def test_ensemble_of_a_run_with_an_unknown_label_in_its_validation_predictions_exits_2(work, capsys):
    path = work["run"] / "val_predictions.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[0, "label"] = "zebra"
    frame.to_csv(path, index=False)
    shutil.copytree(work["run"], work["root"] / "other")
    out = work["root"] / "ens"
    before = snapshot(work["root"], out)
    one_line_exit_2(
        *cli(["ensemble", work["run"], work["root"] / "other", "--out", out], capsys), names="val_predictions.csv"
    )
    assert snapshot(work["root"], out) == before


def test_predict_refuses_a_class_list_with_duplicates(work, capsys):
    classes = json.loads((work["run"] / "classes.json").read_text())
    (work["run"] / "classes.json").write_text(json.dumps([classes[0], *classes[1:-1], classes[0]]))
    before = snapshot(work["root"], work["root"] / "sub.csv")
    one_line_exit_2(*predict(work["run"], work, capsys), names="classes.json")
    assert snapshot(work["root"], work["root"] / "sub.csv") == before


def test_predict_refuses_an_unknown_interpolation_in_preprocessing_json(work, capsys):
    path = work["run"] / "preprocessing.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "interpolation": "warp9"}))
    before = snapshot(work["root"], work["root"] / "sub.csv")
    one_line_exit_2(*predict(work["run"], work, capsys), names="preprocessing.json")
    assert snapshot(work["root"], work["root"] / "sub.csv") == before


def test_train_refuses_a_split_file_with_split_values_other_than_train_and_val(work, capsys):
    split = work["root"] / "split.csv"
    frame = pd.read_csv(work["run"] / "split.csv", dtype=str)
    frame.loc[0, "split"] = "test"
    frame.to_csv(split, index=False)
    before = snapshot(work["root"], work["root"] / "new")
    one_line_exit_2(
        *cli(
            [
                "train",
                work["data"],
                "--out",
                work["root"] / "new",
                "--set",
                f"data.split_file={split}",
                *sum((["--set", s] for s in TINY), []),
            ],
            capsys,
        ),
        names="split.csv",
    )
    assert snapshot(work["root"], work["root"] / "new") == before


@pytest.mark.parametrize("content", ["[]", '{"epochs": 1}', '{"dataset": 5}', '{"dataset": ""}', "{"])
def test_evaluate_of_a_run_with_a_damaged_run_json_exits_2_naming_it(work, capsys, content):
    (work["run"] / "run.json").write_text(content)
    before = snapshot(work["root"], work["root"] / "eval")
    one_line_exit_2(*cli(["evaluate", work["run"], "--out", work["root"] / "eval"], capsys), names="run.json")
    assert snapshot(work["root"], work["root"] / "eval") == before


@pytest.mark.parametrize("where", ["../../elsewhere.png", "/etc/hostname"])
def test_evaluate_of_a_run_whose_split_csv_points_outside_the_dataset_exits_2(work, capsys, where):
    path = work["run"] / "split.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[frame.index[frame["split"] == "val"][0], "path"] = where
    frame.to_csv(path, index=False)
    before = snapshot(work["root"], work["root"] / "eval")
    one_line_exit_2(*cli(["evaluate", work["run"], "--out", work["root"] / "eval"], capsys), names="split.csv")
    assert snapshot(work["root"], work["root"] / "eval") == before
