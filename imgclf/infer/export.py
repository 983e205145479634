"""Export a run's best checkpoint for deployment, and run an exported ONNX model.

``timm``: a folder with ``model.safetensors`` and ``config.json`` (architecture, num_classes,
label_names, pretrained_cfg with the run's preprocessing, plus an ``imgclf`` entry with the
temperature) that timm loads on its own: ``timm.create_model("local-dir:FOLDER", pretrained=True)``.
The run's linear head becomes the timm model's own classifier, so the logits are the same; the
mlp heads have no place in a plain timm model and are refused.

The two graph formats take a float32 NCHW batch already resized, centre-cropped and normalised
with the run's preprocessing, and returning logits (before temperature):

- ``onnx``: opset 17 through the TorchScript-based exporter (it needs no extra package), a dynamic
  batch axis, checked with ``onnx.checker``; classes, preprocessing, backbone and temperature are
  stored as ``metadata_props`` (keys ``imgclf.*``, values JSON).
- ``torchscript``: a traced module; the same metadata as ``imgclf.json`` in its ``_extra_files``.

:class:`OnnxEngine` runs an exported model with ONNX Runtime and is called like the PyTorch model
(tensor in, logits out), so ``predict --engine onnx`` reuses the same decode, cache and eval
transform code as the PyTorch engine.

Example::

    info = export_run(Path("runs/demo"), "onnx")       # runs/demo/export/model.onnx
    engine = OnnxEngine(Path(info["out"]))
    engine.metadata["imgclf.classes"]                   # '["T-shirt/top", "Trouser", ...]'
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgclf.errors import ConfigError, RunDirError
from imgclf.extras import require
from imgclf.run.claim import check_file_out, check_folder
from imgclf.run.load import LoadedRun, load_run
from imgclf.io import atomic_stream
from imgclf.run.rundir import RunDir

log = logging.getLogger("imgclf")

FORMATS = ("onnx", "torchscript", "timm")
# 17 has every operator timm's EfficientNets need (SiLU as Sigmoid·Mul, ReLU6 as Clip,
# LayerNormalization) and every maintained ONNX Runtime reads it.
OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
_SUFFIX = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt", "timm": "timm"}
_FILE_SUFFIXES = {"onnx": (".onnx",), "torchscript": (".pt", ".pth")}  # what an earlier export of the kind is called


def export_metadata(loaded: LoadedRun) -> dict[str, str]:
    """What a deployment needs besides the weights: classes, preprocessing, temperature."""
    return {
        "imgclf.classes": json.dumps(loaded.classes),
        "imgclf.preprocessing": json.dumps(loaded.pre.to_dict()),
        "imgclf.backbone": json.dumps(loaded.cfg.model.backbone),
        "imgclf.temperature": json.dumps(loaded.temperature),
        "imgclf.input": json.dumps(
            f"{INPUT_NAME}: float32 [batch, 3, size, size], normalised with preprocessing mean/std"
        ),
        "imgclf.output": json.dumps(f"{OUTPUT_NAME}: float32 [batch, classes], divide by temperature before softmax"),
    }


def default_export_path(run_dir: Path, fmt: str) -> Path:
    return RunDir(Path(run_dir)).root / "export" / _SUFFIX[fmt]


def export_run(run_dir: Path, fmt: str = "onnx", out: Path | None = None) -> dict[str, Any]:
    """Export ``run_dir``'s best checkpoint to ``out`` (default ``RUN_DIR/export/model.<fmt>``)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out) if out else default_export_path(run_dir, fmt)
    if fmt == "timm":  # the folder is replaced whole: only a new or empty one, or an earlier timm export
        check_folder(out, "timm")
    else:
        check_file_out(out, "--out", _FILE_SUFFIXES[fmt])
    loaded = load_run(run_dir, "cpu")
    if fmt == "onnx":
        export_onnx(loaded, out)
    elif fmt == "timm":
        export_timm(loaded, out)
    else:
        export_torchscript(loaded, out)
    size = sum(f.stat().st_size for f in out.iterdir()) if out.is_dir() else out.stat().st_size
    return {
        "out": str(out),
        "format": fmt,
        "classes": len(loaded.classes),
        "image_size": loaded.pre.image_size,
        "bytes": size,
        "opset": OPSET if fmt == "onnx" else None,
        "ensemble_members": _ensemble_size(Path(run_dir)),
    }


