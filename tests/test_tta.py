"""Views, fixed and adaptive TTA. Fake forwards (a fixed random linear map, or a look-up of
hand-made logits) keep every test in milliseconds."""

import math
import random

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as F

from imgclf.config import TTAConfig
from imgclf.data.transforms import Preprocessing, eval_transform
from imgclf.errors import ConfigError
from imgclf.infer.tta import adaptive_tta, aggregate, fixed_tta, is_uncertain, run_tta, uncertainty, view_logits
from imgclf.infer.views import build_views, views_from_data_config

SIZE = 16
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
DEFAULT_VIEWS = TTAConfig().views


def _image(seed: int, w: int = 27, h: int = 20) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def _views(names, size=SIZE, **kw):
    return build_views(names, size, MEAN, STD, "bilinear", 0.875, **kw)


def _normalized(image: Image.Image) -> torch.Tensor:
    return F.normalize(F.to_tensor(image), MEAN, STD)


class _LinearModel:
    """Per-sample float64 linear map of the pixels: a forward whose rows never depend on the batch."""

    def __init__(self, n_classes: int = 5, scale: float = 3.0):
        gen = torch.Generator().manual_seed(0)
        self.w = torch.randn(3 * SIZE * SIZE, n_classes, generator=gen, dtype=torch.float64) * scale / SIZE
        self.batches: list[int] = []

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.batches.append(len(batch))
        return torch.stack([row.double() @ self.w for row in batch.flatten(1)])


class _Lookup:
    def __init__(self, v):
        self.v = v

    def __call__(self, i):
        return torch.tensor([i, self.v])


def _lookup(logits):
    """(images, views, forward) that replay hand-made (N, V, C) logits."""
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    calls = []

    def forward(batch):
        calls.append(len(batch))
        return z[batch[:, 0], batch[:, 1]]

    forward.calls = calls
    return range(z.shape[0]), [_Lookup(v) for v in range(z.shape[1])], forward


# ------------------------------------------------------------------ views


def test_identity_is_the_standard_eval_transform():
    image = _image(0)
    expected = T.Compose(
        [
            T.Resize(math.floor(SIZE / 0.875), interpolation=T.InterpolationMode.BILINEAR),
            T.CenterCrop(SIZE),
            T.ToTensor(),
            T.Normalize(MEAN, STD),
        ]
    )(image)
    (identity,) = _views(["identity"])
    assert torch.equal(identity(image), expected)


@pytest.mark.parametrize("size,crop_pct", [(32, 0.9), (33, 0.95), (24, 0.875)])
def test_identity_equals_the_projects_eval_transform(size, crop_pct):
    pre = Preprocessing(size, MEAN, STD, "bicubic", crop_pct)
    image = _image(8, w=61, h=47)
    (identity,) = build_views(["identity"], size, MEAN, STD, pre.interpolation, crop_pct)
    assert torch.equal(identity(image), eval_transform(pre)(image))


def test_hflip_views_are_exact_mirrors():
    image = _image(1)
    identity, hflip, center, hflip_center = _views(["identity", "hflip", "center_crop", "hflip_center_crop"])
    assert torch.equal(hflip(image), identity(image).flip(-1))
    assert torch.equal(hflip_center(image), center(image).flip(-1))
    assert not torch.equal(hflip(image), identity(image))


def test_turned_views_are_the_d4_group_of_the_identity():
    """rot90/rot180/rot270 turn the identity view by quarter turns; with hflip_ they are the eight distinct views
    of d4, each one the identity's pixels moved (nothing resampled)."""
    from imgclf.infer.views import SYMMETRY_VIEWS

    image = _image(2)
    views = dict(zip(SYMMETRY_VIEWS["d4"], _views(list(SYMMETRY_VIEWS["d4"]))))
    base = views["identity"](image)
    assert torch.equal(views["rot90"](image), torch.rot90(base, 1, dims=(-2, -1)))
    assert torch.equal(views["rot180"](image), base.flip(-1).flip(-2))
    assert torch.equal(views["hflip_rot180"](image), base.flip(-2))  # the vertical mirror
    assert torch.equal(views["hflip_rot90"](image), torch.rot90(base, 1, dims=(-2, -1)).flip(-1))
    outs = [view(image) for view in views.values()]
    assert len({out.numpy().tobytes() for out in outs}) == 8
    assert all(sorted(out.flatten().tolist()) == sorted(base.flatten().tolist()) for out in outs)
    assert set(SYMMETRY_VIEWS["hv"]) < set(SYMMETRY_VIEWS["d4"]) and SYMMETRY_VIEWS["h"] == ("identity", "hflip")


