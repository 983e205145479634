"""Weights that timm would download (``model.weights=hub``) and timm/Hugging Face snapshot folders.

``hub`` is checked before anything is built: a file already in the local Hugging Face cache is
used from there (no network at all); with ``HF_HUB_OFFLINE=1``, or when the hub cannot be reached
within a second, the check fails at once with the ways out — instead of a minute of retries.

A *snapshot folder* is how an attached Kaggle dataset (or ``huggingface-cli download``) provides
weights: ``config.json`` (timm's, naming the ``architecture``) plus ``model.safetensors`` or
``pytorch_model.bin``.

Example::

    hub_problem("resnet18")            # None, or one line saying why the weights cannot be had
    snapshot_weights_file(Path("/kaggle/input/resnet18"))   # .../model.safetensors
"""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

SNAPSHOT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.bin",
)
PROBE_SECONDS = 1.0
KEYWORDS = ("hub", "none", "checkpoint")  # model.weights values that are never a folder
_FIX = "use model.weights=FOLDER (config.json + model.safetensors, e.g. a Kaggle dataset), a .safetensors file or embedded:lite0"


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` as set now (huggingface_hub reads it once, at import)."""
    value = os.environ.get("HF_HUB_OFFLINE")
    if value is None:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    return value.strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache as the environment says now (``HF_HUB_CACHE``, else ``HF_HOME``/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_source(arch: str) -> tuple[str | None, str | None]:
    """``(hf_hub_id, url)`` of timm's default pretrained weights for ``arch`` (both None: it has none)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    if cfg is None:
        return None, None
    return cfg.hf_hub_id or None, cfg.url or None


def cached_hub_file(arch: str) -> Path | None:
    """timm's pretrained file for ``arch`` when it is already in the local cache."""
    from huggingface_hub import try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    repo, url = hub_source(arch)
    if repo:
        repo_id, _, revision = repo.partition("@")
        cfg = get_pretrained_cfg(arch)
        names = ["model.safetensors", (cfg.hf_hub_filename if cfg else None) or "pytorch_model.bin"]
        for name in names:
            found = try_to_load_from_cache(repo_id, name, cache_dir=str(hub_cache_dir()), revision=revision or None)
            if isinstance(found, str):
                return Path(found)
    if url:
        import torch.hub

        candidate = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
        if candidate.is_file():
            return candidate
    return None


def hub_problem(arch: str, probe_seconds: float = PROBE_SECONDS) -> str | None:
    """Why ``model.weights=hub`` cannot work for ``arch`` now (None when it can), in well under a second."""
    repo, url = hub_source(arch)
    if not repo and not url:
        return f"model.weights=hub: timm has no pretrained weights for {arch}; {_FIX}"
    if cached_hub_file(arch) is not None:
        return None
    where = f"hf-hub:{repo}" if repo else url
    if hub_offline():
        return f"model.weights=hub: {where} is not in the HF cache {hub_cache_dir()} and HF_HUB_OFFLINE=1; {_FIX}"
    host = (
        urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname if repo else urlparse(url).hostname
    )
    if not _reachable(host or "huggingface.co", 443, probe_seconds):
        return f"model.weights=hub: {where} is not cached and {host} cannot be reached (no internet?); {_FIX}"
    return None


def _reachable(host: str, port: int, seconds: float) -> bool:
    """Whether a TCP connection to ``host`` opens within ``seconds`` (DNS included: run in a thread)."""
    result: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=seconds):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(seconds)
    return bool(result and result[0])


def is_snapshot_folder(weights: str | Path) -> bool:
    """Whether ``model.weights`` names a folder (never a keyword, even if a folder has that name)."""
    text = str(weights)
    return text not in KEYWORDS and not text.startswith("embedded:") and Path(text).is_dir()


def snapshot_weights_file(folder: Path) -> Path:
    """The weights file of a timm/HF snapshot folder; raises WeightsError naming what is missing."""
    from imgclf.errors import WeightsError

    for name in SNAPSHOT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise WeightsError(
        f"weights folder {folder} holds none of {', '.join(SNAPSHOT_FILES[:2])} (a timm/HF snapshot folder)"
    )


def snapshot_architecture(folder: Path) -> str | None:
    """The ``architecture`` named by a snapshot folder's ``config.json`` (None when it names none)."""
    from imgclf.errors import WeightsError

    config = folder / "config.json"
    if not config.is_file():
        return None
    try:
        data = json.loads(config.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(
            f"weights folder {folder}: config.json cannot be read ({str(exc).splitlines()[0]})"
        ) from None
    arch = data.get("architecture") if isinstance(data, dict) else None
    return arch if isinstance(arch, str) else None


def weights_problem(weights: str, arch: str | None) -> str | None:
    """One line on why ``model.weights`` cannot be used (None when it can): folders, hub availability."""
    if weights == "hub":
        return hub_problem(arch) if arch else None
    if not is_snapshot_folder(weights):
        return None
    folder = Path(weights)
    if not any((folder / name).is_file() for name in SNAPSHOT_FILES):
        return f"model.weights: folder {folder} holds no model.safetensors or pytorch_model.bin (a timm/HF snapshot folder)"
    named = snapshot_architecture(folder)
    if named and arch and named != arch:
        return f"model.weights: folder {folder} holds weights for {named}, not model.backbone={arch}"
    return None
