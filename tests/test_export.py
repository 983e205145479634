"""Export: ONNX and TorchScript files agree with the PyTorch model; predict --engine onnx writes the same submission."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from conftest import TINY, make_dataset
from imgclf.cli.main import run
from imgclf.config import load_config
from imgclf.infer.export import OnnxEngine, export_run, load_torchscript
from imgclf.run.load import load_run
from imgclf.training.loop import fit

PROB_TOLERANCE = 1e-4  # max abs difference of softmax probabilities, the bar


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("export")
    data = make_dataset(root / "data", test=6)
    cfg = load_config(overrides=[*TINY, "train.epochs=1", "model.head=mlp_bn"])
    fit(cfg, data, root / "run")
    return root / "run", data


def _random_batch(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _torch_probs(run_dir: Path, batch: torch.Tensor) -> np.ndarray:
    model = load_run(run_dir).model
    with torch.no_grad():
        return torch.softmax(model(batch), 1).numpy()


def test_onnx_probabilities_match_pytorch_at_any_batch_size(trained, tmp_path):
    run_dir, _ = trained
    info = export_run(run_dir, "onnx", tmp_path / "m.onnx")
    engine = OnnxEngine(Path(info["out"]))
    for n in (1, 5):  # exported at batch 2: the batch axis must be dynamic
        batch = _random_batch(n, seed=n)
        onnx_probs = torch.softmax(engine(batch), 1).numpy()
        assert onnx_probs.shape == (n, 3)
        assert np.abs(onnx_probs - _torch_probs(run_dir, batch)).max() < PROB_TOLERANCE


def test_onnx_file_carries_classes_and_preprocessing_and_passes_the_checker(trained, tmp_path):
    run_dir, _ = trained
    out = Path(export_run(run_dir, "onnx", tmp_path / "m.onnx")["out"])
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["imgclf.classes"]) == json.loads((run_dir / "classes.json").read_text())
    assert json.loads(meta["imgclf.preprocessing"]) == json.loads((run_dir / "preprocessing.json").read_text())
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_torchscript_export_loads_and_agrees(trained, tmp_path):
    run_dir, _ = trained
    out = Path(export_run(run_dir, "torchscript", tmp_path / "m.pt")["out"])
    module, meta = load_torchscript(out)
    assert json.loads(meta["imgclf.classes"]) == ["alpha", "beta", "gamma"]
    batch = _random_batch(3)
    with torch.no_grad():
        probs = torch.softmax(module(batch), 1).numpy()
    assert np.abs(probs - _torch_probs(run_dir, batch)).max() < PROB_TOLERANCE


def test_predict_with_onnx_engine_writes_the_same_submission_as_torch(trained, tmp_path):
    run_dir, data = trained
    codes = {}
    for engine in ("torch", "onnx"):
        try:
            run(
                [
                    "predict",
                    str(run_dir),
                    str(data / "test"),
                    "--out",
                    str(tmp_path / f"{engine}.csv"),
                    "--engine",
                    engine,
                ]
            )
        except SystemExit as exc:
            codes[engine] = exc.code
    assert not any(codes.values()), codes
    assert (run_dir / "export" / "model.onnx").is_file()  # exported on first use
    torch_sub = (tmp_path / "torch.csv").read_text()
    assert torch_sub.count("\n") == 7  # header + 6 test images
    assert (tmp_path / "onnx.csv").read_text() == torch_sub


def test_export_with_unknown_format_is_a_one_line_error(trained, capsys):
    run_dir, _ = trained
    with pytest.raises(SystemExit) as exc:
        run(["export", str(run_dir), "--format", "tflite"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown export format 'tflite'" in err and "Traceback" not in err


def test_export_of_a_missing_run_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        run(["export", str(tmp_path / "nope")])
    assert exc.value.code == 2
    assert "run directory not found" in capsys.readouterr().err
