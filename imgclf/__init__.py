"""imgclf: fine-tune pretrained image classifiers and write competition submissions.

``from imgclf import train, predict, load_run, __version__`` — the notebook API, documented in
:mod:`imgclf.api` and docs/python-api.md. The functions import torch on first call, so importing a
light module (``imgclf.errors``) stays fast.
"""

from __future__ import annotations

from typing import Any

__all__ = ["__version__", "load_run", "predict", "train"]


def train(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Fine-tune a backbone on a dataset, as ``imgclf train``; see :func:`imgclf.api.train`."""
    from imgclf.api import train as _train

    return _train(*args, **kwargs)


def predict(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Write a submission for images, as ``imgclf predict``; see :func:`imgclf.api.predict`."""
    from imgclf.api import predict as _predict

    return _predict(*args, **kwargs)


def load_run(*args: Any, **kwargs: Any) -> Any:
    """A finished run ready for inference; see :func:`imgclf.api.load_run`."""
    from imgclf.api import load_run as _load_run

    return _load_run(*args, **kwargs)


def __getattr__(name: str) -> Any:
    # __version__ on first use: importlib.metadata costs 50 ms that `imgclf --help` need not pay.
    if name != "__version__":
        raise AttributeError(f"module 'imgclf' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("imgclf")
    except PackageNotFoundError:  # a source checkout on PYTHONPATH, not installed
        return "0.0.0+unknown"
