"""A plain ``pip install imgclf`` (no extras): train, evaluate and predict work; what needs an extra says which, in one
line with exit code 2; ``cv`` runs without cleanlab and says it skipped the label issues."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import TINY

# Runs the CLI in a fresh interpreter in which the optional packages cannot be imported, as after `pip install imgclf`.
# (A spec is still found, as torch looks modules up by name; only importing one fails.)
WITHOUT_EXTRAS = """
import importlib.abc, importlib.machinery, sys
HIDDEN = {"onnx", "onnxruntime", "cleanlab", "psycopg2"}
class Missing(importlib.abc.Loader):
    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r}", name=spec.name)
    def exec_module(self, module):
        pass
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            return importlib.machinery.ModuleSpec(name, Missing())
        return None
sys.meta_path.insert(0, Hide())
from imgclf.cli.main import run
sys.argv = ["imgclf", *sys.argv[1:]]
run()
"""


def _imgclf(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS, *map(str, args)], capture_output=True, text=True, timeout=600
    )


def _sets() -> list[str]:
    return [a for o in TINY for a in ("--set", o)]


def test_train_evaluate_and_predict_need_no_extra(tiny_dataset: Path, tmp_path: Path):
    run = tmp_path / "run"
    trained = _imgclf("train", tiny_dataset, "--out", run, *_sets())
    assert trained.returncode == 0, trained.stderr
    assert _imgclf("evaluate", run).returncode == 0
    out = tmp_path / "submission.csv"
    predicted = _imgclf(
        "predict", run, tiny_dataset / "test", "--out", out, "--sample", tiny_dataset / "sample_submission.csv"
    )
    assert predicted.returncode == 0, predicted.stderr
    assert len(out.read_text().splitlines()) == 6  # the header and the 5 test images
    exported = _imgclf("export", run, "--format", "onnx")
    assert exported.returncode == 2 and "Traceback" not in exported.stderr
    assert exported.stderr.strip().splitlines()[-1].endswith("pip install 'imgclf[onnx]'")
    assert _imgclf("export", run, "--format", "torchscript").returncode == 0  # needs no extra


def test_cv_runs_without_cleanlab_and_says_it_skipped_the_label_issues(tiny_dataset: Path, tmp_path: Path):
    out = tmp_path / "cv"
    done = _imgclf("cv", tiny_dataset, "--folds", "2", "--out", out, *_sets(), "--set", "train.epochs=1")
    assert done.returncode == 0, done.stderr
    assert "label-issue candidates: not looked for (no cleanlab)" in done.stdout
    assert "pip install 'imgclf[cleanlab]'" in done.stdout + done.stderr
    assert not (out / "label_issues.csv").exists() and (out / "oof.csv").is_file()
