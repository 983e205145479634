"""``imgclf export RUN_DIR --format onnx|torchscript|timm [--out PATH]``: call :func:`imgclf.infer.export.export_run`, print where it went."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from imgclf.terminal import console


def export_command(
    run_dir: Path = typer.Argument(
        ..., help="A finished run directory (its checkpoints/best.safetensors is exported)."
    ),
    format: str = typer.Option(
        "onnx",
        "--format",
        "-f",
        help="onnx (ONNX Runtime, opset 17), torchscript (traced) or timm (a folder of model.safetensors + config.json that timm.create_model('local-dir:FOLDER', pretrained=True) loads; linear head only).",
    ),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        help="File (folder for timm) to write (default RUN_DIR/export/model.onnx, model.torchscript.pt or timm/).",
    ),
) -> None:
    r"""Export the run's best checkpoint with its classes and preprocessing as metadata.

    onnx/torchscript input: float32 \[batch, 3, size, size], resized, centre-cropped and normalised as in
    preprocessing.json; output: logits (divide by the stored temperature before softmax).
    timm: a folder timm loads by itself, with the same logits (runs with the linear head).
    Export runs on the CPU whatever the machine has (no --device): the file it writes must not depend on one.
    """
    from imgclf.infer.export import export_run

    result = export_run(run_dir, format, out)
    what = {"onnx": f"opset {result['opset']}", "torchscript": "traced", "timm": "model.safetensors + config.json"}[
        result["format"]
    ]
    console.print(
        f"wrote {result['out']} ({result['format']}, {what}, {result['bytes'] / 1e6:.1f} MB): "
        f"{result['classes']} classes, input {result['image_size']}px, dynamic batch"
        + (
            f" — load with timm.create_model('local-dir:{result['out']}', pretrained=True)"
            if result["format"] == "timm"
            else ""
        ),
        highlight=False,
        soft_wrap=True,
    )
    if result["ensemble_members"]:
        console.print(
            f"note: {run_dir} is an ensemble of {result['ensemble_members']} models (ensemble.json), which "
            f"predict blends; this exported the first, the run itself — export {run_dir}/members/N for the others",
            highlight=False,
            soft_wrap=True,
        )
