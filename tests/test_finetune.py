"""Strategies × BN policy on a tiny timm model: one AdamW step, then exactly which tensors moved."""

import pytest
import timm
import torch
from torch import nn

from imgclf.config import FinetuneConfig
from imgclf.errors import ConfigError
from imgclf.finetune import backbone_groups, check_fits, configure
from imgclf.models.classifier import ImageClassifier
from imgclf.models.heads import build_head

torch.set_num_threads(1)

STRATEGIES = ["full", "linear_probe", "gradual", "bn_only"]
POLICIES = ["train", "frozen_stats", "frozen"]
# epoch 0 (gradual: head phase) → (backbone non-BN params train, backbone BN affine train) before the BN policy
TRAINS_AT_EPOCH_0 = {
    "full": (True, True),
    "linear_probe": (False, False),
    "gradual": (False, False),
    "bn_only": (False, True),
}


def make_model(arch: str = "test_efficientnet", head: str = "mlp_bn") -> ImageClassifier:
    torch.manual_seed(0)
    backbone = timm.create_model(arch, num_classes=0)
    return ImageClassifier(backbone, build_head(head, backbone.num_features, 5, hidden=16))


def is_bn(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


def categories(model: ImageClassifier) -> dict[str, list[str]]:
    """Names (model-level) of every parameter and buffer, sorted into the kinds the tests reason about."""
    cats = {
        k: [] for k in ("backbone_weights", "backbone_bn_affine", "backbone_bn_stats", "head_params", "head_bn_stats")
    }
    for part in ("backbone", "head"):
        for mod_name, module in getattr(model, part).named_modules(prefix=part):
            for name, _ in module.named_parameters(recurse=False):
                key = (
                    "head_params" if part == "head" else ("backbone_bn_affine" if is_bn(module) else "backbone_weights")
                )
                cats[key].append(f"{mod_name}.{name}")
            for name, _ in module.named_buffers(recurse=False):
                assert is_bn(module)  # the toy models hold no other buffers
                cats[f"{part}_bn_stats"].append(f"{mod_name}.{name}")
    return cats


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: t.detach().clone() for n, t in [*model.named_parameters(), *model.named_buffers()]}


def changed(model: nn.Module, before: dict[str, torch.Tensor]) -> set[str]:
    now = dict([*model.named_parameters(), *model.named_buffers()])
    return {n for n, t in before.items() if not torch.equal(t, now[n])}


def train_step(model: ImageClassifier, finetuner, lr: float = 1e-2, weight_decay: float = 0.1) -> None:
    optimizer = torch.optim.AdamW(finetuner.param_groups(lr, weight_decay))
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    optimizer.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    for param in model.parameters():
        assert (param.grad is None) == (not param.requires_grad)  # frozen params never get a gradient
    optimizer.step()


def assert_moved(moved: set[str], names: list[str], expected: bool, what: str) -> None:
    assert names, f"no {what} in the toy model"
    if expected:
        assert not set(names) - moved, f"{what} should all change: {sorted(set(names) - moved)[:3]}"
    else:
        assert not set(names) & moved, f"{what} should not change: {sorted(set(names) & moved)[:3]}"


