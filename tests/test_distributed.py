"""Data-parallel training: two gloo processes equal one process on the same global batches; rank 0 alone writes."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from conftest import TINY, make_dataset
from imgclf.config import load_config
from imgclf.run.checkpoint import load_training_state
from imgclf.training.loop import fit
from imgclf.run.rundir import read_metrics
from imgclf.runtime import usable_cpus

# Two processes sum gradients in another order than one process, so results differ by float32
# rounding, which AdamW carries on: it divides each step by the gradient's running RMS, so an
# element whose gradient is near zero (float noise) moves by noise/RMS * lr. Measured after four
# steps: 7 of 236,383 values differ by more than 1e-6, the largest by 2e-5. Bars: every value
# within 1e-4 (one step at lr 1e-3 moves a weight by up to 1e-3), and at most 1 in 10,000 values
# beyond 1e-6.
PARAM_ATOL = 1e-4
CLOSE_ATOL, MAX_FRACTION_BEYOND = 1e-6, 1e-4
# Gradients: max abs difference per tensor at most 3e-5 of the tensor's largest entry (+1e-7 for
# tensors that are float noise around zero); measured: ~3e-6 of it.
GRAD_ATOL, GRAD_RTOL = 1e-7, 3e-5

# Identical global batches in both set-ups: no augmentation, no dropout, a global batch of 8
# (4 per process), 19 training images = two full steps per epoch, two epochs.
# The backbone's BatchNorm runs on its running statistics (finetune.bn=frozen_stats) and the head's
# BatchNorm1d trains, synchronised. Why not train every BN: a parameter that only shifts the input
# of a training-mode BN (e.g. a block's last BN bias feeding a conv + BN) has a gradient of exactly
# zero in exact arithmetic, i.e. float noise, and AdamW turns noise into a full lr-sized step of
# random sign, so such weights differ by ~lr between any two summation orders. The gradient test
# below covers synchronised training-mode BN in every backbone layer instead.
EQUIVALENCE = [
    *TINY,
    "data.augment=none",
    "model.dropout=0.0",
    "model.head=mlp_bn",
    "finetune.bn=frozen_stats",
    "train.sync_bn=true",
    "train.epochs=2",
    "data.batch_size=8",
    "train.patience=null",
]


def _tiny_model(sync: bool) -> nn.Module:
    from imgclf.models.backbones import create_model
    from imgclf.training.sync_bn import convert_sync_batchnorm

    torch.manual_seed(0)
    model, _ = create_model(load_config(overrides=[*TINY, "model.head=mlp_bn", "model.dropout=0.0"]).model, 3)
    return convert_sync_batchnorm(model, torch.device("cpu")) if sync else model


def _fixed_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 3, (8,), generator=g)


def _gradients(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    model.train()
    torch.nn.functional.cross_entropy(model(images), labels).backward()
    inner = getattr(model, "module", model)  # DDP's own names carry a "module." prefix
    out = {f"grad.{n}": p.grad.clone() for n, p in inner.named_parameters()}
    out.update({f"buffer.{n}": b.clone() for n, b in inner.named_buffers() if "running" in n})
    return out


def _worker(rank: int, world: int, store: str, data: str, base: str, overrides: list[str]) -> None:
    """One torchrun-like process: the environment torchrun sets, one process group met in a
    FileStore (no port to pick, so nothing can collide), then the ordinary fit()."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    env = {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_WORLD_SIZE": str(world)}
    os.environ.update(env)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", store=dist.FileStore(store, world), rank=rank, world_size=world)
    # One step of DDP + synchronised training-mode BN on this rank's half of a fixed batch.
    images, labels = _fixed_batch()
    share = slice(rank * 8 // world, (rank + 1) * 8 // world)
    grads = _gradients(DistributedDataParallel(_tiny_model(sync=True)), images[share], labels[share])
    if rank == 0:
        torch.save(grads, Path(base) / "ddp-grads.pt")
    # fit() uses the process group it finds (as under torchrun, where it would create it).
    # Rank 1 gets its own run directory paths: if it wrote anything, those folders would appear.
    out = Path(base) / ("run" if rank == 0 else f"rank{rank}")
    cfg = load_config(overrides=overrides)
    summary = fit(cfg, Path(data), out, callbacks=[_CopyAfterFirstEpoch()])  # callbacks run on rank 0 only
    (Path(base) / f"summary-rank{rank}.txt").write_text(repr(summary))
    # Resume the copy taken after epoch 1, as if the run had been killed then.
    fit(cfg, Path(data), Path(base) / ("resumed" if rank == 0 else f"rank{rank}-resumed"), resume=True)
    dist.destroy_process_group()


class _CopyAfterFirstEpoch:
    def on_fit_start(self, cfg, run_dir, info) -> None:
        self.run_dir = Path(run_dir)

    def on_epoch_end(self, row) -> None:
        if row["epoch"] == 1:
            shutil.copytree(self.run_dir, self.run_dir.parent / "resumed")


@pytest.fixture(scope="module")
def single_and_ddp(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    data = make_dataset(root / "data", per_class=8, test=0)
    fit(load_config(overrides=EQUIVALENCE), data, root / "single")
    (root / "ddp").mkdir()
    # fork, not spawn: the children inherit the imported modules instead of importing torch, timm
    # and imgclf again (seconds of CPU each); no process group or worker exists yet to inherit.
    mp.start_processes(
        _worker,
        args=(2, str(root / "store"), str(data), str(root / "ddp"), EQUIVALENCE),
        nprocs=2,
        join=True,
        start_method="fork",
    )
    return root


def test_ddp_gradients_and_bn_statistics_with_sync_bn_equal_one_process_on_the_whole_batch(single_and_ddp):
    ddp = torch.load(single_and_ddp / "ddp" / "ddp-grads.pt")
    single = _gradients(_tiny_model(sync=False), *_fixed_batch())
    assert ddp.keys() == single.keys()
    assert sum(k.startswith("buffer.backbone") and k.endswith("running_var") for k in single) > 5
    for name, value in single.items():
        assert (ddp[name] - value).abs().max() <= GRAD_RTOL * value.abs().max() + GRAD_ATOL, name


def test_two_gloo_processes_with_sync_bn_reach_the_parameters_of_one_process(single_and_ddp):
    single = load_training_state(single_and_ddp / "single" / "checkpoints" / "last.pt")["model"]
    ddp = load_training_state(single_and_ddp / "ddp" / "run" / "checkpoints" / "last.pt")["model"]
    assert single.keys() == ddp.keys()
    beyond, total = 0, 0
    for name, value in single.items():
        torch.testing.assert_close(ddp[name], value, atol=PARAM_ATOL, rtol=0, msg=name)
        if value.is_floating_point():
            beyond += int(((ddp[name] - value).abs() > CLOSE_ATOL).sum())
            total += value.numel()
    assert beyond <= MAX_FRACTION_BEYOND * total, f"{beyond} of {total} values differ by more than {CLOSE_ATOL}"
    # four optimiser steps (2 epochs x 2 batches) ran through the synchronised head BN and moved
    # its weights (ones at start) by more than ten times the tolerance
    assert int(ddp["head.1.num_batches_tracked"]) == 4
    assert (single["head.1.weight"] - 1).abs().max() > 10 * PARAM_ATOL


def test_ddp_metrics_are_the_one_process_metrics(single_and_ddp):
    single = read_metrics(single_and_ddp / "single" / "metrics.csv")
    ddp = read_metrics(single_and_ddp / "ddp" / "run" / "metrics.csv")
    assert [r["epoch"] for r in ddp] == [1, 2]
    for a, b in zip(single, ddp):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-4)
        assert b["train_accuracy"] == a["train_accuracy"]
        assert b["val_accuracy"] == a["val_accuracy"]  # validation sharded over ranks, gathered exactly
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=1e-4)


