"""The orientation probe: the flip group the budget recipe trains with, from whether the data has an "up"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgclf.config import Config, with_overrides
from imgclf.budget.orientation import choose_flips, held_out_correct, oriented, probe_orientation, view
from conftest import TINY


def _hits(accuracy: float, n: int = 200) -> np.ndarray:
    return np.arange(n) < round(accuracy * n)


@pytest.mark.parametrize(
    "accuracy, flips",
    [
        ({"identity": 0.8, "hflip": 0.79, "vflip": 0.5, "rot90": 0.4}, "h"),  # upright photos
        ({"identity": 0.8, "hflip": 0.80, "vflip": 0.78, "rot90": 0.79}, "d4"),  # no up
        ({"identity": 0.8, "hflip": 0.80, "vflip": 0.79, "rot90": 0.50}, "hv"),  # flips seen, quarter turns not
        ({"identity": 0.8, "hflip": 0.40, "vflip": 0.40, "rot90": 0.40}, "none"),  # text: even the mirror changes it
    ],
)
def test_flip_group_is_the_largest_whose_views_keep_the_accuracy(accuracy, flips):
    assert choose_flips({k: _hits(v) for k, v in accuracy.items()}) == flips


def test_a_few_misses_on_a_small_dataset_are_not_an_up():
    identity = np.ones(24, dtype=bool)
    two_missed = np.r_[np.ones(22, dtype=bool), np.zeros(2, dtype=bool)]  # 8 pp, but 2 images
    assert choose_flips({"identity": identity, "hflip": two_missed, "vflip": identity, "rot90": identity}) == "d4"
    assert choose_flips({"identity": identity, "hflip": identity, "vflip": ~identity, "rot90": identity}) == "h"


def test_views_are_the_flips_and_the_quarter_turn():
    batch = torch.arange(4.0).reshape(1, 1, 2, 2)  # [[0, 1], [2, 3]]
    assert view(batch, "hflip").flatten().tolist() == [1, 0, 3, 2]
    assert view(batch, "vflip").flatten().tolist() == [2, 3, 0, 1]
    assert view(batch, "rot90").flatten().tolist() == [1, 3, 0, 2]
    assert torch.equal(view(batch, "identity"), batch)


def test_held_out_accuracy_scores_each_view_with_a_model_that_never_saw_the_image():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 40)
    identity = rng.normal(size=(80, 8)) + labels[:, None] * 3.0  # separable
    features = {"identity": identity, "same": identity.copy(), "swapped": identity[::-1].copy()}
    correct = held_out_correct(features, labels)
    assert np.array_equal(correct["identity"], correct["same"]) and correct["identity"].mean() > 0.9
    assert correct["swapped"].mean() < 0.1  # the other class's features: every answer wrong


def _images(root: Path, draw, per_class: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for c in range(2):
        (root / "train" / f"c{c}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(draw(rng, c)).save(root / "train" / f"c{c}" / f"{i}.png")
    return root


def _upright(rng, c):
    """Class 0 is bright at the top, class 1 at the bottom: an up-down flip turns one class into the other."""
    pixels = rng.integers(0, 40, (32, 32, 3), dtype=np.uint8)
    pixels[(slice(0, 12) if c == 0 else slice(20, 32))] = 255
    return pixels


def _no_up(rng, c):
    """The class is the colour; the bright patch lands anywhere: every orientation is like the data."""
    pixels = rng.integers(0, 40, (32, 32, 3), dtype=np.uint8)
    pixels[..., c] += 120
    y, x = rng.integers(0, 24, 2)
    pixels[y : y + 8, x : x + 8] = 255
    return pixels


def _tiny_config() -> Config:
    return with_overrides(Config(), dict(o.split("=", 1) for o in TINY))


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)  # the random-weight test model's init


def test_probe_keeps_upright_data_upright(tmp_path):
    found = probe_orientation(_tiny_config(), _images(tmp_path / "up", _upright), 32)
    assert found is not None and found.images == 24
    assert found.flips == "h" and found.accuracy["vflip"] < found.accuracy["identity"] - 0.5


def test_probe_turns_data_without_an_up(tmp_path):
    found = probe_orientation(_tiny_config(), _images(tmp_path / "noup", _no_up), 32)
    assert found is not None and found.flips == "d4"


def test_probe_declines_when_a_class_is_too_small_or_the_budget_too_short(tmp_path):
    root = _images(tmp_path / "few", _upright, per_class=1)
    assert probe_orientation(_tiny_config(), root, 32) is None
    cfg = _tiny_config()
    same, record = oriented(cfg, root, 32, seconds_per_image=1.0, budget=60.0)  # 320 images x 4 views: minutes
    assert same is cfg and "over 3% of the budget" in record["skipped"]
    same, record = oriented(cfg, root, 32, seconds_per_image=1e-6, budget=60.0)
    assert same is cfg and record["skipped"] == "too few images a class to tell"


def test_the_probe_looks_at_the_largest_size_its_share_of_the_budget_affords(tmp_path):
    """320 images x 4 views at a third of a training image's cost: at 0.03 s an image 12.8 s, within 3 % of 600 s;
    at 0.05 s 21 s, not; with no size affordable the smallest (and oriented() then says it was skipped)."""
    from imgclf.budget.orientation import probe_seconds, probe_size

    per_image = {64: 0.01, 96: 0.02, 128: 0.03, 192: 0.05}.__getitem__
    assert probe_seconds(0.03) == pytest.approx(12.8)
    assert probe_size([64, 96, 128, 192], per_image, 600.0) == 128
    assert probe_size([64, 96, 128, 192], per_image, 6000.0) == 192
    assert probe_size([64, 96], per_image, 10.0) == 64
    assert probe_orientation(_tiny_config(), _images(tmp_path / "up", _upright), 32).size == 32
