"""show-augs: the preview grid is drawn by the training pipeline itself."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from imgclf.cli.main import run
from imgclf.config import load_config
from imgclf.data.samples import load_training_set
from imgclf.data.transforms import denormalize, eval_transform
from imgclf.report.augs import (
    GridLayout,
    backbone_preprocessing,
    default_cell,
    preview_rows,
    render_grid,
    tensor_to_image,
)


@pytest.fixture
def setup(tiny_dataset, tiny_overrides):
    cfg = load_config(None, tiny_overrides + ["data.augment=medium"])
    return tiny_dataset, cfg, load_training_set(tiny_dataset), backbone_preprocessing(cfg)


def test_cli_writes_png_with_expected_grid_size(tiny_dataset, tiny_overrides, tmp_path):
    out = tmp_path / "augs.png"
    args = ["show-augs", str(tiny_dataset), "--n", "5", "--per-class", "2", "--out", str(out)]
    for item in tiny_overrides:
        args += ["--set", item]
    run(args)  # returns normally on success
    image = Image.open(out)
    # 3 classes × 2 images = 6 rows; original + validation + 5 augmentations = 7 columns.
    layout = GridLayout(rows=6, cols=7, cell=default_cell(32))
    assert image.size == layout.size
    assert image.size[0] > 7 * 64 and image.size[1] > 6 * 64


def test_validation_view_equals_eval_transform(setup):
    dataset, cfg, samples, pre = setup
    rows = preview_rows(samples, cfg.data, pre, n=3, per_class=1, seed=0)
    assert len(rows) == 3 and {r.label for r in rows} == set(samples.classes)
    for row in rows:
        image = Image.open(dataset / row.path).convert("RGB")
        expected = denormalize(eval_transform(pre)(image), pre)
        assert torch.equal(row.val, expected)


def test_rendered_validation_tile_shows_eval_pixels(setup):
    _, cfg, samples, pre = setup
    rows = preview_rows(samples, cfg.data, pre, n=2, per_class=1, seed=0)
    cell = pre.image_size  # no rescaling: the tile is the eval output's own pixels
    grid = render_grid(rows, cell)
    tile = grid.crop(GridLayout(len(rows), 4, cell).box(1, 1))
    assert np.array_equal(np.asarray(tile), np.asarray(tensor_to_image(rows[1].val)))


def test_augmented_views_differ_from_each_other(setup):
    _, cfg, samples, pre = setup
    row = preview_rows(samples, cfg.data, pre, n=4, per_class=1, max_classes=1, seed=0)[0]
    views = row.augmented
    assert all(v.shape == (3, pre.image_size, pre.image_size) for v in views)
    assert all(not torch.equal(views[i], views[j]) for i in range(4) for j in range(i + 1, 4))


def test_preview_is_reproducible_and_leaves_global_rng_alone(setup):
    _, cfg, samples, pre = setup
    random.seed(123)
    torch.manual_seed(123)
    expected_py, expected_torch = random.random(), torch.rand(1)
    random.seed(123)
    torch.manual_seed(123)
    first = preview_rows(samples, cfg.data, pre, n=2, per_class=1, seed=7)
    assert random.random() == expected_py and torch.equal(torch.rand(1), expected_torch)
    second = preview_rows(samples, cfg.data, pre, n=2, per_class=1, seed=7)
    assert all(torch.equal(a, b) for r1, r2 in zip(first, second) for a, b in zip(r1.augmented, r2.augmented))


def test_max_classes_limits_rows(setup):
    _, cfg, samples, pre = setup
    assert len(preview_rows(samples, cfg.data, pre, n=1, per_class=2, max_classes=2)) == 4


def test_unknown_backbone_is_one_line_error(tiny_dataset, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        run(
            [
                "show-augs",
                str(tiny_dataset),
                "--set",
                "model.weights=none",
                "--set",
                "model.backbone=no_such_net",
                "--out",
                str(tmp_path / "a.png"),
            ]
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "no_such_net" in err and "Traceback" not in err
    assert not (tmp_path / "a.png").exists()


def test_missing_dataset_is_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        run(["show-augs", str(tmp_path / "nope"), "--out", str(tmp_path / "a.png")])
    assert exc.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_preview_uses_the_resize_cache_like_training(tiny_dataset, tiny_overrides, tmp_path):
    cfg = load_config(None, tiny_overrides + ["data.cache=true", f"data.cache_dir={tmp_path / 'cache'}"])
    samples = load_training_set(tiny_dataset)
    preview_rows(samples, cfg.data, backbone_preprocessing(cfg), n=1, per_class=1)
    assert any(p.is_file() for p in (tmp_path / "cache").rglob("*"))


def test_show_augs_budget_previews_the_recipes_prior_not_the_medium_preset(tiny_dataset, tmp_path, capsys):
    from conftest import cli
    from imgclf.cli.show_augs import preview_config
    from imgclf.config import load_config
    from imgclf.data.transforms import AugmentSpec
    from imgclf.budget.prior import with_prior

    cfg = load_config(None, ["model.weights=none", "model.backbone=test_efficientnet", "data.image_size=32"])
    shown, changes = preview_config(cfg, budget=True)
    trained = with_prior(cfg)[0]  # what train --budget starts from
    assert AugmentSpec.from_config(shown.data) == AugmentSpec.from_config(trained.data)
    assert shown.data.eval_crop_pct == trained.data.eval_crop_pct
    assert AugmentSpec.from_config(shown.data) != AugmentSpec.from_config(cfg.data)  # not the medium preset
    assert preview_config(cfg, budget=False)[0] is cfg and preview_config(cfg, budget=False)[1] == changes
    sets = [
        x
        for o in ("model.weights=none", "model.backbone=test_efficientnet", "data.image_size=32", "data.num_workers=0")
        for x in ("--set", o)
    ]
    code, out, err = cli(
        ["show-augs", tiny_dataset, "--budget", "--n", "2", "--out", tmp_path / "b.png", *sets], capsys
    )
    assert code == 0, err
    assert (
        f"augment {AugmentSpec.from_config(trained.data).describe()}" in out and "as `train --budget` trains it" in out
    )
    code, out, err = cli(["show-augs", tiny_dataset, "--n", "2", "--out", tmp_path / "m.png", *sets], capsys)
    assert code == 0 and "show-augs --budget" in out  # the plain preview says the budget run differs