def _ensemble_size(run_dir: Path) -> int | None:
    """How many models ``predict RUN_DIR`` blends when the run is also an ensemble (``train --budget``'s ensemble.json
    lists the run itself and ``members/N``); None for a single model. Export writes the run's own model only."""
    from imgclf.run.specs import read_ensemble_spec

    spec = RunDir(run_dir).ensemble_spec
    return len(read_ensemble_spec(spec)) if spec.is_file() else None


def timm_model(loaded: LoadedRun) -> torch.nn.Module:
    """The run as one plain timm model: its backbone weights, and its linear head as timm's classifier."""
    import timm

    head = loaded.cfg.model.head
    if head != "linear":
        raise ConfigError(
            f"--format timm: only the linear head exports to plain timm (this run has model.head={head}); "
            "use --format onnx or torchscript"
        )
    model = timm.create_model(loaded.cfg.model.backbone, pretrained=False, num_classes=len(loaded.classes))
    result = model.load_state_dict(loaded.model.backbone.state_dict(), strict=False)
    classifier = model.get_classifier()
    name = model.pretrained_cfg.get("classifier")
    names = (name,) if isinstance(name, str) else tuple(name or ())
    not_head = [k for k in result.missing_keys if not any(k.startswith(n + ".") for n in names)]
    if result.unexpected_keys or not_head or not isinstance(classifier, torch.nn.Linear):
        raise ConfigError(
            f"--format timm: {loaded.cfg.model.backbone} does not map onto a timm classifier; use --format onnx"
        )
    linear = next(m for m in loaded.model.head if isinstance(m, torch.nn.Linear))
    classifier.load_state_dict(linear.state_dict())
    return model.eval()