def test_corner_and_center_crops_are_slices_of_the_tight_resize():
    image = _image(2, w=31, h=22)
    resized = _normalized(F.resize(image, math.floor(SIZE / 0.75), interpolation=T.InterpolationMode.BILINEAR))
    h, w = resized.shape[1:]
    assert (h, w) == (21, 29)
    views = dict(
        zip(["tl", "tr", "bl", "br", "c"], _views(["crop_tl", "crop_tr", "crop_bl", "crop_br", "center_crop"]))
    )
    assert torch.equal(views["tl"](image), resized[:, :SIZE, :SIZE])
    assert torch.equal(views["tr"](image), resized[:, :SIZE, w - SIZE :])
    assert torch.equal(views["bl"](image), resized[:, h - SIZE :, :SIZE])
    assert torch.equal(views["br"](image), resized[:, h - SIZE :, w - SIZE :])
    top, left = round((h - SIZE) / 2), round((w - SIZE) / 2)
    assert torch.equal(views["c"](image), resized[:, top : top + SIZE, left : left + SIZE])


def test_default_views_are_deterministic_distinct_and_the_right_shape():
    image = _image(3, w=70, h=60)
    views = _views(DEFAULT_VIEWS, size=48)  # at 16 or 32 px, center_crop and scale_1.15 floor to one size
    outs = [v(image) for v in views]
    assert all(o.shape == (3, 48, 48) and o.dtype == torch.float32 for o in outs)
    assert all(torch.equal(o, v(image)) for o, v in zip(outs, views))
    for i in range(len(outs)):
        for j in range(i + 1, len(outs)):
            assert not torch.equal(outs[i], outs[j]), (DEFAULT_VIEWS[i], DEFAULT_VIEWS[j])


def test_scale_view_resizes_by_the_factor_and_pads_with_the_mean_when_small():
    image = _image(4, w=40, h=32)
    big, small = _views(["scale_1.15", "scale_0.5"])
    expected_big = F.center_crop(_normalized(F.resize(image, math.floor(SIZE * 1.15 / 0.875))), [SIZE, SIZE])
    assert torch.equal(big(image), expected_big)
    out = small(image)  # shorter side floor(16 * 0.5 / 0.875) = 9 → 9 x 11 inside a 16 x 16 mean border
    assert out.shape == (3, SIZE, SIZE)
    assert torch.count_nonzero(out.abs().sum(0)) <= 9 * 11
    assert torch.all(out[:, 0, :] == 0) and torch.all(out[:, :, 0] == 0)


@pytest.mark.parametrize("name", ["mirror", "scale_x", "scale_-1", "hflip_hflip", "crop_xx", "random_a"])
def test_unknown_view_names_are_rejected_on_one_line_listing_valid_ones(name):
    with pytest.raises(ConfigError) as err:
        _views(["identity", name])
    message = str(err.value)
    assert name in message and "crop_tl" in message and "scale_<f>" in message and "\n" not in message


def test_repeated_view_names_are_rejected():
    with pytest.raises(ConfigError, match="more than once"):
        _views(["identity", "hflip", "identity"])


def test_random_view_is_reproducible_seeded_per_image_and_leaves_global_rngs_alone():
    train = T.Compose([T.RandomResizedCrop(SIZE), T.RandomHorizontalFlip(), T.ToTensor()])
    with pytest.raises(ConfigError, match="training transform"):
        _views(["random"])
    rand0, rand1 = _views(["random", "random_1"], train_transform=train)
    a, b = _image(5), _image(6)
    first = rand0(a)
    torch.manual_seed(123)
    random.seed(123)
    expected = (torch.rand(1), random.random())
    torch.manual_seed(123)
    random.seed(123)
    rand0(b)
    assert torch.equal(torch.rand(1), expected[0]) and random.random() == expected[1]  # globals untouched
    assert torch.equal(rand0(a), first)  # same image → same augmentation, whatever ran before
    assert not torch.equal(rand1(a), first)


def test_views_from_timm_data_config_match_build_views():
    cfg = {"input_size": (3, SIZE, SIZE), "mean": MEAN, "std": STD, "interpolation": "bicubic", "crop_pct": 0.9}
    image = _image(7)
    (a,) = views_from_data_config(["scale_0.87"], cfg)
    (b,) = build_views(["scale_0.87"], SIZE, MEAN, STD, "bicubic", 0.9)
    assert torch.equal(a(image), b(image))


# ------------------------------------------------------------------ pure pieces


def test_aggregate_mean_probs_and_mean_logits():
    stack = np.array([[2.0, 0.0], [0.0, 1.0]])
    p0, p1 = 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(1))
    assert aggregate(stack, "mean_probs") == pytest.approx([(p0 + p1) / 2, 1 - (p0 + p1) / 2])
    q = 1 / (1 + math.exp(-0.5))  # softmax of the mean logits (1, 0.5)
    assert aggregate(stack, "mean_logits") == pytest.approx([q, 1 - q])
    assert aggregate(np.stack([stack, stack]), "mean_probs").shape == (2, 2)
    with pytest.raises(ConfigError):
        aggregate(stack, "median")


