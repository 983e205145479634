"""Bad configuration is caught before any work: one line per problem, exit code 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import TINY
from imgclf.cli.main import run
from imgclf.config import build_config, load_config
from imgclf.errors import ConfigError
from imgclf.training.loop import fit
from imgclf.training.preflight import training_problems, validate_for_training


def _sets(values: list[str]) -> list[str]:
    return [arg for value in values for arg in ("--set", value)]


def _cli(args: list[str], capsys) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as exc:
        run(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return exc.value.code, [line for line in err.splitlines() if line.strip()]


def test_unknown_key_suggests_the_closest_one():
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.epoch' \(did you mean 'train\.epochs'\?\)"):
        build_config({"train": {"epoch": 3}})
    with pytest.raises(ConfigError, match=r"unknown config key 'trian' \(did you mean 'train'\?\)"):
        build_config({"trian": {"lr": 0.1}})
    with pytest.raises(ConfigError, match=r"unknown config key 'epochs' \(did you mean 'train\.epochs'\?\)"):
        build_config({"epochs": 3})


def test_every_schema_problem_gets_its_own_line():
    with pytest.raises(ConfigError) as exc:
        build_config({"train": {"epoch": 3, "lr": -1}, "data": {"image_size": "big"}})
    lines = str(exc.value).splitlines()
    assert len(lines) == 3
    assert any("train.lr" in line and "greater than 0" in line for line in lines)
    assert any("data.image_size" in line and "'big'" in line for line in lines)


def test_cli_reports_schema_problems_one_per_line_and_writes_nothing(tmp_path, tiny_dataset, capsys):
    out = tmp_path / "run"
    code, lines = _cli(
        ["train", str(tiny_dataset), "--out", str(out), *_sets([*TINY, "train.epoch=3", "train.lr=-1"])], capsys
    )
    assert code == 2
    assert len(lines) == 2 and all(line.startswith("error:") for line in lines)
    assert "did you mean 'train.epochs'" in lines[0] + lines[1]
    assert not out.exists()


def test_cli_reports_every_preflight_problem_at_once_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    overrides = [
        *TINY,
        "data.blocklist=" + str(tmp_path / "no-blocklist.csv"),
        "data.split_file=" + str(tmp_path / "no-split.csv"),
        "model.weights=" + str(tmp_path / "missing.safetensors"),
        "model.backbone=convnext_atto",
        "finetune.strategy=bn_only",
    ]
    code, lines = _cli(["train", str(tmp_path / "no-such-dataset"), "--out", str(out), *_sets(overrides)], capsys)
    assert code == 2
    text = "\n".join(lines)
    for fragment in (
        "dataset not found",
        "data.blocklist: file not found",
        "data.split_file: file not found",
        "weights file not found",
        "bn_only needs BatchNorm",
    ):
        assert fragment in text
    assert len(lines) == 5 and all(line.startswith("error:") for line in lines)
    assert not out.exists()


def test_valid_tiny_config_has_no_problems(tiny_dataset):
    assert training_problems(load_config(None, TINY), tiny_dataset) == []


def test_bn_only_needs_batchnorm_in_the_backbone(tiny_dataset):
    cfg = load_config(None, [*TINY, "model.backbone=convnext_atto", "finetune.strategy=bn_only"])
    assert any("bn_only needs BatchNorm" in p and "convnext_atto" in p for p in training_problems(cfg, tiny_dataset))


def test_gradual_stages_beyond_the_backbones_groups(tiny_dataset):
    cfg = load_config(None, [*TINY, "finetune.strategy=gradual", "finetune.stages=500"])
    assert any("finetune.stages=500" in p for p in training_problems(cfg, tiny_dataset))


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["model.backbone=vit_tiny_patch16_224", "data.image_size=64"], "takes only 224x224 images"),
        (["model.backbone=convnext_atto", "data.image_size=16"], "below the total stride (32)"),
        (["data.image_size=16"], "below the total stride (32) of backbone test_efficientnet"),
    ],
)
def test_image_size_the_architecture_cannot_take(tiny_dataset, overrides, fragment):
    problems = training_problems(load_config(None, [*TINY, *overrides]), tiny_dataset)
    assert len(problems) == 1 and fragment in problems[0]


def test_fixed_size_vit_at_its_own_size_is_fine(tiny_dataset):
    cfg = load_config(None, [*TINY, "model.backbone=vit_tiny_patch16_224", "data.image_size=224"])
    assert training_problems(cfg, tiny_dataset) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without CUDA")
def test_cuda_requested_without_cuda(tiny_dataset):
    cfg = load_config(None, [*TINY, "train.device=cuda"])
    assert training_problems(cfg, tiny_dataset) == [
        "train.device=cuda but no CUDA device is available; use train.device=auto or cpu"
    ]


def test_fit_validates_before_creating_the_run_directory(tmp_path, tiny_dataset):
    out = tmp_path / "run"
    cfg = load_config(None, [*TINY, "data.split_file=" + str(tmp_path / "nope.csv")])
    with pytest.raises(ConfigError, match="data.split_file: file not found"):
        fit(cfg, tiny_dataset, out)
    assert not out.exists()


def test_dataset_without_train_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no train/ folder"):
        validate_for_training(load_config(None, TINY), tmp_path / "empty")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["evaluate", "{run}", "--device", "gpu"], "--device must be cpu or cuda"),
        (["predict", "{run}", "{run}", "--device", "tpu", "--out", "{run}/s.csv"], "--device must be cpu or cuda"),
        (["evaluate", "{run}", "--batch-size", "0"], "--batch-size"),
        (["evaluate", "{missing}"], "run directory not found"),
        (["predict"], "Missing argument"),
    ],
)
def test_inference_commands_reject_bad_options_with_exit_2(tmp_path, capsys, args, fragment):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    before = sorted(tmp_path.rglob("*"))
    argv = [a.format(run=run_dir, missing=tmp_path / "missing") for a in args]
    code, lines = _cli(argv, capsys)
    assert code == 2
    assert fragment in "\n".join(lines)
    assert sorted(tmp_path.rglob("*")) == before


def test_unknown_command_is_a_usage_error(capsys):
    code, lines = _cli(["trian"], capsys)
    assert code == 2 and any("No such command" in line for line in lines)


def test_yaml_file_with_a_typo_names_file_problem(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  weights: none\n  backbone: test_efficientnet\n  haed: mlp\n")
    with pytest.raises(ConfigError, match=r"did you mean 'model\.head'"):
        load_config(path)
    path.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(path)
    assert not Path(tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "override",
    [
        "finetune.head_lr=inf",
        "train.lr=nan",
        "train.weight_decay=inf",
        "finetune.head_lr=.inf",
        "finetune.layer_decay=.nan",
    ],
)
def test_non_finite_learning_rates_and_decays_are_refused_with_one_line(override, tmp_path, tiny_dataset, capsys):
    # head_lr=inf passed "> 0", trained NaN weights and predict used them.
    out = tmp_path / "run"
    code, lines = _cli(["train", str(tiny_dataset), "--out", str(out), *_sets([*TINY, override])], capsys)
    key = override.split("=")[0]
    assert code == 2 and len(lines) == 1 and len(lines[0]) < 300
    assert f"'{key}': input should be a finite number" in lines[0]
    assert not out.exists()


def test_non_finite_values_in_a_yaml_file_are_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("finetune:\n  head_lr: .inf\ntrain:\n  weight_decay: .nan\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert len(str(exc.value).splitlines()) == 2 and "finite" in str(exc.value)


def test_enum_tuples_are_derived_from_the_config_literals():
    from typing import get_args

    from imgclf import config, finetune
    from imgclf.data import transforms
    from imgclf.infer import tta
    from imgclf.models import heads

    fields = {
        name: sec.model_fields
        for name, sec in [
            ("model", config.ModelConfig),
            ("finetune", config.FinetuneConfig),
            ("data", config.DataConfig),
            ("tta", config.TTAConfig),
        ]
    }
    assert finetune.STRATEGIES == get_args(fields["finetune"]["strategy"].annotation)
    assert finetune.BN_POLICIES == get_args(fields["finetune"]["bn"].annotation)
    assert heads.HEADS == get_args(fields["model"]["head"].annotation)
    assert transforms.PRESETS == get_args(fields["data"]["augment"].annotation)
    assert tta.AGGREGATES == get_args(fields["tta"]["aggregate"].annotation)
    assert tta.UNCERTAINTIES == get_args(fields["tta"]["uncertainty"].annotation)
    assert config.TTA_MODES == get_args(fields["tta"]["mode"].annotation)
