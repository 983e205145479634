"""``imgclf export RUN_DIR --format onnx|torchscript [--out FILE]``: call :func:`imgclf.infer.export.export_run`, print where it went."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from imgclf.cli.console import console


def export_command(
    run_dir: Path = typer.Argument(..., help="A finished run directory (its checkpoints/best.safetensors is exported)."),
    format: str = typer.Option("onnx", "--format", "-f", help="onnx (ONNX Runtime, opset 17) or torchscript (traced)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="File to write (default RUN_DIR/export/model.onnx or model.torchscript.pt)."),
) -> None:
    """Export the run's best checkpoint with its classes and preprocessing as metadata.

    Input: float32 \\[batch, 3, size, size], resized, centre-cropped and normalised as in
    preprocessing.json; output: logits (divide by the stored temperature before softmax).
    """
    from imgclf.infer.export import export_run

    result = export_run(run_dir, format, out)
    what = f"opset {result['opset']}" if result["opset"] else "traced"
    console.print(
        f"wrote {result['out']} ({result['format']}, {what}, {result['bytes'] / 1e6:.1f} MB): "
        f"{result['classes']} classes, input {result['image_size']}px, dynamic batch",
        highlight=False, soft_wrap=True,
    )
