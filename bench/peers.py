"""imgclf against its peers at the same wall-clock budget, one after another on this machine.

Runs, in this process tree (subprocesses, one at a time):

1. ``naive_finetune.py`` (``../shared/baselines/``; flips hv) at a size and epoch count planned to
   fill the budget: a short probe times the same model's training step at ``--probe-res`` px,
   the largest size in ``SIZES`` that allows ``--min-epochs`` epochs (rate scaled as 1/px²) is
   taken, the probe is repeated at that size, and as many epochs as fit are run (``--res`` and
   ``--epochs`` fix them instead);
2. ``fastai_finetune.py`` (flip-vert) at the same size, with the epochs that fit (it trains on
   80 % and validates every epoch) — or a row saying fastai is not installed (``pip install imgclf[bench]``);
3. ``imgclf train DATASET --budget Nm`` when ``imgclf train --help`` offers ``--budget``; otherwise a
   *fallback* row: plain ``imgclf train`` with ``--set data.image_size=… --set train.epochs=…``
   planned like fastai's, labelled as such;
4. ``imgclf cv DATASET --budget Nm`` when that command and flag exist; otherwise a row saying so.

imgclf runs are scored with ``imgclf predict RUN DATASET/test --category name`` against LABELS
(a CSV with ``Id`` and ``label`` columns: the demo's ``answers/test_labels.csv`` is one); wall
time includes predict. It prints one table (system, test accuracy, wall time, both relative to the
naive script) and writes it, with the command, machine and date, to ``OUT/peers.md`` (logs of
every run beside it).

Usage::

    python bench/datasets.py noup bench/.data/noup
    python bench/peers.py bench/.data/noup/dataset bench/.data/noup/answers/test_labels.csv --budget 10
    python bench/peers.py DATASET LABELS --budget 2 --res 64 --epochs 1      # a smoke run

One accuracy on the demo's 1,000 test images has a standard error of ~0.9 pp, the size of the gaps measured;
``bench/datasets.py KIND OUT --extra-test 5000`` adds 5,000 more test images from the official test split (same
training images), for ~0.4 pp. The table's last line states the precision of its figures.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import math
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASELINES = HERE.parent.parent / "shared" / "baselines"
SIZES = (224, 192, 160, 128, 112, 96, 80, 64, 48, 32)
_RESULT = re.compile(r"(\w+): test accuracy ([0-9.]+) on (\d+); train (\d+) s")


@dataclass
class Row:
    system: str
    settings: str
    accuracy: float | None = None
    wall_s: float | None = None
    note: str = ""


@dataclass(frozen=True)
class Plan:
    res: int
    epochs: int
    images_per_s: float  # planned training rate at ``res`` (from the probe)

    def epochs_for(self, budget_s: float, n_train: float, n_eval: float = 0.0, share: float = 1.0) -> int:
        """Epochs of ``n_train`` training images (+ ``n_eval`` scored ones) that fit ``share`` of the budget."""
        per_epoch = (n_train + n_eval / 3.0) / self.images_per_s  # a forward pass costs about a third of a step
        return max(1, int(share * budget_s // per_epoch))


def count_train_images(dataset: Path) -> int:
    return sum(1 for p in (dataset / "train").glob("*/*") if p.is_file())


def probe_rate(baselines: Path, res: int, classes: int, steps: int = 8, batch: int = 32, warmup: int = 3) -> float:
    """Training images/s of the baselines' model at ``res`` px, after ``warmup`` steps (with one warm-up step and 3
    timed ones it measured 36 images/s at 128 px where the naive script then ran at 47: its plan used 368 s of 600)."""
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(baselines))
    from lite_to_timm import create_tf_lite

    model = create_tf_lite(0, num_classes=classes).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = torch.randn(batch, 3, res, res), torch.randint(0, classes, (batch,))
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def plan_naive(
    budget_s: float,
    n_train: int,
    probe: tuple[int, float],
    *,
    res: int | None,
    epochs: int | None,
    min_epochs: int,
    load_share: float = 0.9,
) -> Plan:
    """Largest size allowing ``min_epochs`` epochs in ``load_share`` of the budget (rate scales as 1/px²)."""
    probe_res, probe_ips = probe

    def rate(r: int) -> float:
        return probe_ips * (probe_res / r) ** 2

    if res is None:
        fits = [r for r in SIZES if load_share * budget_s * rate(r) / n_train >= min_epochs]
        res = fits[0] if fits else SIZES[-1]
    plan = Plan(res, 1, rate(res))
    return Plan(res, epochs or plan.epochs_for(budget_s, n_train, share=load_share), rate(res))


def run_logged(cmd: list[str], log: Path, cwd: Path, timeout_s: float) -> tuple[int, float, str]:
    """Run ``cmd`` with output to ``log`` (its name made file-safe); return (exit code, wall seconds, output)."""
    log = log.with_name(re.sub(r"[^\w.-]+", "-", log.name).strip("-"))
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        # Its own process group, so a run over the limit is stopped with its DataLoader workers.
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = 124
    return rc, time.perf_counter() - t0, log.read_text()


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def failure(what: str, rc: int, text: str, timeout_s: float) -> str:
    if rc == 124:
        return f"{what} stopped: over the {timeout_s:.0f} s limit (3 × budget + 5 min)"
    return f"{what} failed (exit {rc}): {last_line(text)}"


def baseline_row(name: str, cmd: list[str], settings: str, out: Path, timeout_s: float) -> Row:
    rc, wall, text = run_logged(cmd, out / f"{name}.log", out, timeout_s)
    found = _RESULT.findall(text)
    if rc != 0 or not found:
        return Row(name, settings, None, wall, failure("run", rc, text, timeout_s))
    _, acc, n, train_s = found[-1]
    return Row(name, settings, float(acc), wall, f"train {train_s} s on its own clock; {n} test images")


def score(submission: Path, labels: Path) -> float:
    """Accuracy of a submission (first column id, second class name) against LABELS (Id,label)."""
    with open(labels, newline="", encoding="utf-8-sig") as fh:
        truth = {r["Id"]: r["label"] for r in csv.DictReader(fh)}
    with open(submission, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))[1:]
    predicted = {r[0]: r[1] for r in rows if len(r) >= 2}
    return sum(predicted.get(i) == label for i, label in truth.items()) / len(truth)


def imgclf(*args: str) -> list[str]:
    return [sys.executable, "-m", "imgclf", *args]


def has_budget(command: str) -> bool | None:
    """Whether ``imgclf COMMAND --help`` offers ``--budget`` (not ``--tta-budget``); None: no such command."""
    done = subprocess.run(imgclf(command, "--help"), capture_output=True, text=True, env=_wide_env())
    if done.returncode != 0:
        return None
    return re.search(r"(?<![\w-])--budget\b", done.stdout) is not None


def _wide_env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "200"}


def imgclf_row(name: str, train_cmd: list[str], settings: str, run: Path, args, out: Path, timeout_s: float) -> Row:
    """Train (or cv), then predict the test folder and score it; wall time covers both."""
    rc, wall, text = run_logged(train_cmd, out / f"{name}.log", out, timeout_s)
    if rc != 0:
        return Row(name, settings, None, wall, failure("training", rc, text, timeout_s))
    submission = run / "peers_submission.csv"
    predict = imgclf("predict", str(run), str(args.dataset / "test"), "--out", str(submission), "--category", "name")
    rc, wall_p, text = run_logged(predict, out / f"{name}-predict.log", out, timeout_s)
    if rc != 0:
        return Row(name, settings, None, wall + wall_p, failure("predict", rc, text, timeout_s))
    return Row(
        name, settings, score(submission, args.labels), wall + wall_p, f"train {wall:.0f} s + predict {wall_p:.0f} s"
    )


def table(rows: list[Row]) -> str:
    naive = next((r for r in rows if r.system == "naive" and r.accuracy is not None), None)
    lines = [
        "| system | settings | test accuracy | Δ vs naive (pp) | wall s | time ÷ naive | note |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        acc = f"{100 * r.accuracy:.1f} %" if r.accuracy is not None else "–"
        delta = f"{100 * (r.accuracy - naive.accuracy):+.1f}" if naive and r.accuracy is not None else "–"
        wall = f"{r.wall_s:.0f}" if r.wall_s is not None else "–"
        ratio = f"{r.wall_s / naive.wall_s:.2f}" if naive and r.wall_s is not None else "–"
        lines.append(f"| {r.system} | {r.settings} | {acc} | {delta} | {wall} | {ratio} | {r.note} |")
    return "\n".join(lines)


def precision_note(accuracy: float, n: int) -> str:
    """How far one accuracy on ``n`` test images can be from the true one: its binomial standard error.

    >>> precision_note(0.9, 1000)
    'One accuracy near 90.0 % on 1000 test images has a standard error of 0.9 pp (6,000 images: 0.4 pp).'
    """
    se = lambda k: 100 * math.sqrt(accuracy * (1 - accuracy) / k)  # noqa: E731
    return f"One accuracy near {100 * accuracy:.1f} % on {n} test images has a standard error of {se(n):.1f} pp" + (
        f" (6,000 images: {se(6000):.1f} pp)." if n < 6000 else "."
    )


def run_all(args, out: Path) -> list[Row]:
    budget_s = 60.0 * args.budget
    timeout_s = 3 * budget_s + 300
    n_train = count_train_images(args.dataset)
    classes = sum(1 for p in (args.dataset / "train").iterdir() if p.is_dir())
    probe = (args.probe_res, probe_rate(args.baselines, args.probe_res, classes))
    plan = plan_naive(budget_s, n_train, probe, res=args.res, epochs=args.epochs, min_epochs=args.min_epochs)
    if plan.res != args.probe_res:  # the 1/px² scaling is rough at small sizes: time the chosen size itself
        probe = (plan.res, probe_rate(args.baselines, plan.res, classes))
        plan = plan_naive(budget_s, n_train, probe, res=plan.res, epochs=args.epochs, min_epochs=args.min_epochs)
    print(
        f"probe: {probe[1]:.1f} train images/s at {probe[0]} px; plan: {plan.res} px, naive {plan.epochs} epochs "
        f"for {n_train} training images",
        flush=True,
    )
    rows: list[Row] = []
    if "baselines" in args.systems:
        rows += _baseline_rows(args, plan, n_train, budget_s, out, timeout_s)
    if "imgclf" in args.systems:
        rows += _imgclf_rows(args, plan, budget_s, out, timeout_s)
    return rows


def _baseline_rows(args, plan: Plan, n_train: int, budget_s: float, out: Path, timeout_s: float) -> list[Row]:
    rows = [
        baseline_row(
            "naive",
            [
                sys.executable,
                str(args.baselines / "naive_finetune.py"),
                str(args.dataset),
                str(args.labels),
                str(plan.res),
                str(plan.epochs),
                "--flips",
                "hv",
            ],
            f"{plan.res} px, {plan.epochs} epochs, flips hv",
            out,
            timeout_s,
        )
    ]
    held_out = args.epochs or plan.epochs_for(budget_s, 0.8 * n_train, 0.2 * n_train, share=0.85)
    if "fastai" in args.skip:
        rows.append(Row("fastai", "–", note="not run (--skip fastai)"))
    elif importlib.util.find_spec("fastai") is None:
        rows.append(Row("fastai", "–", note="not installed (pip install 'imgclf[bench]')"))
    else:
        rows.append(
            baseline_row(
                "fastai",
                [
                    sys.executable,
                    str(args.baselines / "fastai_finetune.py"),
                    str(args.dataset),
                    str(args.labels),
                    str(plan.res),
                    str(max(2, held_out)),
                    "--flip-vert",
                ],
                f"{plan.res} px, {max(2, held_out)} epochs, flip-vert",
                out,
                timeout_s,
            )
        )
    return rows


def _imgclf_rows(args, plan: Plan, budget_s: float, out: Path, timeout_s: float) -> list[Row]:
    rows: list[Row] = []
    n_train = count_train_images(args.dataset)
    held_out = args.epochs or plan.epochs_for(budget_s, 0.8 * n_train, 0.2 * n_train, share=0.85)
    budget = f"{args.budget:g}m"
    if "train" in args.skip:
        rows.append(Row("imgclf train --budget", "–", note="not run (--skip train)"))
    elif has_budget("train"):
        run = out / "train-budget"
        cmd, settings, name = (
            imgclf("train", str(args.dataset), "--budget", budget, "--out", str(run)),
            f"--budget {budget}",
            "imgclf train --budget",
        )
    else:
        run = out / "train-fallback"
        cmd = imgclf(
            "train",
            str(args.dataset),
            "--out",
            str(run),
            "--set",
            f"data.image_size={plan.res}",
            "--set",
            f"train.epochs={held_out}",
        )
        if held_out <= 1:
            cmd += ["--set", "train.warmup_epochs=0"]  # imgclf refuses a warm-up as long as the run
        settings, name = (
            f"{plan.res} px, {held_out} epochs (planned like fastai)",
            "imgclf train (FALLBACK: no --budget)",
        )
    if "train" not in args.skip:
        rows.append(imgclf_row(name, cmd, settings, run, args, out, timeout_s))
    cv = has_budget("cv")
    if "cv" in args.skip:
        rows.append(Row("imgclf cv --budget", "–", note="not run (--skip cv)"))
    elif not cv:
        rows.append(
            Row(
                "imgclf cv --budget",
                "–",
                note="not run: " + ("no `imgclf cv` command" if cv is None else "`imgclf cv` has no --budget"),
            )
        )
    else:
        rows.append(
            imgclf_row(
                "imgclf cv --budget",
                imgclf("cv", str(args.dataset), "--budget", budget, "--out", str(out / "cv-budget")),
                f"--budget {budget}",
                out / "cv-budget",
                args,
                out,
                timeout_s,
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path, help="train/<class>/<images> and test/<images>")
    ap.add_argument("labels", type=Path, help="CSV with Id and label columns for the test images")
    ap.add_argument("--budget", type=float, required=True, help="minutes per system")
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for logs, runs and peers.md (default: bench/.data/peers-<time>, git-ignored)",
    )
    ap.add_argument(
        "--baselines", type=Path, default=BASELINES, help="folder of naive_finetune.py and fastai_finetune.py"
    )
    ap.add_argument("--res", type=int, default=None, help="fix the baselines' size instead of planning it")
    ap.add_argument("--epochs", type=int, default=None, help="fix every planned epoch count (naive, fastai, fallback)")
    ap.add_argument(
        "--min-epochs", type=int, default=5, help="plan: the largest size that allows this many naive epochs"
    )
    ap.add_argument("--probe-res", type=int, default=128)
    ap.add_argument(
        "--skip",
        nargs="+",
        choices=("fastai", "cv", "train"),
        default=[],
        help="leave these rows out (a row says so): the naive script and imgclf train alone halve the run; "
        "`--systems imgclf --skip train` runs cv --budget alone",
    )
    ap.add_argument(
        "--systems",
        nargs="+",
        choices=("baselines", "imgclf"),
        default=["baselines", "imgclf"],
        help="which rows to run (default both): `--systems imgclf` re-runs imgclf's rows after a change",
    )
    args = ap.parse_args(argv)
    for path in (args.dataset / "train", args.dataset / "test", args.labels, args.baselines / "naive_finetune.py"):
        if not path.exists():
            print(f"error: {path} does not exist", file=sys.stderr)
            return 2
    out = args.out or HERE / ".data" / time.strftime("peers-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    args.dataset, args.labels, args.baselines = args.dataset.resolve(), args.labels.resolve(), args.baselines.resolve()
    rows = run_all(args, out.resolve())
    text = table(rows)
    naive = next((r for r in rows if r.system == "naive" and r.accuracy is not None), None)
    if naive:
        with open(args.labels, newline="", encoding="utf-8-sig") as fh:
            text += "\n\n" + precision_note(naive.accuracy, sum(1 for _ in csv.DictReader(fh)))
    print(text)
    sys.path.insert(0, str(HERE))
    from _common import machine

    m = machine()
    header = (
        f"Command: `{' '.join(['python', 'bench/peers.py', *(argv or sys.argv[1:])])}`\n"
        f"Machine: {m['cpu']}, {m['cores']} cores, GPU {m['gpu'] or 'none'}; torch {m['torch']}. "
        f"Date: {m['date']}. 1-minute load average at the end: {m['load_average']}.\n\n"
    )
    (out / "peers.md").write_text(header + text + "\n")
    print(f"wrote {out / 'peers.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
