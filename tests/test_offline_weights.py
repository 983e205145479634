"""Weights without a network: hub offline fails fast, the local HF cache is used, snapshot folders load."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from conftest import TINY, cli
from imgclf.config import load_config
from imgclf.errors import WeightsError
from imgclf.models.backbones import create_backbone

ARCH = "test_efficientnet"


def _sets(overrides: list[str]) -> list[str]:
    return [x for o in overrides for x in ("--set", o)]


def _reference_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    return {k: v.contiguous() for k, v in timm.create_model(ARCH, pretrained=False).state_dict().items()}


def test_hub_offline_with_empty_cache_fails_fast_with_the_fix(tiny_dataset, tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    out = tmp_path / "run"
    overrides = [o for o in TINY if not o.startswith("model.weights")] + ["model.weights=hub"]
    args = ["train", tiny_dataset, "--out", out, *_sets(overrides)]
    assert cli(args, capsys)[0] == 2  # the first call also pays for importing torch and timm: time the second
    start = time.monotonic()
    code, _, err = cli(args, capsys)
    seconds = time.monotonic() - start
    assert code == 2, err
    assert "HF_HUB_OFFLINE=1" in err and "not in the HF cache" in err and "model.weights=FOLDER" in err
    assert seconds < 5  # a failure guard only (it takes well under a second); was 53 s of retries
    assert not out.exists()


def test_hub_weights_come_from_the_local_cache_offline(tmp_path: Path, monkeypatch):
    from timm.models import get_pretrained_cfg

    repo = get_pretrained_cfg(ARCH).hf_hub_id
    commit = "0" * 40
    repo_dir = tmp_path / "hub" / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    (repo_dir / "snapshots" / commit).mkdir(parents=True)
    state = _reference_state()
    save_file(state, str(repo_dir / "snapshots" / commit / "model.safetensors"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    backbone, info = create_backbone(ARCH, "hub")
    assert info["pretrained"] is True
    assert torch.equal(backbone.state_dict()["conv_stem.weight"], state["conv_stem.weight"])


def _snapshot_folder(folder: Path, arch: str = ARCH) -> dict[str, torch.Tensor]:
    folder.mkdir(parents=True)
    state = _reference_state()
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(f'{{"architecture": "{arch}", "num_classes": 1000}}')
    return state


def test_snapshot_folder_is_a_weights_source(tmp_path: Path):
    folder = tmp_path / "kaggle-input" / "test-efficientnet"
    state = _snapshot_folder(folder)
    cfg = load_config(None, [f"model.weights={folder}"])
    assert cfg.model.backbone == ARCH  # taken from config.json
    backbone, info = create_backbone(ARCH, str(folder))
    assert info["pretrained"] is True and "snapshot folder" in info["note"]
    assert torch.equal(backbone.state_dict()["conv_head.weight"], state["conv_head.weight"])


def test_snapshot_folder_passes_preflight_and_a_wrong_one_is_one_line(tiny_dataset, tmp_path: Path, capsys):
    from imgclf.training.preflight import validate_for_training

    good, empty = tmp_path / "good", tmp_path / "empty"
    _snapshot_folder(good)
    empty.mkdir()
    base = [o for o in TINY if not o.startswith("model.weights")]
    validate_for_training(load_config(None, base + [f"model.weights={good}"]), tiny_dataset)  # no error
    code, _, err = cli(
        ["train", tiny_dataset, "--out", tmp_path / "r1", *_sets(base + [f"model.weights={empty}"])], capsys
    )
    assert code == 2 and "holds no model.safetensors" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r1").exists()


def test_snapshot_folder_for_another_architecture_is_rejected(tmp_path: Path):
    folder = tmp_path / "resnet"
    _snapshot_folder(folder, arch="resnet18")
    with pytest.raises(WeightsError, match="holds weights for resnet18, not model.backbone=test_efficientnet"):
        create_backbone(ARCH, str(folder))


def test_hub_unreachable_without_offline_flag_is_reported_not_retried(tmp_path: Path, monkeypatch):
    import imgclf.models.hub as hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(hub, "_reachable", lambda host, port, seconds: False)  # stands in for a machine with no network
    with pytest.raises(WeightsError, match="cannot be reached \\(no internet\\?\\); use model.weights=FOLDER"):
        create_backbone(ARCH, "hub")
