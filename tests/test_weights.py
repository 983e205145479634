"""Weight sources: the embedded EfficientNet-Lite weights are real, files load or fail with one line."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import skimage.data
import timm
import timm.data
import torch
from PIL import Image
from safetensors.torch import save_file

from imgclf.config import ModelConfig
from imgclf.errors import ConfigError, WeightsError
from imgclf.models.backbones import create_backbone, create_model, data_config, imagenet_model
from imgclf.models.classifier import ImageClassifier
from imgclf.models.weights import embedded_state_dict, load_into, read_weights_file

ESPRESSO = 967
CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    return imagenet_model("lite0").eval()


@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_embedded_weights_load_strict_and_differ_from_random_init(variant):
    state_dict = embedded_state_dict(variant)
    model = timm.create_model(f"tf_efficientnet_{variant}", pretrained=False)
    random_stem = model.conv_stem.weight.detach().clone()

    result = model.load_state_dict(state_dict, strict=True)

    assert not result.missing_keys and not result.unexpected_keys
    assert not torch.equal(model.conv_stem.weight, random_stem)
    assert torch.equal(model.conv_stem.weight, state_dict["conv_stem.weight"])


def test_embedded_weights_classify_scikit_image_photos(lite0):
    cfg = data_config(lite0)
    assert cfg["input_size"] == (3, 224, 224)
    transform = timm.data.create_transform(**cfg, is_training=False)
    batch = torch.stack(
        [transform(Image.fromarray(photo)) for photo in (skimage.data.coffee(), skimage.data.chelsea())]
    )

    with torch.no_grad():
        logits = lite0(batch)

    assert logits[0].argmax().item() == ESPRESSO
    assert set(logits[1].topk(3).indices.tolist()) & set(CATS)


def test_create_model_with_random_weights_gives_classifier_and_warns(caplog):
    cfg = ModelConfig(backbone="test_efficientnet", weights="none", head="mlp_bn", head_hidden=16)

    with caplog.at_level(logging.WARNING, logger="imgclf"):
        model, info = create_model(cfg, num_classes=5)

    assert isinstance(model, ImageClassifier)
    assert model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 5)
    assert info["pretrained"] is False and info["weights"] == "none"
    assert "RANDOM weights" in caplog.text


def test_embedded_backbone_has_no_classifier_and_pretrained_info():
    backbone, info = create_backbone("tf_efficientnet_lite0", "embedded:lite0")

    assert info["pretrained"] is True
    assert backbone.eval()(torch.zeros(1, 3, 64, 64)).shape == (1, backbone.num_features)
    assert torch.equal(backbone.conv_head.weight, embedded_state_dict("lite0")["conv_head.weight"])


def test_weights_file_of_other_architecture_fails_with_one_line(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file(timm.create_model("test_resnet", num_classes=0).state_dict(), str(path))

    with pytest.raises(WeightsError) as error:
        create_backbone("test_efficientnet", str(path))

    message = str(error.value)
    assert "\n" not in message
    assert f"weights file {path} does not fit backbone test_efficientnet" in message
    assert "missing conv_stem.weight" in message and "more)" in message


def test_own_checkpoint_with_backbone_prefix_round_trips(tmp_path):
    model, _ = create_model(ModelConfig(backbone="test_efficientnet", weights="none"), num_classes=3)
    path = tmp_path / "best.safetensors"
    save_file(model.state_dict(), str(path))  # keys backbone.* and head.*

    backbone, info = create_backbone("test_efficientnet", str(path))

    assert info["pretrained"] is True
    for key, tensor in model.backbone.state_dict().items():
        assert torch.equal(backbone.state_dict()[key], tensor), key


def test_pth_training_checkpoint_is_unwrapped(tmp_path):
    source = timm.create_model("test_efficientnet", num_classes=0)
    path = tmp_path / "last.pth"
    torch.save({"model": source.state_dict(), "epoch": 3}, path)

    state_dict = read_weights_file(path)
    target = timm.create_model("test_efficientnet", num_classes=0)
    load_into(target, state_dict, f"weights file {path}")

    assert torch.equal(target.conv_stem.weight, source.conv_stem.weight)


def test_classifier_of_a_checkpoint_is_dropped_for_a_headless_backbone():
    full = timm.create_model("test_efficientnet", num_classes=7)
    backbone = timm.create_model("test_efficientnet", num_classes=0)

    load_into(backbone, full.state_dict(), "test")

    assert torch.equal(backbone.conv_head.weight, full.conv_head.weight)


@pytest.mark.parametrize("content", [None, b"not a weights file"])
def test_missing_or_corrupt_weights_file_fails_with_one_line(tmp_path, content):
    path = tmp_path / "weights.safetensors"
    if content is not None:
        path.write_bytes(content)

    with pytest.raises(WeightsError, match="weights file") as error:
        read_weights_file(path)

    assert "\n" not in str(error.value)


def test_unknown_backbone_suggests_a_close_name():
    with pytest.raises(ConfigError, match="did you mean test_efficientnet"):
        create_backbone("test_efficientnett", "none")


@pytest.mark.parametrize(
    ("arch", "weights", "match"),
    [
        ("resnet18", "embedded:lite0", "are for backbone tf_efficientnet_lite0"),
        ("tf_efficientnet_lite0", "embedded:lite9", "unknown embedded weights"),
        ("test_efficientnet", "imagenet", "unknown weights 'imagenet'"),
    ],
)
def test_bad_weight_sources_raise_weights_error(arch, weights, match):
    with pytest.raises(WeightsError, match=match):
        create_backbone(arch, weights)


def test_data_config_of_classifier_is_that_of_its_backbone():
    model, _ = create_model(ModelConfig(backbone="test_efficientnet", weights="none"), num_classes=2)

    assert data_config(model) == data_config(model.backbone)
    assert set(data_config(model)) >= {"input_size", "mean", "std", "interpolation", "crop_pct"}


def test_full_training_checkpoint_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "rng": {"numpy": np.random.get_state()}}, path)

    with pytest.raises(WeightsError, match="holds more than tensors"):
        read_weights_file(path)