def test_uncertainty_margin_and_entropy():
    probs = np.array([[0.7, 0.2, 0.1], [1.0, 0.0, 0.0]])
    assert uncertainty(probs, "margin") == pytest.approx([0.5, 1.0])
    h = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1))
    assert uncertainty(probs, "entropy") == pytest.approx([h, 0.0])
    assert is_uncertain(probs, "margin", 0.6).tolist() == [True, False]
    assert is_uncertain(probs, "entropy", 0.1).tolist() == [True, False]


# ------------------------------------------------------------------ fixed TTA


def test_fixed_tta_averages_the_first_n_views_of_every_image():
    images = [_image(i) for i in range(5)]
    views = _views(DEFAULT_VIEWS)
    model = _LinearModel()
    result = fixed_tta(model, images, views, n=3, batch_size=4, aggregate="mean_probs")
    expected = np.stack(
        [aggregate(torch.stack([model(v(im)[None])[0] for v in views[:3]]), "mean_probs") for im in images]
    )
    np.testing.assert_allclose(result.probs, expected, rtol=0, atol=1e-12)
    assert result.passes.tolist() == [3] * 5 and result.total_passes == 15


def test_fixed_tta_temperature_divides_the_logits():
    images, views, forward = _lookup(np.random.default_rng(0).normal(size=(4, 3, 6)) * 4)
    hot = fixed_tta(forward, images, views, 3, 5, "mean_logits", temperature=2.0)
    scaled = fixed_tta(lambda b: forward(b) / 2.0, images, views, 3, 5, "mean_logits")
    np.testing.assert_allclose(hot.probs, scaled.probs, atol=1e-12)


def test_fixed_tta_rejects_more_views_than_listed():
    images, views, forward = _lookup(np.zeros((2, 3, 4)))
    with pytest.raises(ConfigError, match="tta.n"):
        fixed_tta(forward, images, views, 4, 8)


# ------------------------------------------------------------------ adaptive TTA


def _cfg(**kw):
    base = dict(mode="adaptive", first_views=2, max_views=6, threshold=0.2, stable_views=99)
    base.update(kw)
    return TTAConfig(**base)


@pytest.mark.parametrize("how", ["mean_probs", "mean_logits"])
def test_adaptive_equals_fixed_max_views_when_every_image_stays_uncertain(how):
    images = [_image(i) for i in range(7)]
    views = _views(DEFAULT_VIEWS)
    model = _LinearModel()
    cfg = _cfg(threshold=1.01, aggregate=how)  # margins never reach 1.01
    adaptive = adaptive_tta(model, images, views, cfg, batch_size=4)
    fixed = fixed_tta(model, images, views, 6, batch_size=4, aggregate=how)
    assert np.array_equal(adaptive.probs, fixed.probs)
    assert adaptive.passes.tolist() == [6] * 7 and adaptive.total_passes == 42


def test_adaptive_equals_first_k_when_nothing_is_uncertain():
    images = [_image(i) for i in range(7)]
    views = _views(DEFAULT_VIEWS)
    model = _LinearModel()
    adaptive = adaptive_tta(model, images, views, _cfg(threshold=0.0), batch_size=4)
    fixed = fixed_tta(model, images, views, 2, batch_size=4)
    assert np.array_equal(adaptive.probs, fixed.probs)
    assert adaptive.total_passes == 14


def test_only_uncertain_images_get_more_views_until_confident():
    # image 0: confident at once; image 1: uncertain for 2 views, then a decisive 3rd view.
    z = np.zeros((2, 5, 2))
    z[0, :, 0] = 5.0
    z[1, 2, 0] = 8.0
    images, views, forward = _lookup(z)
    res = adaptive_tta(forward, images, views, _cfg(max_views=5, threshold=0.3), batch_size=8)
    assert res.passes.tolist() == [2, 3]
    assert res.predictions.tolist() == [0, 0]


def test_stable_top_class_stops_extra_views():
    # Always uncertain (margin ~0.05) but class 0 is always on top: stops after S=3 views.
    z = np.tile([0.1, 0.0], (1, 6, 1))
    images, views, forward = _lookup(z)
    assert adaptive_tta(forward, images, views, _cfg(stable_views=3), 4).passes.tolist() == [3]
    # Running mean logits 0.1, -0.1, 0.1, ...: the top class flips every view, never holds 3.
    z_flip = np.zeros((1, 6, 2))
    z_flip[0, :, 0] = [0.1, -0.3, 0.5, -0.7, 0.9, -1.1]
    images, views, forward = _lookup(z_flip)
    cfg = _cfg(stable_views=3, aggregate="mean_logits")
    assert adaptive_tta(forward, images, views, cfg, 4).passes.tolist() == [6]


