"""Start-up cost of the ``imgclf`` command: CPU time of ``--version``, ``--help`` and a config error.

Each command runs ``--runs`` times in a fresh interpreter (``python -m imgclf ...``, the checkout given by
``--root`` first on ``PYTHONPATH``); the figure is the median of the child's user + system CPU time, which
stays meaningful on a shared, loaded machine where wall time does not. Two reference rows frame it: the bare
interpreter, and ``import torch`` (what every command paid before the imports were made lazy). Usage::

    .venv/bin/python bench/startup.py                      # this checkout, 7 runs per command
    .venv/bin/python bench/startup.py --root ../old-clone  # the same figures for another checkout
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, report

ROOT = Path(__file__).resolve().parent.parent

#: (label, arguments after ``python``, exit code expected)
CASES = (
    ("python -c pass (the interpreter alone)", ["-c", "pass"], 0),
    ("imgclf --version", ["-m", "imgclf", "--version"], 0),
    ("imgclf --help", ["-m", "imgclf", "--help"], 0),
    ("imgclf train --help", ["-m", "imgclf", "train", "--help"], 0),
    (
        "imgclf train DIR --set train.epochz=1 (config error)",
        ["-m", "imgclf", "train", ".", "--set", "train.epochz=1"],
        2,
    ),
    ("python -c 'import torch' (for scale)", ["-c", "import torch"], 0),
)


def cpu_seconds(args: list[str], root: Path, expect: int) -> tuple[float, float]:
    """User + system CPU seconds and wall seconds of one ``python ARGS`` run."""
    env = {**os.environ, "PYTHONPATH": str(root.resolve()), "COLUMNS": "100"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as cwd:  # `python -m` puts the working directory first on sys.path
        done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != expect:
        raise SystemExit(f"python {' '.join(args)}: exit {done.returncode}, expected {expect}\n{done.stderr[-2000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="Runs per command; the median is reported.")
    parser.add_argument("--root", type=Path, default=ROOT, help="The checkout whose imgclf is measured.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures to this file.")
    args = parser.parse_args()
    rows = []
    for label, argv, expect in CASES:
        runs = [cpu_seconds(argv, args.root, expect) for _ in range(args.runs)]
        cpu = statistics.median(r[0] for r in runs)
        wall = statistics.median(r[1] for r in runs)
        rows.append(
            {
                "command": label,
                "cpu_s_median": round(cpu, 3),
                "cpu_s_min": round(min(r[0] for r in runs), 3),
                "cpu_s_max": round(max(r[0] for r in runs), 3),
                "wall_s_median": round(wall, 3),
            }
        )
    print(f"{'command':<56} {'CPU s (median)':>14} {'min':>6} {'max':>6} {'wall s':>7}")
    for row in rows:
        print(
            f"{row['command']:<56} {row['cpu_s_median']:>14.2f} {row['cpu_s_min']:>6.2f} {row['cpu_s_max']:>6.2f} "
            f"{row['wall_s_median']:>7.2f}"
        )
    report(
        "imgclf start-up", {"machine": machine(), "root": str(args.root), "runs": args.runs, "rows": rows}, args.json
    )


if __name__ == "__main__":
    main()