def export_timm(loaded: LoadedRun, out: Path) -> None:
    """Write ``out/model.safetensors`` + ``out/config.json`` (timm's own layout) and check the logits match."""
    import shutil
    import tempfile

    from timm.models import save_for_hf

    model = timm_model(loaded)
    example = torch.randn(
        2, 3, loaded.pre.image_size, loaded.pre.image_size, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        if not torch.allclose(model(example), loaded.model.to("cpu").eval()(example), atol=1e-4, rtol=1e-4):
            raise ConfigError(
                f"--format timm: the plain timm {loaded.cfg.model.backbone} does not reproduce the run's logits"
            )
    pre = loaded.pre
    data_config = {
        "input_size": (3, pre.image_size, pre.image_size),
        "mean": tuple(pre.mean),
        "std": tuple(pre.std),
        "interpolation": pre.interpolation,
        "crop_pct": pre.crop_pct,
        "crop_mode": "center",
    }
    extra = {
        "label_names": list(loaded.classes),
        "imgclf": {"temperature": loaded.temperature, "preprocessing": pre.to_dict()},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:  # a folder is written whole beside the target, then swapped in: never half an export
        save_for_hf(model, str(tmp), model_config=extra, safe_serialization=True, data_config=data_config)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _example_input(loaded: LoadedRun) -> torch.Tensor:
    # Batch 2, not 1: a batch of one could let the tracer fold the batch size into a reshape.
    size = loaded.pre.image_size
    return torch.zeros(2, 3, size, size)


def export_onnx(loaded: LoadedRun, out: Path, opset: int = OPSET) -> None:
    """Write an ONNX file with a dynamic batch axis and imgclf metadata; raise if the checker rejects it."""
    onnx = require("onnx", "ONNX export")

    model = loaded.model.to("cpu").eval()
    graph = io.BytesIO()  # built in memory: the one write to disk is ours, so a full disk is a DiskFullError
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of the dynamo one, which needs
        # onnxscript (not a dependency); its output is the same standard ONNX graph.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            model,
            (_example_input(loaded),),
            graph,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(graph.getvalue())
    for key, value in export_metadata(loaded).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto, full_check=True)
    with atomic_stream(out) as fh:
        fh.write(proto.SerializeToString())


def export_torchscript(loaded: LoadedRun, out: Path) -> None:
    """Write a traced TorchScript module with the metadata as ``imgclf.json`` in its extra files."""
    model = loaded.model.to("cpu").eval()
    with torch.no_grad(), warnings.catch_warnings():
        # torch.jit is deprecated in favour of torch.export, but TorchScript is still what C++
        # (libtorch) and many serving stacks load; the warnings say nothing the user can act on.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, _example_input(loaded))
        # to a stream of ours: torch.jit.save reports a full disk as its own RuntimeError, the stream as a DiskFullError
        with atomic_stream(out) as fh:
            torch.jit.save(traced, fh, _extra_files={"imgclf.json": json.dumps(export_metadata(loaded))})


def load_torchscript(path: Path) -> tuple[torch.jit.ScriptModule, dict[str, str]]:
    """The traced module and its imgclf metadata."""
    extra = {"imgclf.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return module, json.loads(extra["imgclf.json"] or "{}")


def onnx_providers(device: torch.device | str) -> list[str]:
    """ONNX Runtime's CUDA provider when ``device`` is CUDA and the installed runtime has it, else CPU."""
    ort = require("onnxruntime", "the ONNX engine")

    if torch.device(device).type == "cuda":
        if "CUDAExecutionProvider" in ort.get_available_providers():
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        log.warning("this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu); running ONNX on the CPU")
    return ["CPUExecutionProvider"]


class OnnxEngine:
    """An ONNX Runtime session called like the PyTorch model: ``engine(images) -> logits``."""

    def __init__(self, path: Path, device: torch.device | str = "cpu"):
        ort = require("onnxruntime", "the ONNX engine")

        self.path = Path(path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=onnx_providers(device))
        except Exception as exc:  # onnxruntime raises its own pybind types for a damaged or foreign file
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise RunDirError(
                f"{self.path} is not a model ONNX Runtime can load ({first}); delete it and run imgclf export again"
            ) from None
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)

    def eval(self) -> "OnnxEngine":
        return self  # stands in for nn.Module.eval() in code written for the PyTorch model

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        # Channels-last or sliced tensors must be made dense before they reach the runtime.
        batch = np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())
        (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})
        return torch.from_numpy(logits)


def onnx_engine_for(loaded: LoadedRun, device: torch.device | str = "cpu") -> LoadedRun:
    """``loaded`` with its model replaced by ONNX Runtime on ``RUN_DIR/export/model.onnx``.

    The file is (re-)exported when it is missing, older than ``best.safetensors``, or holds
    other classes or preprocessing than the run.
    """
    path = default_export_path(loaded.run.root, "onnx")
    best = loaded.run.best
    fresh = path.is_file() and path.stat().st_mtime >= best.stat().st_mtime
    engine = OnnxEngine(path, device) if fresh else None
    expected = export_metadata(loaded)
    keys = ("imgclf.classes", "imgclf.preprocessing")
    if engine is None or any(engine.metadata.get(k) != expected[k] for k in keys):
        log.info("exporting %s to %s for ONNX Runtime", best, path)
        try:
            export_onnx(loaded, path)
        except OSError as exc:
            raise RunDirError(f"cannot write the ONNX export {path}: {exc.strerror or exc}") from None
        engine = OnnxEngine(path, device)
    return replace(loaded, model=engine)
