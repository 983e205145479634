"""``train --devices N``: the same training on N local processes, with no port to pick.

The processes are started with ``torch.multiprocessing`` (spawn) and meet in a ``FileStore``
in a private temporary folder, so two launches on one machine can never collide. Each process
sets the variables torchrun would (RANK, WORLD_SIZE, ...) and calls the ordinary ``fit``; rank 0
shows progress, tracks and writes the run directory.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from imgclf.config import Config
from imgclf.errors import ConfigError
from imgclf.io import read_json
from imgclf.run.rundir import RunDir
from imgclf.runtime import usable_cpus
from imgclf.training.distributed import launched_world_size


def check_devices(devices: int, device: str) -> None:
    """Refuse, before anything starts, more processes than the machine can hold: one per GPU, or on the
    CPU one per core this process may use (``--devices 999`` on 2 cores started process after process)."""
    if launched_world_size() > 1:
        raise ConfigError("--devices launches its own processes; under torchrun, drop --devices")
    gpus = torch.cuda.device_count() if device != "cpu" else 0
    if gpus and devices > gpus:
        raise ConfigError(f"--devices {devices} but this machine has {gpus} GPU(s); use --devices {gpus} or fewer")
    cpus = usable_cpus()
    if not gpus and devices > cpus:
        raise ConfigError(
            f"--devices {devices} but training runs on the CPU, and this process may use {cpus} core(s); "
            f"use --devices {cpus} or fewer"
        )


def train_on_local_processes(
    devices: int, cfg: Config, dataset: Path, out: Path, resume: bool, tracking_uri: str | None
) -> dict:
    check_devices(devices, cfg.train.device)
    import torch.multiprocessing as mp

    threads = max(1, usable_cpus() // devices)
    with tempfile.TemporaryDirectory(prefix="imgclf-rendezvous-") as tmp:
        store = str(Path(tmp) / "store")
        mp.start_processes(
            _rank_main,
            args=(devices, store, threads, cfg, dataset, out, resume, tracking_uri),
            nprocs=devices,
            join=True,
            start_method="spawn",
        )
    return read_json(RunDir(out).summary)


def _rank_main(
    rank: int,
    world: int,
    store: str,
    threads: int,
    cfg: Config,
    dataset: Path,
    out: Path,
    resume: bool,
    tracking_uri: str | None,
) -> None:
    import torch.distributed as dist

    from imgclf.terminal import RichTrainingProgress, setup_logging
    from imgclf.tracking.session import tracking_session
    from imgclf.training.loop import fit

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(threads)
    setup_logging()
    use_cuda = cfg.train.device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group(
        "nccl" if use_cuda else "gloo", store=dist.FileStore(store, world), rank=rank, world_size=world
    )
    try:
        if rank == 0:
            with tracking_session(cfg, out, tracking_uri) as callbacks:
                fit(cfg, dataset, out, resume=resume, callbacks=[RichTrainingProgress(), *callbacks], preflight=False)
        else:
            fit(cfg, dataset, out, resume=resume, preflight=False)
    finally:
        dist.destroy_process_group()