@pytest.mark.parametrize("sequence", ["fresh", "after_eval_pass"])
@pytest.mark.parametrize("bn", POLICIES)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_one_step_changes_exactly_the_expected_tensors(strategy, bn, sequence):
    model = make_model()
    cfg = FinetuneConfig(strategy=strategy, bn=bn)
    if strategy == "bn_only" and bn == "frozen":
        with pytest.raises(ConfigError, match="bn_only"):
            configure(model, cfg)
        return
    finetuner = configure(model, cfg)
    assert finetuner.on_epoch_start(0) is True
    assert finetuner.describe(0).startswith(strategy)
    model.train()
    if sequence == "after_eval_pass":
        # eval then train again: the BN policy must survive, and an eval pass must move nothing
        model.eval()
        before_eval = snapshot(model)
        with torch.no_grad():
            model(torch.randn(2, 3, 32, 32))
        assert not changed(model, before_eval)
        model.train()
        assert finetuner.on_epoch_start(1 if strategy != "gradual" else 0) is False

    backbone_bns = [m for m in model.backbone.modules() if is_bn(m)]
    assert all(m.training == (bn == "train") for m in backbone_bns)
    assert model.head[1].training  # the head's BatchNorm always trains

    before = snapshot(model)
    train_step(model, finetuner)
    moved = changed(model, before)

    cats = categories(model)
    weights_train, bn_affine_train = TRAINS_AT_EPOCH_0[strategy]
    assert_moved(moved, cats["backbone_weights"], weights_train, "backbone weights")
    assert_moved(moved, cats["backbone_bn_affine"], bn_affine_train and bn != "frozen", "backbone BN affine")
    assert_moved(moved, cats["backbone_bn_stats"], bn == "train", "backbone BN running stats")
    assert_moved(moved, cats["head_params"], True, "head params")
    assert_moved(moved, cats["head_bn_stats"], True, "head BN stats")


@pytest.mark.parametrize("bn", POLICIES)
def test_gradual_unfreezes_top_down_by_stage_and_keeps_bn_policy(bn):
    model = make_model()
    finetuner = configure(model, FinetuneConfig(strategy="gradual", bn=bn, head_epochs=1, stages=3, stage_epochs=2))
    groups = [[f"backbone.{n}" for n in names] for names in finetuner.groups]
    assert len(groups) == 6  # test_efficientnet: stem, 5 block groups (conv_head joins the last)
    cats = categories(model)
    bn_affine = set(cats["backbone_bn_affine"])
    # epoch → backbone groups unfrozen: stage 1 = top two groups, stage 2 = next two, stage 3 = all
    expected = {0: set(), 1: {4, 5}, 2: {4, 5}, 3: {2, 3, 4, 5}, 4: {2, 3, 4, 5}, 5: set(range(6)), 6: set(range(6))}
    messages = {}
    for epoch, unfrozen in expected.items():
        messages[epoch] = finetuner.describe(epoch) if finetuner.on_epoch_start(epoch) else None
        model.train()
        if epoch == 3:  # an eval pass between stages must not undo the policy
            model.eval()
            model.train()
        before = snapshot(model)
        train_step(model, finetuner)
        moved = changed(model, before)
        for layer, names in enumerate(groups):
            weights = [n for n in names if n not in bn_affine]
            affine = [n for n in names if n in bn_affine]
            assert_moved(moved, weights, layer in unfrozen, f"epoch {epoch} group {layer} weights")
            assert_moved(moved, affine, layer in unfrozen and bn != "frozen", f"epoch {epoch} group {layer} BN affine")
        assert_moved(moved, cats["backbone_bn_stats"], bn == "train", f"epoch {epoch} BN stats")
        assert_moved(moved, cats["head_params"], True, "head params")
    assert messages[0].startswith("gradual: head only")
    assert messages[1].startswith("gradual: unfroze stage 1/3 (blocks.3.0-blocks.4.0)")
    assert messages[3].startswith("gradual: unfroze stage 2/3 (blocks.1.0-blocks.2.0)")
    assert messages[5].startswith("gradual: unfroze stage 3/3 (conv_stem-blocks.0.0)")
    assert messages[2] is None and messages[4] is None and messages[6] is None


def test_gradual_with_no_head_epochs_starts_at_stage_one():
    model = make_model()
    finetuner = configure(model, FinetuneConfig(strategy="gradual", head_epochs=0, stages=2))
    assert finetuner.stage_at(0) == 1
    assert finetuner.on_epoch_start(0) is True
    assert finetuner.describe(0).startswith("gradual: unfroze stage 1/2")
    assert model.backbone.blocks[4][0].conv_pw.weight.requires_grad
    assert not model.backbone.conv_stem.weight.requires_grad


