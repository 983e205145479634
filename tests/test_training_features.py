"""timm's training tricks as config keys: EMA weights, mixup/cutmix on training batches only, and
gradient accumulation that equals one large batch."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from conftest import TINY, make_dataset
from imgclf.config import load_config
from imgclf.run.checkpoint import load_training_state, load_weights
from imgclf.training.loop import fit
from imgclf.training.step import Criterion, make_ema

# No batch statistics anywhere (BN uses its running statistics, no dropout, no augmentation):
# the only difference between two such runs is how the gradient of each step was summed.
EXACT = [
    *TINY,
    "finetune.bn=frozen_stats",
    "model.dropout=0.0",
    "data.augment=none",
    "train.deterministic=true",
    "train.label_smoothing=0.0",
    "train.patience=null",
]


def test_ema_moves_towards_the_model_by_its_warmed_up_decay():
    model = torch.nn.Linear(3, 2)
    ema = make_ema(model, decay=0.9)
    before = ema.module.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model, step=1000)  # warm-up over: decay is 0.9
    decay = ema.get_decay(1000)
    assert decay == pytest.approx(0.9, abs=1e-3)
    torch.testing.assert_close(ema.module.weight, decay * before + (1 - decay) * model.weight.detach())


def test_a_run_with_ema_keeps_and_validates_the_averaged_weights(tmp_path, tiny_dataset):
    out = tmp_path / "run"
    fit(load_config(None, [*TINY, "train.ema=true", "train.epochs=2", "train.patience=null"]), tiny_dataset, out)
    state = load_training_state(out / "checkpoints" / "last.pt")
    best = load_weights(out / "checkpoints" / "best.safetensors")
    assert "ema" in state
    differs = [k for k in best if best[k].is_floating_point() and not torch.equal(state["model"][k], state["ema"][k])]
    assert differs, "the EMA must differ from the raw weights after training"
    if (
        int(pd.read_csv(out / "metrics.csv")["val_accuracy"].idxmax()) == 1
    ):  # best = last epoch: best.safetensors is the EMA
        assert all(torch.equal(best[k], state["ema"][k]) for k in best)


def test_the_loop_gives_the_ema_its_step_so_a_short_run_is_not_stuck_at_the_initial_weights(
    tmp_path, tiny_dataset, monkeypatch
):
    """Without the step, timm's ModelEmaV3 uses the full decay from the first update: 0.999 over the ~100 steps of a
    budget proxy trial left 90 % of the initial (random-head) weights in the average — chance-level validation."""

    from imgclf.training import setup as setup

    steps = []

    def recording_ema(model, decay):
        ema = make_ema(model, decay)
        update = ema.update
        ema.update = lambda m, step=None: (steps.append(step), update(m, step=step))
        return ema

    monkeypatch.setattr(setup, "make_ema", recording_ema)
    out = tmp_path / "run"
    fit(load_config(None, [*TINY, "train.ema=true", "train.epochs=2", "train.patience=null"]), tiny_dataset, out)
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 2


def test_mixup_mixes_training_batches_and_leaves_odd_batches_alone():
    crit = Criterion(num_classes=3, label_smoothing=0.1, mixup=1.0)
    torch.manual_seed(0)
    images, labels = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    original = images.clone()
    mixed, soft = crit.mix(images, labels)  # timm mixes in place
    assert soft is not None and soft.shape == (4, 3) and not torch.equal(mixed, original)
    assert torch.allclose(soft.sum(1), torch.ones(4))
    odd = original[:3].clone()
    same, none = crit.mix(odd, labels[:3])
    assert none is None and torch.equal(same, original[:3])
    assert Criterion(3, 0.1).mix(original, labels)[1] is None  # mixup off: nothing changes


def test_validation_never_sees_mixed_images(tmp_path, tiny_dataset):
    """With mixup and cutmix on, the stored validation logits are the plain model's on plain images."""
    from imgclf.data.datasets import ImageDataset
    from imgclf.data.transforms import eval_transform
    from imgclf.data.images import load_rgb
    from imgclf.run.load import load_run

    out = tmp_path / "run"
    fit(load_config(None, [*TINY, "train.mixup=1.0", "train.cutmix=1.0", "train.epochs=1"]), tiny_dataset, out)
    loaded = load_run(out)
    frame = pd.read_csv(out / "val_predictions.csv")
    data = ImageDataset(
        [tiny_dataset / "train" / p if not (tiny_dataset / p).exists() else tiny_dataset / p for p in frame["path"]],
        [0] * len(frame),
        eval_transform(loaded.pre),
        load_rgb,
    )
    batch = torch.stack([data[i][0] for i in range(len(frame))])
    with torch.no_grad():
        logits = loaded.model(batch)
    stored = torch.tensor(frame[[c for c in frame.columns if c.startswith("logit_")]].to_numpy(), dtype=torch.float32)
    torch.testing.assert_close(logits, stored, atol=1e-4, rtol=1e-4)


def test_accumulating_two_half_batches_equals_one_full_batch(tmp_path):
    dataset = make_dataset(tmp_path / "data", per_class=10, test=0)  # 24 training images: 3 batches of 8, 6 of 4
    big = fit(load_config(None, [*EXACT, "data.batch_size=8", "train.epochs=1"]), dataset, tmp_path / "big")
    small = fit(
        load_config(None, [*EXACT, "data.batch_size=4", "train.accumulate=2", "train.epochs=1"]),
        dataset,
        tmp_path / "acc",
    )
    assert big["train_images"] == small["train_images"] == 24
    a, b = (load_weights(tmp_path / name / "checkpoints" / "best.safetensors") for name in ("big", "acc"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=2e-5, rtol=1e-4)
    plain = load_weights(tmp_path / "acc" / "checkpoints" / "best.safetensors")
    assert plain.keys() == a.keys()
