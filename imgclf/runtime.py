"""Where code runs: the device, mixed precision, memory format, and how many loader workers.

One rule each, used by training, inference, caching and export alike::

    device = resolve_device("auto")
    dtype = autocast_dtype(device, enabled=True)  # None on CPU: full precision
    workers = loader_workers(None)                 # this process's share of the CPUs
"""

from __future__ import annotations

import os
import re

import torch

from imgclf.errors import ConfigError

MAX_LOADER_WORKERS = 8  # past this, more decoding processes mostly contend for memory bandwidth


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def loader_workers(requested: int | None) -> int:
    """``requested`` if given, else this process's share of the CPUs (split among the local
    torchrun processes), less one for the process itself when the share is over two, at most 8.

    >>> loader_workers(3)
    3
    """
    if requested is not None:
        return requested
    share = usable_cpus() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(0, min(MAX_LOADER_WORKERS, share - 1 if share > 2 else share))


def cuda_available() -> bool:
    return torch.cuda.is_available()


def resolve_device(name: str | torch.device, option: str = "--device") -> torch.device:
    """``auto`` (every command's default) → CUDA when present, else CPU; ``cuda`` without a GPU is the user's
    error (``option`` names the setting in the message: ``--device`` or ``train.device``)."""
    name = str(name)
    if name not in ("auto", "cpu") and not re.fullmatch(r"cuda(:\d+)?", name):
        raise ConfigError(f"{option} must be cpu or cuda (or auto, cuda:N) (got {name!r})")
    if name.startswith("cuda") and not cuda_available():
        raise ConfigError(f"{option}={name} but no CUDA device is available; use {option}=auto or cpu")
    if name == "auto":
        name = "cuda" if cuda_available() else "cpu"
    return torch.device(name)


def autocast_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """bf16 where the GPU has it, else fp16 (with a GradScaler); None = full precision."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def use_channels_last(device: torch.device, enabled: bool) -> bool:
    """channels_last (NHWC) pays on CUDA tensor cores and in oneDNN's CPU convolutions: on a 2-core Xeon, lite0
    trained 1.37-1.39x and predicted 1.7-1.9x as fast as in the default layout (BENCHMARKS.md "Memory format");
    the model alone in NHWC is enough, a batch is converted by its first convolution."""
    return enabled and device.type in ("cuda", "cpu")


def is_main_process() -> bool:
    """True in rank 0 of an initialised process group, else when ``RANK`` (set by torchrun) is 0 or unset.
    Only rank 0 writes shared files and talks to tracking servers."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    try:
        return int(os.environ.get("RANK", "0")) == 0
    except ValueError:
        return True