def test_frozen_param_is_bit_identical_after_adamw_step_with_weight_decay():
    model = make_model()
    stem = model.backbone.conv_stem.weight
    stem.grad = torch.ones_like(stem)  # a stale gradient from before freezing
    finetuner = configure(model, FinetuneConfig(strategy="linear_probe"))
    assert stem.grad is None
    before = stem.detach().clone()
    optimizer = torch.optim.AdamW(finetuner.param_groups(lr=1.0, weight_decay=1.0))
    optimizer.zero_grad(set_to_none=True)
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    optimizer.step()
    assert torch.equal(stem, before)
    assert stem not in optimizer.state  # AdamW skipped it entirely
    assert not torch.equal(model.head[0].weight, before.new_zeros(1))  # sanity: the head is a real param


def test_param_groups_cover_every_parameter_exactly_once():
    model = make_model()
    finetuner = configure(model, FinetuneConfig(strategy="gradual", layer_decay=0.7, head_lr=0.1))
    groups = finetuner.param_groups(1e-3, 0.05)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    assert len({g["name"] for g in groups}) == len(groups)
    for g in groups:
        assert g["params"] and g["lr"] > 0
        for p in g["params"]:
            assert g["weight_decay"] == (0.0 if p.ndim <= 1 else 0.05)  # no decay on biases / norm params


def test_param_groups_do_not_depend_on_the_epoch():
    # the optimiser is built once and resumed from a state_dict, so the grouping must be stable
    model = make_model()
    finetuner = configure(model, FinetuneConfig(strategy="gradual", stages=3))

    def layout():
        return [(g["name"], g["lr"], [id(p) for p in g["params"]]) for g in finetuner.param_groups(1e-3, 0.05)]

    first = layout()
    finetuner.on_epoch_start(5)
    assert layout() == first


def test_layer_decay_lowers_lr_from_head_to_stem():
    model = make_model()
    finetuner = configure(model, FinetuneConfig(layer_decay=0.5))
    lrs = {}
    for g in finetuner.param_groups(1.0, 0.05):
        lrs.setdefault(g["name"].rsplit(".", 1)[0], set()).add(g["lr"])
    assert all(len(v) == 1 for v in lrs.values())  # decay/no_decay halves of a layer share the lr
    order = [f"backbone.{i}" for i in range(6)] + ["head"]
    values = [lrs[k].pop() for k in order]
    assert values == sorted(values) and len(set(values)) == len(values)  # strictly increasing stem → head
    assert values == pytest.approx([0.5**6, 0.5**5, 0.5**4, 0.5**3, 0.5**2, 0.5, 1.0])


def test_head_lr_applies_to_head_params_only():
    model = make_model()
    finetuner = configure(model, FinetuneConfig(head_lr=0.1))
    head_ids = {id(p) for p in model.head.parameters()}
    for g in finetuner.param_groups(1e-3, 0.05):
        in_head = {id(p) in head_ids for p in g["params"]}
        assert len(in_head) == 1  # no group mixes head and backbone
        assert g["lr"] == (0.1 if in_head.pop() else 1e-3)
        assert g["lr_scale"] == pytest.approx(g["lr"] / 1e-3)


def test_no_weight_decay_names_from_timm_are_honoured():
    model = make_model("test_vit", head="linear")
    finetuner = configure(model, FinetuneConfig())
    for g in finetuner.param_groups(1e-3, 0.05):
        if any(p is model.backbone.pos_embed for p in g["params"]):
            assert g["weight_decay"] == 0.0  # a 3-d tensor, excluded by the model's no_weight_decay()
            break
    else:
        pytest.fail("pos_embed missing from the groups")


def test_bn_only_without_batchnorm_is_a_config_error():
    model = make_model("test_efficientnet_gn")
    with pytest.raises(ConfigError, match="no.*BatchNorm|BatchNorm.*none"):
        check_fits(FinetuneConfig(strategy="bn_only"), model)