@pytest.mark.parametrize("budget", [10, 11, 13, 17, 25, 60])
def test_budget_is_never_exceeded(budget):
    z = np.random.default_rng(1).normal(size=(10, 6, 4))
    images, views, forward = _lookup(z)
    res = adaptive_tta(forward, images, views, _cfg(threshold=1.01, budget=budget), batch_size=3)
    assert res.total_passes == min(budget, 60) == res.passes.sum()
    assert (res.passes >= 1).all() and sum(forward.calls) == res.total_passes


def test_short_budget_goes_to_the_most_uncertain_images():
    # 4 images, K=2 (8 passes), budget 10: the two with the smallest margins get view 3.
    margins = [2.0, 0.1, 1.0, 0.0]
    z = np.zeros((4, 6, 2))
    z[:, :, 0] = np.array(margins)[:, None]
    images, views, forward = _lookup(z)
    res = adaptive_tta(forward, images, views, _cfg(threshold=1.01, budget=10), batch_size=8)
    assert res.passes.tolist() == [2, 3, 2, 3]


def test_budget_below_one_pass_per_image_is_a_config_error():
    images, views, forward = _lookup(np.zeros((5, 3, 2)))
    with pytest.raises(ConfigError, match="budget"):
        adaptive_tta(forward, images, views, _cfg(max_views=3, budget=4), 2)


@pytest.mark.parametrize("uncertainty_kind,threshold", [("margin", 0.35), ("entropy", 0.9)])
def test_adaptive_result_does_not_depend_on_batch_size(uncertainty_kind, threshold):
    images = [_image(i, w=20 + i, h=18) for i in range(9)]
    views = _views(DEFAULT_VIEWS)
    cfg = _cfg(max_views=10, uncertainty=uncertainty_kind, threshold=threshold, stable_views=4, budget=40)
    results = [adaptive_tta(_LinearModel(), images, views, cfg, batch_size=bs) for bs in (1, 3, 64)]
    assert len(set(results[0].passes.tolist())) > 1  # some images did get extra views
    for other in results[1:]:
        np.testing.assert_allclose(other.probs, results[0].probs, rtol=0, atol=1e-9)
        assert other.passes.tolist() == results[0].passes.tolist()


def test_rounds_pack_pairs_from_all_images_into_full_batches():
    z = np.zeros((10, 4, 2))  # all uncertain (margin 0), no stable rule → 10 x 4 views
    images, views, forward = _lookup(z)
    adaptive_tta(forward, images, views, _cfg(max_views=4, first_views=2), batch_size=4)
    # round 1: 20 pairs → 4,4,4,4,4; rounds 2 and 3: 10 pairs each → 4,4,2
    assert forward.calls == [4] * 5 + [4, 4, 2] * 2


def test_temperature_makes_more_images_uncertain():
    z = np.random.default_rng(2).normal(size=(30, 6, 5)) * 2.0
    images, views, forward = _lookup(z)
    cold = adaptive_tta(forward, images, views, _cfg(threshold=0.3, stable_views=4), 64)
    hot = adaptive_tta(forward, images, views, _cfg(threshold=0.3, stable_views=4), 64, temperature=3.0)
    assert hot.total_passes > cold.total_passes


def test_run_tta_dispatches_on_mode():
    z = np.random.default_rng(3).normal(size=(3, 4, 3))
    images, views, forward = _lookup(z)
    assert run_tta(forward, images, views, TTAConfig(mode="none"), 8).total_passes == 3
    assert run_tta(forward, images, views, TTAConfig(mode="fixed", n=3), 8).total_passes == 9
    cfg = TTAConfig(mode="adaptive", first_views=2, max_views=4, threshold=1.01, stable_views=9)
    assert run_tta(forward, images, views, cfg, 8).total_passes == 12


def test_with_a_real_timm_model():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=3).eval()
    data_cfg = timm.data.resolve_data_config({}, model=model)
    views = views_from_data_config(["identity", "hflip", "crop_tl"], data_cfg, image_size=32)
    images = [_image(i, w=40, h=36) for i in range(3)]
    result = fixed_tta(model, images, views, n=3, batch_size=4)
    assert result.probs.shape == (3, 3)
    np.testing.assert_allclose(result.probs.sum(1), 1.0, atol=1e-6)


def test_view_logits_returns_every_view_of_every_image_in_order():
    z = np.random.default_rng(4).normal(size=(5, 3, 4))
    images, views, forward = _lookup(z)
    out = view_logits(forward, images, views, batch_size=4)
    assert np.array_equal(out, z) and forward.calls == [4, 4, 4, 3]
