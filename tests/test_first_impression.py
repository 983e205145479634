"""What a new user reads first (issue 29): tables piped whole, the passes line of a blend, README file names."""

from __future__ import annotations

from rich.table import Table

from imgclf.terminal import RedactingConsole
from imgclf.cli.tta_options import passes_text

HEADS = [
    "setting",
    "threshold",
    "views per image",
    "accuracy",
    "log-loss",
    "forward passes",
    "per image",
    "share of full passes",
    "wall s",
    "%",
]


def _wide_table() -> Table:
    table = Table(title="TTA comparison: runs/a-long-run-name on the validation split")
    for head in HEADS:
        table.add_column(head)
    table.add_row(
        "adaptive (threshold chosen on held-out halves)",
        "margin < 0.25",
        "1×500, 2×80, 10×20",
        "0.9012",
        "0.3123",
        "1234",
        "2.06",
        "20.6 %",
        "12.3",
        "+0.4 %",
    )
    return table


def test_a_wide_table_piped_is_sized_to_its_content_not_cut_at_80_columns(capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    console = RedactingConsole()  # capsys: stdout is not a terminal
    assert not console.is_terminal and console.width == 80
    console.print(_wide_table())
    out = capsys.readouterr().out
    assert "…" not in out
    assert all(head in out for head in HEADS)
    assert "| +0.4 % |" in out.replace("│", "|")  # the % column on one line, not wrapped
    assert console.width == 80  # only that call was widened


def test_a_narrow_table_and_text_piped_keep_the_console_width(capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    console = RedactingConsole()
    table = Table()
    table.add_column("a")
    table.add_row("1")
    console.print(table)
    console.print("word " * 30)
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80


def test_passes_of_one_model_are_views_per_image():
    assert (
        passes_text(2460, 1000, {"2": 900, "3": 40, "10": 60})
        == "forward passes 2460 (2.46/image; views per image: 2×900, 3×40, 10×60)"
    )


def test_passes_of_a_blend_with_fixed_views_are_views_per_image_per_model():
    text = passes_text(12 * 100, 100, {"12": 100}, models=6)
    assert text == "forward passes 1200 over 6 models (12.00/image; views per image per model: 2×100)"


def test_passes_of_a_blend_with_adaptive_tta_say_they_count_all_models_together():
    text = passes_text(12 * 16 + 27, 17, {"12": 16, "27": 1}, models=6, adaptive=True)
    assert "over 6 models" in text and "passes per image, all 6 models together: 12×16, 27×1" in text
    assert "views per image:" not in text


def test_every_file_the_readme_says_a_run_folder_holds_is_a_name_the_code_writes():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    table = readme.split("### What a run directory holds", 1)[1].split("\n### ", 1)[0]
    named = set(re.findall(r"[\w.-]+\.(?:csv|json|html|yaml|pt|ts|safetensors|onnx|db|png)\b", table))
    source = "\n".join(p.read_text() for p in (root / "imgclf").rglob("*.py"))
    assert "model.torchscript.pt" in named
    missing = sorted(name for name in named if f'"{name}"' not in source and f"'{name}'" not in source)
    assert missing == []


def test_the_cleaning_chart_legend_sits_outside_the_bars():
    import pandas as pd

    from imgclf.report.cleaning import class_chart

    rows = [{"label": f"class_{c}", "split": "train", "keep": k % 7 != 0} for c in range(5) for k in range(10 + 20 * c)]
    fig = class_chart(pd.DataFrame(rows))
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    legend, axes = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
    assert legend.y0 >= axes.y1 - 1  # above the plotting area, so no bar is covered
    assert legend.y1 <= fig.bbox.y1 + 1  # and still on the figure
