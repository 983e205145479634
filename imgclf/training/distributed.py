"""Data-parallel training on PyTorch's own engine: ``torchrun`` + DistributedDataParallel.

``torchrun`` starts one process per device and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads them and joins the process
group (NCCL on CUDA, gloo on CPU). Without them (a plain ``imgclf train``) everything here is a
no-op for a world of one, so the loop has a single code path.

What the loop relies on:

- ``data.batch_size`` is the **global** batch: each of N processes takes ``batch_size / N``, so a
  config means the same optimisation on any number of processes (learning rate, schedule, BN).
- :func:`train_sampler` shards each epoch's permutation: process r takes items r, r+N, ... of it,
  so every global batch holds the same images as the one-process run's batch.
- Only rank 0 writes the run directory, shows progress and calls tracking callbacks
  (``DistContext.is_main``); metrics are summed over ranks (:func:`all_reduce_sums`).

Example::

    ctx = init_distributed(torch.device("cpu"))
    model = wrap_ddp(model, ctx)
    loss_sum, correct, seen = all_reduce_sums(ctx, [loss_sum, correct, seen])
    shutdown(ctx)
"""

from __future__ import annotations

import math

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from imgclf.errors import ConfigError


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank, the world size and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # we created the process group, so we destroy it

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_world_size() -> int:
    """``WORLD_SIZE`` as set by torchrun (1 when not launched by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: torch.device) -> DistContext:
    """Join the process group torchrun describes (or one the caller already initialised).

    ``device`` is the resolved ``train.device``; under CUDA each process takes ``cuda:LOCAL_RANK``.
    """
    if dist.is_available() and dist.is_initialized():
        rank, world, owns = dist.get_rank(), dist.get_world_size(), False
        local = int(os.environ.get("LOCAL_RANK", rank))
    else:
        world = launched_world_size()
        rank, local, owns = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world > 1
    if world == 1:
        return DistContext(device=device)
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {local} but this machine has {torch.cuda.device_count()} CUDA device(s); lower --nproc-per-node"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if owns:
        if device.type == "cuda":
            # device_id binds NCCL to this process's GPU at once (no guessing from the rank later)
            dist.init_process_group("nccl", init_method="env://", device_id=device)
        else:
            dist.init_process_group("gloo", init_method="env://")
    return DistContext(rank, world, local, device, owns)


def shutdown(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if not ctx.enabled:
        return
    if ctx.device.type == "cuda":
        dist.barrier(device_ids=[ctx.device.index])  # else NCCL guesses the device from the rank, and warns
    else:
        dist.barrier()


def all_reduce_sums(ctx: DistContext, values: list[float]) -> list[float]:
    """Element-wise sums over ranks (float64, on the process's device: NCCL reduces GPU tensors only)."""
    if not ctx.enabled:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def gather_objects(ctx: DistContext, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (small objects: index lists, logits)."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(ctx: DistContext, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def per_rank_batch(ctx: DistContext, batch_size: int) -> int:
    if batch_size % ctx.world_size:
        raise ConfigError(
            f"data.batch_size={batch_size} (the global batch) must divide evenly over {ctx.world_size} processes"
        )
    return batch_size // ctx.world_size


def train_sampler(ctx: DistContext, data: Dataset, seed: int) -> DistributedSampler:
    """Each epoch a permutation seeded from ``seed`` and the epoch (``set_epoch``), sharded by rank.

    ``drop_last`` trims the permutation to a multiple of the world size instead of padding it with
    repeats, so N processes see the same images per epoch as one process.
    """
    return DistributedSampler(data, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed, drop_last=True)


def eval_indices(ctx: DistContext, n: int) -> list[int]:
    """This rank's share of an evaluation set: items rank, rank+N, ... (no padding, no repeats)."""
    return list(range(ctx.rank, n, ctx.world_size))


def wrap_ddp(model: nn.Module, ctx: DistContext) -> nn.Module:
    """DistributedDataParallel over the parameters that train *now*.

    DDP fixes its gradient buckets when it wraps, so a parameter unfrozen later would never be
    all-reduced: the loop wraps again whenever the fine-tuning strategy changes the trainable set.
    """
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def reduce_epoch(
    ctx: DistContext, loss: float, accuracy: float, seen: int, bad: list[int]
) -> tuple[float, float, int, list[int]]:
    """One epoch's mean loss and accuracy over all ranks' images, the total seen and every rank's bad items."""
    if not ctx.enabled:
        return loss, accuracy, seen, bad
    scored = math.isfinite(accuracy)  # NaN: no class accuracy (label sets, values), on every rank alike
    loss_sum, correct, total = all_reduce_sums(ctx, [loss * seen, round(accuracy * seen) if scored else 0, seen])
    total = int(total)
    bad_all = sorted({i for part in gather_objects(ctx, bad) for i in part})
    return loss_sum / max(total, 1), correct / max(total, 1) if scored else float("nan"), total, bad_all
