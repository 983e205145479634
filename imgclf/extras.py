"""The optional dependencies: what only some commands need comes as an extra, and a missing one is one clear line.

A plain ``pip install imgclf`` trains, evaluates and predicts. These add:

- ``imgclf[onnx]`` (onnx, onnxruntime): ``export --format onnx`` and ``predict --engine onnx``;
- ``imgclf[cleanlab]``: the label-issue candidates of ``imgclf cv`` (without it the CV runs and says it skipped them);
- ``imgclf[postgres]`` (psycopg2): ``--storage postgresql://...`` for sweeps shared between machines;
- ``imgclf[all]``: all of them.

Example::

    ort = require("onnxruntime", "predict --engine onnx")   # ConfigError naming the extra when it is missing
"""

from __future__ import annotations

import importlib
from types import ModuleType

from imgclf.errors import ConfigError

EXTRA_OF = {"onnx": "onnx", "onnxruntime": "onnx", "cleanlab": "cleanlab", "psycopg2": "postgres"}


def install_hint(module: str) -> str:
    return f"pip install 'imgclf[{EXTRA_OF[module]}]'"


def available(module: str) -> bool:
    """Whether ``module`` imports (it is imported: a package may be found and still fail to load)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def require(module: str, what: str) -> ModuleType:
    """``module``, imported; a ConfigError saying which extra ``what`` needs when it is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{what} needs the {module} package, an optional extra: {install_hint(module)}") from None
