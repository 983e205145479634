"""Facts about the running process that every stage asks the same way.

- :func:`is_main_process`: rank 0 of a process group or a ``torchrun`` launch (or a lone process).
  Only it writes shared files and talks to tracking servers.

Example::

    if is_main_process():
        tracker.on_fit_start(cfg, run_dir, info)
"""

from __future__ import annotations

import os


def is_main_process() -> bool:
    """True in rank 0 of an initialised process group, else when ``RANK`` (set by torchrun) is 0 or unset."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    try:
        return int(os.environ.get("RANK", "0")) == 0
    except ValueError:
        return True
