"""``data.batch_size=auto``: the largest batch that fits a share of the GPU's memory, found by a short probe.

As Ultralytics' ``batch=-1`` does: one forward, backward and AdamW step of the run's own model at the training size
for each of :data:`PROBE_BATCHES`, reading ``torch.cuda.max_memory_allocated`` after each; a straight line through
the points (memory = fixed + per image × batch) gives the batch at which the line reaches :data:`MEMORY_SHARE` of the
card. That batch is rounded down to a multiple of 8, kept below the first probe that ran out of memory, within
[1, :data:`MAX_BATCH`] and at most the training images. The probe runs on a copy of the model with every layer
trainable, so gradual unfreezing never needs more than was measured; the 40 % left covers what the probe does not
hold (the EMA copy, cuDNN's workspace, the allocator's fragmentation, `train.compile`'s graphs).

The learning rate does not follow the batch: ``train.lr`` is used as set, whatever batch ``auto`` picks. Linear
scaling from the default batch of 32 would multiply AdamW's fine-tuning rate by up to 32 at batch 1024, far past
the rates fine-tuning tolerates; a larger batch instead makes fewer, less noisy steps per epoch.

On the CPU ``auto`` is the config's default batch, with one log line. The resolved number is what the run's
``config.yaml`` holds, so a resume trains on with the same batch without probing again.

Example (the search alone, with a memory model in place of the GPU)::

    fitted_batch(lambda b: 1e9 + 50e6 * b, total=16e9, images=10_000)   # (0.6 × 16e9 - 1e9) / 50e6 = 172 → 168
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

import numpy as np
import torch

from imgclf.config import Config, DataConfig, with_overrides
from imgclf.errors import ConfigError
from imgclf.runtime import autocast_dtype, use_channels_last
from imgclf.training.distributed import DistContext, broadcast_object

log = logging.getLogger("imgclf")

MEMORY_SHARE = 0.6  # of the card's total memory, as Ultralytics' default fraction
PROBE_BATCHES = (2, 4, 8, 16)
MAX_BATCH = 1024
DEFAULT_BATCH: int = DataConfig.model_fields["batch_size"].default  # what auto means on the CPU

MemoryProbe = Callable[[int], float]  # batch → peak bytes; raises torch.cuda.OutOfMemoryError when it does not fit


def fitted_batch(memory_at: MemoryProbe, total: float, images: int, share: float = MEMORY_SHARE) -> int:
    """The batch whose fitted memory stays within ``share`` of ``total`` bytes (see the module docstring).

    >>> fitted_batch(lambda b: 1_000 + 100 * b, total=10_000, images=5_000)   # (6000 - 1000) / 100 = 50
    48
    """
    points: list[tuple[int, float]] = []
    too_big = None
    for batch in PROBE_BATCHES:
        try:
            points.append((batch, float(memory_at(batch))))
        except torch.cuda.OutOfMemoryError:
            too_big = batch
            break
    if not points:
        chosen = 1.0
    elif len(points) == 1:
        chosen = points[0][0]
    else:
        slope, fixed = np.polyfit([b for b, _ in points], [m for _, m in points], 1)
        chosen = (share * total - fixed) / slope if slope > 0 else MAX_BATCH
    if too_big is not None:
        chosen = min(chosen, too_big - 1)
    batch = int(chosen) // 8 * 8 if chosen >= 8 else int(chosen)
    return max(1, min(batch, MAX_BATCH, images))


def cuda_memory_probe(model: torch.nn.Module, cfg: Config, size: int, device: torch.device) -> MemoryProbe:
    """``batch → peak bytes`` of one training step of a copy of ``model`` at ``size`` px on ``device``, under the run's
    autocast and memory format. One step at batch 1 first, so AdamW's state is held in every measurement."""
    probe = copy.deepcopy(model).to(device).train()
    if use_channels_last(device, cfg.train.channels_last):
        probe.to(memory_format=torch.channels_last)
    for p in probe.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=0.0)
    dtype = autocast_dtype(device, cfg.train.amp)

    def memory_at(batch: int) -> float:
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        x = torch.randn(batch, 3, size, size, device=device)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = probe(x).float().logsumexp(1).mean()
        loss.backward()
        optimizer.step()
        torch.cuda.synchronize(device)
        return float(torch.cuda.max_memory_allocated(device))

    memory_at(1)
    return memory_at


def resolve_batch_size(
    cfg: Config,
    model: torch.nn.Module,
    size: int,
    images: int,
    ctx: DistContext,
    probe: MemoryProbe | None = None,
    total: float = 0.0,
) -> Config:
    """``cfg`` with ``data.batch_size=auto`` replaced by a number, the global batch (a config with a number comes back
    as it is). Rank 0 probes its GPU and every rank takes its answer; ``probe`` and ``total`` (bytes) stand in for a GPU."""
    if cfg.data.batch_size != "auto":
        return cfg
    if probe is None and ctx.device.type != "cuda":
        if ctx.is_main:
            log.info(
                "data.batch_size=auto: no GPU, so the batch is the default, %d (train.lr %g as set)",
                DEFAULT_BATCH,
                cfg.train.lr,
            )
        return with_overrides(cfg, {"data.batch_size": DEFAULT_BATCH})
    batch = None
    if ctx.is_main:
        if probe is None:
            total = torch.cuda.get_device_properties(ctx.device).total_memory
            probe = cuda_memory_probe(model, cfg, size, ctx.device)
        batch = fitted_batch(probe, total, max(1, images // ctx.world_size)) * ctx.world_size
        probe = None  # the probe's copy of the model goes before training starts
        torch.cuda.empty_cache()
        log.info(
            "data.batch_size=auto: %d, the largest batch (a multiple of 8) whose training step fits %d %% of the "
            "GPU's memory at %d px (probed at batches %s); train.lr %g as set: the learning rate does not follow "
            "the batch",
            batch,
            round(MEMORY_SHARE * 100),
            size,
            ", ".join(map(str, PROBE_BATCHES)),
            cfg.train.lr,
        )
    return with_overrides(cfg, {"data.batch_size": broadcast_object(ctx, batch)})


def refuse_auto_under_budget(cfg: Config) -> None:
    """``--budget`` times its warm-up steps at the config's batch before any training: it needs a number."""
    if cfg.data.batch_size == "auto":
        raise ConfigError(
            "--budget times its runs at a fixed batch: set data.batch_size to a number (auto is for "
            "training without --budget)"
        )