def test_a_resumed_ddp_run_ends_exactly_where_the_uninterrupted_one_does(single_and_ddp):
    base = single_and_ddp / "ddp"
    full = load_training_state(base / "run" / "checkpoints" / "last.pt")
    resumed = load_training_state(base / "resumed" / "checkpoints" / "last.pt")
    assert full["epoch"] == resumed["epoch"] == 1
    for name, value in full["model"].items():
        assert torch.equal(resumed["model"][name], value), name
    learning = ("epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy")  # not the timings
    rows = [[r[k] for k in learning] for r in read_metrics(base / "run" / "metrics.csv")]
    assert [[r[k] for k in learning] for r in read_metrics(base / "resumed" / "metrics.csv")] == rows


def test_only_rank_zero_writes_the_run_directory(single_and_ddp):
    base = single_and_ddp / "ddp"
    assert not (base / "rank1").exists() and not (base / "rank1-resumed").exists()
    run = base / "run"
    for name in (
        "config.yaml",
        "metrics.csv",
        "summary.json",
        "split.csv",
        "checkpoints/best.safetensors",
        "checkpoints/last.pt",
    ):
        assert (run / name).is_file(), name
    # every rank returns the same summary (rank 0's, broadcast)
    assert (base / "summary-rank0.txt").read_text() == (base / "summary-rank1.txt").read_text()


