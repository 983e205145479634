"""Augmentation keys: crop scale/ratio, flips (none|h|hv|d4), colour jitter and the eval crop.

Eval stays deterministic and untouched by the training keys; d4 is training-only; the keys reach
timm's transforms; the eval crop is saved with the run; show-augs draws them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data import create_transform
from timm.data.transforms import RandomResizedCropAndInterpolation

from conftest import cli
from imgclf.config import load_config
from imgclf.data.dihedral import RandomDihedral, dihedral
from imgclf.data.pipeline import build_data
from imgclf.data.samples import load_training_set
from imgclf.data.transforms import AugmentSpec, Preprocessing, eval_transform, train_transform
from imgclf.errors import ConfigError

PRE = Preprocessing(image_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=1.0)
KEY_SETS = [
    [],
    ["data.flips=d4"],
    ["data.flips=hv", "data.crop_scale=[0.8,1]", "data.crop_ratio=[0.9,1.1]"],
    ["data.augment=none", "data.flips=d4", "data.color_jitter=0.4"],
    ["data.augment=strong", "data.flips=none"],
    ["data.eval_crop_pct=1.0", "data.augment=medium", "data.color_jitter=0.0"],
]


def asymmetric_image(size: int = 32) -> Image.Image:
    """No flip or quarter turn maps it onto itself: a gradient plus an off-centre block."""
    arr = np.zeros((size, size, 3), dtype=np.uint8)
    arr[..., 0] = np.arange(size, dtype=np.uint8)[None, :] * 7
    arr[..., 1] = np.arange(size, dtype=np.uint8)[:, None] * 5
    arr[2:9, 3:14, 2] = 255
    return Image.fromarray(arr)


def sets(overrides: list[str]) -> list[str]:
    return [x for o in overrides for x in ("--set", o)]


def _crop(transform):
    return next(t for t in transform.transforms if isinstance(t, RandomResizedCropAndInterpolation))


@pytest.mark.parametrize("keys", KEY_SETS)
def test_eval_is_deterministic_and_ignores_training_keys(tiny_dataset, tiny_overrides, keys):
    cfg = load_config(None, tiny_overrides + keys)
    pre = Preprocessing(32, (0.5,) * 3, (0.5,) * 3, crop_pct=cfg.data.eval_crop_pct or 0.875)
    data = build_data(cfg.data, load_training_set(tiny_dataset), pre, None)
    image = asymmetric_image(40)
    torch.manual_seed(0)
    first = data.val_data.transform(image)
    torch.manual_seed(1)
    assert torch.equal(first, data.val_data.transform(image))
    assert torch.equal(first, eval_transform(pre)(image))


def test_d4_is_applied_only_in_training(tiny_dataset, tiny_overrides):
    cfg = load_config(None, tiny_overrides + ["data.augment=none", "data.flips=d4"])
    data = build_data(cfg.data, load_training_set(tiny_dataset), PRE, None)
    image = asymmetric_image()
    plain = eval_transform(PRE)(image)
    torch.manual_seed(0)
    assert torch.equal(data.val_data.transform(image), plain)
    # The training transform draws the 8 orientations of exactly that eval view.
    orientations = [dihedral(plain, k) for k in range(8)]
    assert len({o.numpy().tobytes() for o in orientations}) == 8
    seen = set()
    for _ in range(64):
        out = data.train_data.transform(image)
        seen |= {k for k, o in enumerate(orientations) if torch.equal(out, o)}
    assert seen == set(range(8))


def test_hv_flips_vertically_with_a_fixed_seed():
    spec = AugmentSpec("none", flips="hv")
    image = asymmetric_image()
    plain = eval_transform(PRE)(image)
    torch.manual_seed(0)
    outs = [train_transform(PRE, spec)(image) for _ in range(32)]
    assert any(torch.equal(o, plain.flip(-2)) or torch.equal(o, plain.flip(-2).flip(-1)) for o in outs)
    h_only = [train_transform(PRE, AugmentSpec("none", flips="h"))(image) for _ in range(32)]
    assert all(torch.equal(o, plain) or torch.equal(o, plain.flip(-1)) for o in h_only)


def test_flips_none_is_the_eval_view_for_preset_none():
    image = asymmetric_image()
    assert torch.equal(train_transform(PRE, AugmentSpec("none"))(image), eval_transform(PRE)(image))


def test_crop_keys_reach_timms_random_resized_crop():
    cfg = load_config(None, ["data.crop_scale=[0.8, 1.0]", "data.crop_ratio=[0.9, 1.1]", "data.flips=hv"])
    transform = train_transform(PRE, AugmentSpec.from_config(cfg.data))
    crop = _crop(transform)
    assert crop.scale == (0.8, 1.0) and crop.ratio == (0.9, 1.1)
    names = [type(t).__name__ for t in transform.transforms]
    assert "RandomHorizontalFlip" in names and "RandomVerticalFlip" in names
    # a preset name alone still works, and crop_scale turns a crop on even for augment=none
    assert _crop(train_transform(PRE, "light")).scale == (0.6, 1.0)
    assert _crop(train_transform(PRE, AugmentSpec("none", crop_scale=(0.5, 1.0)))).scale == (0.5, 1.0)


def test_default_keys_build_todays_medium_transform():
    spec = AugmentSpec.from_config(load_config(None, []).data)
    today = create_transform(
        is_training=True,
        input_size=32,
        interpolation="bicubic",
        mean=PRE.mean,
        std=PRE.std,
        scale=(0.35, 1.0),
        hflip=0.5,
        color_jitter=0.3,
    )
    assert repr(train_transform(PRE, spec)) == repr(today)
    assert spec.describe() == "auto (medium): crop scale 0.35-1, ratio 0.75-1.33, flips h, colour jitter 0.3"


def test_random_dihedral_agrees_on_pil_and_tensor():
    image = asymmetric_image()
    tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    for k in range(8):
        as_pil = torch.from_numpy(np.array(dihedral(image, k))).permute(2, 0, 1)
        assert torch.equal(as_pil, dihedral(tensor, k))
    torch.manual_seed(3)
    assert RandomDihedral()(tensor).shape == tensor.shape


def test_eval_crop_pct_one_keeps_the_whole_image():
    pre = Preprocessing.from_model(
        {"input_size": (3, 224, 224), "mean": (0.5,) * 3, "std": (0.5,) * 3, "crop_pct": 0.875}, 48, crop_pct=1.0
    )
    assert pre.crop_pct == 1.0 and pre.resize_short_side == pre.image_size == 48
    image = asymmetric_image(48)
    expected = (torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
    assert torch.allclose(eval_transform(pre)(image), expected, atol=1e-6)


@pytest.mark.parametrize(
    "override, words",
    [
        ("data.crop_scale=[0.9,0.5]", "crop_scale"),
        ("data.crop_scale=[0,1]", "crop_scale"),
        ("data.crop_ratio=[2,1]", "crop_ratio"),
        ("data.flips=d8", "flips"),
        ("data.eval_crop_pct=1.5", "eval_crop_pct"),
    ],
)
def test_bad_augment_keys_are_config_errors(override, words):
    with pytest.raises(ConfigError, match=words):
        load_config(None, [override])


def test_strong_with_color_jitter_is_refused():
    with pytest.raises(ConfigError, match="RandAugment"):
        load_config(None, ["data.augment=strong", "data.color_jitter=0.2"])


def test_eval_crop_pct_is_saved_with_the_run(tiny_dataset, tiny_overrides, tmp_path, capsys):
    out = tmp_path / "run"
    keys = ["data.eval_crop_pct=1.0", "data.flips=d4", "train.epochs=1", "train.max_steps_per_epoch=1"]
    code, _, err = cli(["train", tiny_dataset, "--out", out, *sets(tiny_overrides + keys)], capsys)
    assert code == 0, err
    pre = json.loads((out / "preprocessing.json").read_text())
    assert pre["crop_pct"] == 1.0 and Preprocessing.from_dict(pre).resize_short_side == 32


def test_show_augs_runs_with_d4_and_names_the_keys(tiny_dataset, tiny_overrides, tmp_path, capsys):
    png = tmp_path / "augs.png"
    keys = ["data.flips=d4", "data.crop_scale=[0.9,1]", "data.eval_crop_pct=1.0"]
    code, stdout, err = cli(["show-augs", tiny_dataset, "--n", "3", "--out", png, *sets(tiny_overrides + keys)], capsys)
    assert code == 0, err
    assert "flips d4" in stdout and "crop scale 0.9-1" in stdout and "eval crop 1 " in stdout
    assert Image.open(png).size[0] > 0


def test_show_augs_help_lists_every_preset_as_applied(capsys):
    code, stdout, _ = cli(["show-augs", "--help"], capsys)
    assert code == 0
    flat = " ".join(stdout.split())
    for preset in ("none", "light", "medium", "strong"):
        described = AugmentSpec(preset).describe().split(": ", 1)[1]
        assert " ".join(described.split(", RandAugment")[0].split()) in flat, preset
