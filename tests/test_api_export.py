"""One run trained through the Python API, then used by the API, by plain timm and by the ONNX serving snippet."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch

from conftest import TINY, cli, make_dataset
from imgclf.errors import ConfigError

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    import imgclf

    root = tmp_path_factory.mktemp("api")
    data = make_dataset(root / "data", test=6)
    summary = imgclf.train(data, root / "run", overrides=[*TINY, "train.epochs=1"], progress=False)
    assert summary["epochs_run"] == 1 and summary["run_dir"] == str(root / "run")
    assert summary["report"] and Path(summary["report"]).is_file()  # the same report as the CLI writes
    return root / "run", data


def test_public_api_names():
    import imgclf

    assert re.fullmatch(r"\d+\.\d+\.\d+.*", imgclf.__version__)
    from imgclf import __version__, load_run, predict, train  # noqa: F401 — the notebook import line

    import imgclf.training.loop  # noqa: F401 — importing the subpackage must not shadow the function

    assert callable(imgclf.train)


def test_api_predict_writes_what_the_cli_writes(trained, tmp_path: Path, capsys):
    import imgclf

    run_dir, data = trained
    result = imgclf.predict(run_dir, data / "test", tmp_path / "api.csv", probs=tmp_path / "api-probs.csv", tta="none")
    assert result["images"] == 6 and result["format"] == "Id,Category (index)"
    code, _, err = cli(["predict", run_dir, data / "test", "--out", tmp_path / "cli.csv", "--tta", "none"], capsys)
    assert code == 0, err
    assert (tmp_path / "api.csv").read_text() == (tmp_path / "cli.csv").read_text()
    loaded = imgclf.load_run(run_dir)
    assert loaded.classes == ["alpha", "beta", "gamma"] and not loaded.model.training


class _Recorder:
    def __init__(self):
        self.totals, self.advances, self.stopped = [], [], 0

    def start(self, total):
        self.totals.append(total)

    def advance(self, images):
        self.advances.append(images)

    def stop(self):
        self.stopped += 1


@pytest.mark.parametrize("engine", ["torch", "onnx"])
@pytest.mark.parametrize("tta,total", [("none", 6), ("2", 12), ("adaptive", None)])
def test_predict_progress_counts_every_forward_pass(trained, tmp_path: Path, tta, total, engine):
    """predict's progress bar: told the passes to come (unknown for adaptive TTA), advanced by each batch's images,
    and its count ends at the passes the prediction reports, on both engines."""
    import imgclf

    run_dir, data = trained
    progress = _Recorder()
    result = imgclf.predict(
        run_dir, data / "test", tmp_path / "s.csv", tta=tta, batch_size=4, engine=engine, progress=progress
    )
    assert progress.totals == [total] and progress.stopped == 1
    assert sum(progress.advances) == result["forward_passes"] and max(progress.advances) <= 4
    if total is not None:
        assert result["forward_passes"] == total


def test_api_errors_are_imgclf_errors(trained, tmp_path: Path):
    import imgclf
    from imgclf.errors import DataError

    with pytest.raises(DataError, match="image file or folder not found"):
        imgclf.predict(trained[0], tmp_path / "nowhere", tmp_path / "x.csv")


def test_export_timm_loads_in_plain_timm_with_equal_logits(trained, tmp_path: Path, capsys):
    from imgclf.run.load import load_run

    run_dir, _ = trained
    out = tmp_path / "timm-export"
    code, _, err = cli(["export", run_dir, "--format", "timm", "--out", out], capsys)
    assert code == 0, err
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "config.json"}
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "test_efficientnet" and config["num_classes"] == 3
    assert config["label_names"] == ["alpha", "beta", "gamma"]
    pre = json.loads((run_dir / "preprocessing.json").read_text())
    assert list(config["pretrained_cfg"]["input_size"]) == [3, pre["image_size"], pre["image_size"]]
    assert list(config["pretrained_cfg"]["mean"]) == pytest.approx(pre["mean"])

    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()  # timm alone
    batch = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(batch), load_run(run_dir).model(batch), atol=1e-5, rtol=1e-5)
    assert model.pretrained_cfg["label_names"] == ["alpha", "beta", "gamma"]


def test_export_timm_refuses_mlp_heads_in_one_line():
    from imgclf.config import Config, load_config
    from imgclf.data.transforms import Preprocessing
    from imgclf.infer.export import timm_model
    from imgclf.run.load import LoadedRun
    from imgclf.models.backbones import create_model

    cfg: Config = load_config(None, [*TINY, "model.head=mlp_bn"])
    model, _ = create_model(cfg.model, 3)
    loaded = LoadedRun(None, cfg, ["a", "b", "c"], Preprocessing(32, (0.5,) * 3, (0.5,) * 3), model)
    with pytest.raises(
        ConfigError, match=r"only the linear head exports to plain timm \(this run has model.head=mlp_bn\)"
    ) as info:
        timm_model(loaded)
    assert "\n" not in str(info.value)


def _doc_snippet(path: Path) -> str:
    return re.search(r"```python\n(.*?)```", path.read_text(), re.S).group(1)


def test_onnx_serving_snippet_in_the_docs_reproduces_predict(trained, tmp_path: Path, capsys):
    run_dir, data = trained
    snippet = _doc_snippet(DOCS / "onnx-serving.md")
    assert len([line for line in snippet.splitlines() if line.strip()]) <= 16
    assert cli(["export", run_dir, "--format", "onnx"], capsys)[0] == 0
    code, _, err = cli(
        [
            "predict",
            run_dir,
            data / "test",
            "--out",
            tmp_path / "sub.csv",
            "--probs",
            tmp_path / "probs.csv",
            "--tta",
            "none",
            "--category",
            "name",
        ],
        capsys,
    )
    assert code == 0, err
    namespace: dict = {}
    exec(compile(snippet.replace("runs/lite0", str(run_dir)), "onnx-serving.md", "exec"), namespace)
    expected = pd.read_csv(tmp_path / "probs.csv")
    names, probs = namespace["predict"]([data / "test" / i for i in expected["Id"]])
    assert names == list(pd.read_csv(tmp_path / "sub.csv")["Category"])
    np.testing.assert_allclose(probs, expected[["alpha", "beta", "gamma"]].to_numpy(), atol=1e-5)