def test_global_batch_must_divide_over_the_processes():
    from imgclf.errors import ConfigError
    from imgclf.training.distributed import DistContext, per_rank_batch

    assert per_rank_batch(DistContext(rank=0, world_size=2), 8) == 4
    with pytest.raises(ConfigError, match="must divide evenly over 3 processes"):
        per_rank_batch(DistContext(rank=0, world_size=3), 8)


def test_cpu_sync_batchnorm_is_plain_batchnorm_in_one_process():
    from imgclf.training.sync_bn import CpuSyncBatchNorm, convert_sync_batchnorm

    torch.manual_seed(0)
    plain = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 2), nn.BatchNorm1d(2)
    )
    synced = convert_sync_batchnorm(copy.deepcopy(plain), torch.device("cpu"))
    assert sum(isinstance(m, CpuSyncBatchNorm) for m in synced.modules()) == 2
    assert synced.state_dict().keys() == plain.state_dict().keys()
    x = torch.randn(5, 3, 8, 8)
    torch.testing.assert_close(synced(x), plain(x))
    torch.testing.assert_close(synced[1].running_var, plain[1].running_var)


def test_sync_conversion_keeps_timms_fused_activation():
    from timm.layers import BatchNormAct2d

    from imgclf.training.sync_bn import CpuSyncBatchNorm, convert_sync_batchnorm

    layer = BatchNormAct2d(4, act_layer=nn.ReLU)
    converted = convert_sync_batchnorm(layer, torch.device("cpu"))
    assert isinstance(converted, CpuSyncBatchNorm) and isinstance(converted.act, nn.ReLU)
    x = torch.randn(3, 4, 5, 5)
    torch.testing.assert_close(converted(x), layer(x))
    assert (converted(x) >= 0).all()


def test_devices_flag_under_torchrun_is_a_one_line_error(tiny_dataset, tiny_overrides, tmp_path, monkeypatch, capsys):
    from imgclf.cli.main import run

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    args = ["train", str(tiny_dataset), "--out", str(tmp_path / "r"), "--devices", "2"]
    with pytest.raises(SystemExit) as exc:
        run([*args, *[a for o in tiny_overrides for a in ("--set", o)]])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "under torchrun, drop --devices" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(usable_cpus() < 2, reason="--devices 2 on the CPU needs two cores (one process per core)")
def test_devices_flag_trains_on_two_local_processes_that_meet_in_a_file_store(
    tiny_dataset, tiny_overrides, tmp_path, capsys
):
    from imgclf.cli.main import run

    out = tmp_path / "r"
    args = ["train", str(tiny_dataset), "--out", str(out), "--devices", "2", "--set", "data.batch_size=8"]
    run([*args, *[a for o in tiny_overrides for a in ("--set", o)]])
    assert "done:" in capsys.readouterr().out
    assert [r["epoch"] for r in read_metrics(out / "metrics.csv")] == [1, 2]
    assert (out / "summary.json").is_file() and (out / "checkpoints" / "best.safetensors").is_file()