def test_bn_only_with_frozen_bn_is_a_config_error():
    with pytest.raises(ConfigError, match="bn=frozen"):
        check_fits(FinetuneConfig(strategy="bn_only", bn="frozen"), make_model())


def test_more_stages_than_layer_groups_is_a_config_error():
    with pytest.raises(ConfigError, match="finetune.stages=7"):
        check_fits(FinetuneConfig(strategy="gradual", stages=7), make_model())


def test_backbone_without_group_matcher_groups_by_top_level_child():
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert backbone_groups(backbone) == [["0.weight", "0.bias"], ["1.weight", "1.bias"]]
    model = ImageClassifier(backbone, build_head("linear", 4, 3))
    finetuner = configure(model, FinetuneConfig(strategy="gradual", stages=2, layer_decay=0.5))
    finetuner.on_epoch_start(1)
    assert backbone[1].weight.requires_grad and not backbone[0].weight.requires_grad
    assert [g["lr"] for g in finetuner.param_groups(1.0, 0.0)] == [0.25, 0.25, 0.5, 1.0, 1.0]


def test_frozen_stats_survive_train_eval_train_and_reconfigure_back_to_train():
    model = make_model()
    configure(model, FinetuneConfig(bn="frozen_stats"))
    for mode in (True, False, True):
        model.train(mode)
        assert not any(m.training for m in model.backbone.modules() if is_bn(m))
    # a later policy that trains BN releases the layers again
    configure(model, FinetuneConfig(bn="train"))
    model.train()
    assert all(m.training for m in model.backbone.modules() if is_bn(m))
    assert model.keep_eval == ()


def test_trainable_parameters_counts_elements():
    model = make_model(head="linear")
    finetuner = configure(model, FinetuneConfig(strategy="linear_probe"))
    assert finetuner.trainable_parameters() == sum(p.numel() for p in model.head.parameters())
    finetuner = configure(model, FinetuneConfig(strategy="full"))
    assert finetuner.trainable_parameters() == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("strategy", ["full", "gradual"])
def test_freeze_bottom_keeps_the_lowest_groups_fixed_and_the_rest_training(strategy):
    model = make_model()
    groups = backbone_groups(model.backbone)
    cfg = FinetuneConfig(strategy=strategy, freeze_bottom=0.35, head_epochs=0, stages=1)
    finetuner = configure(model, cfg)
    n = finetuner.frozen_groups
    assert n == round(0.35 * len(groups)) and 0 < n < len(groups)
    assert f"the lowest {n} of {len(groups)} layer groups stay frozen" in finetuner.describe(0)
    model.train()
    before = snapshot(model)
    train_step(model, finetuner)
    moved = changed(model, before)
    frozen = [f"backbone.{name}" for names in groups[:n] for name in names]
    training = [f"backbone.{name}" for names in groups[n:] for name in names if not name.startswith("bn")]
    assert_moved(moved, frozen, False, "frozen bottom groups")
    assert_moved(moved, [t for t in training if "conv" in t], True, "upper backbone convolutions")
    assert "backbone.conv_stem.weight" in frozen
    # the frozen layers' running statistics still follow the data (bn=train): only the weights stay fixed
    assert "backbone.bn1.running_mean" in moved


def test_freeze_bottom_skips_the_backward_pass_through_the_frozen_layers():
    model = make_model()
    configure(model, FinetuneConfig(freeze_bottom=0.35))
    seen = []
    model.backbone.conv_stem.register_full_backward_hook(lambda *a: seen.append("stem"))
    model.backbone.blocks[-1].register_full_backward_hook(lambda *a: seen.append("top"))
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert seen == ["top"]  # autograd never reached the stem: no gradient work below the frozen groups


def test_freeze_bottom_out_of_range_is_a_config_error():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="freeze_bottom"):
        FinetuneConfig(freeze_bottom=1.0)
    with pytest.raises(ValidationError, match="freeze_bottom"):
        FinetuneConfig(freeze_bottom=-0.1)
