"""What a new user reads first (issue 29): tables piped whole, the passes line of a blend, README file names."""

from __future__ import annotations

from rich.table import Table

from imgclf.cli.console import RedactingConsole

HEADS = ["setting", "threshold", "views per image", "accuracy", "log-loss", "forward passes", "per image",
         "share of full passes", "wall s", "%"]


def _wide_table() -> Table:
    table = Table(title="TTA comparison: runs/a-long-run-name on the validation split")
    for head in HEADS:
        table.add_column(head)
    table.add_row("adaptive (threshold chosen on held-out halves)", "margin < 0.25", "1×500, 2×80, 10×20", "0.9012",
                  "0.3123", "1234", "2.06", "20.6 %", "12.3", "+0.4 %")
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
