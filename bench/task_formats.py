"""imgclf against naive baselines on the other task formats (issue 33): multi-label and regression, same budget.

Runs, one after another on this machine (subprocesses, one at a time):

1. the naive script (``naive_multilabel.py`` or ``naive_regression.py``) at ``--res`` px (default 64, the 56 px mosaics
   of ``bench/task_datasets.py`` upscaled a little), with the epochs that fill the budget: a *probe* first runs it for
   one epoch and reads that epoch's time from its ``epoch 1/1 … t=Xs`` line; the rest of the probe's wall time (start,
   loading, predicting) is the fixed cost, and the run gets ``floor((budget - fixed) / epoch)`` epochs, at least 1.
   The probe is charged to no system; ``--epochs`` fixes the count and skips it;
2. ``imgclf train DATASET/train.csv --set train.time_limit=<budget - allowance> --set data.image_size=<res>`` (plus
   ``--imgclf-set`` extras), then ``imgclf predict RUN DATASET/test --sample … --probs …``; the allowance for predict
   and start-up is ``--allowance`` seconds, by default the probe's fixed cost (at least 15 s; 10 % of the budget
   without a probe). Its wall time covers both commands;
3. ``fastai_task.py`` (fastai's MultiCategoryBlock or RegressionBlock, same size, same epochs) when fastai is
   importable; otherwise a row saying it is not installed.

Scoring is done here with scikit-learn and numpy, independent of imgclf. Multi-label: samples-averaged F2 (Planet's
metric, the headline; its standard error from the per-image F2 values) and micro-F1 (SE by a seeded bootstrap over
images, 200 draws); the naive and fastai probabilities are thresholded at 0.5, imgclf's submission holds its own tags.
Regression: RMSE (SE by the delta method, SE(mean squared error) / (2 RMSE)) and MAE (per-image SE). Every system's
paired gap to the naive script (system minus naive, on the same images) comes with its SE: per image for F2, MAE and
RMSE (delta method), the same bootstrap draws for micro-F1. The table, with the command, machine and date, goes to
``OUT/task_formats.md`` (logs and prediction files beside it) and is printed.

Usage::

    python bench/task_datasets.py multilabel bench/.data/multilabel
    python bench/task_formats.py bench/.data/multilabel/dataset bench/.data/multilabel/answers/test_labels.csv \\
        --kind multilabel --budget 10 --out bench/.data/tf-multilabel
    python bench/task_formats.py DATASET ANSWERS --kind regression --budget 1 --out /tmp/tf --res 32 --epochs 1 \\
        --systems naive                                                  # a smoke run
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score, fbeta_score, mean_absolute_error, mean_squared_error

HERE = Path(__file__).resolve().parent
REPO = HERE.parent  # imgclf runs from here, so `python -m imgclf` is this checkout's, not the venv's editable one
sys.path.insert(0, str(HERE))
from peers import failure, run_logged  # noqa: E402

BOOTSTRAP_DRAWS = 200
THRESHOLD = 0.5
_EPOCH = re.compile(r"epoch 1/\d+ .*t=([0-9.]+)s")
Stat = tuple[float, float]  # (value, standard error)


# ---- scoring: pure functions of arrays ---------------------------------------------------------------------------


def mean_se(values: np.ndarray) -> Stat:
    """Mean and its standard error (sample SD / sqrt(n); 0 for one value)."""
    v = np.asarray(values, float)
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0


def f2_per_image(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """F2 of each image's predicted label set (rows of 0/1 ``pred``) against its true one; 1 when both are empty.

    >>> f2_per_image(np.array([[1, 1, 0]]), np.array([[1, 0, 0]])).round(3).tolist()  # recall 1/2, precision 1
    [0.556]
    """
    t, p = np.asarray(truth, bool), np.asarray(pred, bool)
    tp, fp, fn = (t & p).sum(1), (~t & p).sum(1), (t & ~p).sum(1)
    den = 5 * tp + 4 * fn + fp
    return np.where(den > 0, 5 * tp / np.maximum(den, 1), 1.0)


def bootstrap_indices(n: int, draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> np.ndarray:
    """(draws, n) resampled image indices; every system is scored on the same draws, so gaps are paired."""
    return np.random.default_rng(seed).integers(0, n, (draws, n))


def micro_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    return float(f1_score(truth, pred, average="micro", zero_division=0.0))


def _micro_counts(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per image (true positives, false positives + false negatives): micro-F1 is 2 TP / (2 TP + FP + FN) of sums."""
    t, p = np.asarray(truth, bool), np.asarray(pred, bool)
    return np.stack([(t & p).sum(1), (t ^ p).sum(1)], axis=1)


def bootstrap_micro_f1(truth: np.ndarray, pred: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Micro-F1 on each bootstrap draw (rows of image indices), from per-image counts: sklearn's value, faster."""
    tp, wrong = _micro_counts(truth, pred)[draws].sum(1).T
    return np.where(tp > 0, 2 * tp / np.maximum(2 * tp + wrong, 1), 0.0)


def multilabel_scores(truth: np.ndarray, pred: np.ndarray, naive: np.ndarray | None = None) -> dict[str, Stat]:
    """``f2`` and ``micro_f1`` (value, SE); with the naive predictions also ``f2_gap`` and ``micro_f1_gap``."""
    f2 = f2_per_image(truth, pred)
    samples = float(fbeta_score(truth, pred, beta=2, average="samples", zero_division=1.0))
    draws = bootstrap_indices(len(truth))
    micro = bootstrap_micro_f1(truth, pred, draws)
    out = {"f2": (samples, mean_se(f2)[1]), "micro_f1": (micro_f1(truth, pred), float(micro.std(ddof=1)))}
    if naive is not None:
        out["f2_gap"] = mean_se(f2 - f2_per_image(truth, naive))
        gaps = micro - bootstrap_micro_f1(truth, naive, draws)
        out["micro_f1_gap"] = (micro_f1(truth, pred) - micro_f1(truth, naive), float(gaps.std(ddof=1)))
    return out


def rmse_se(y: np.ndarray, p: np.ndarray) -> Stat:
    """RMSE and its SE by the delta method: SE(mean of squared errors) / (2 RMSE)."""
    rmse = math.sqrt(mean_squared_error(y, p))
    se_mse = mean_se((np.asarray(p, float) - y) ** 2)[1]
    return rmse, se_mse / (2 * rmse) if rmse > 0 else 0.0


def rmse_gap(y: np.ndarray, p: np.ndarray, q: np.ndarray) -> Stat:
    """RMSE(p) - RMSE(q) on the same images, its SE by the delta method on the per-image squared errors."""
    (rp, _), (rq, _) = rmse_se(y, p), rmse_se(y, q)
    sp, sq = (np.asarray(p, float) - y) ** 2, (np.asarray(q, float) - y) ** 2
    return rp - rq, mean_se(sp / (2 * rp) - sq / (2 * rq))[1] if rp > 0 and rq > 0 else 0.0


def regression_scores(y: np.ndarray, pred: np.ndarray, naive: np.ndarray | None = None) -> dict[str, Stat]:
    """``rmse`` and ``mae`` (value, SE); with the naive predictions also ``rmse_gap`` and ``mae_gap``."""
    err = np.abs(np.asarray(pred, float) - y)
    out = {"rmse": rmse_se(y, pred), "mae": (float(mean_absolute_error(y, pred)), mean_se(err)[1])}
    if naive is not None:
        out["rmse_gap"] = rmse_gap(y, pred, naive)
        out["mae_gap"] = mean_se(err - np.abs(np.asarray(naive, float) - y))
    return out


# ---- reading answers and predictions -----------------------------------------------------------------------------


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        header, *rows = list(csv.reader(fh))
    return header, rows


def read_answers(path: Path) -> tuple[list[str], list]:
    """Ids and, per id, a set of tags (a ``tags`` column) or a number (the second column)."""
    header, rows = read_csv(path)
    if "tags" in header:
        k = header.index("tags")
        return [r[0] for r in rows], [set(r[k].split()) for r in rows]
    return [r[0] for r in rows], [float(r[1]) for r in rows]


def read_prediction(path: Path, ids: list[str], multilabel: bool) -> list:
    """Per id: a tag set (a ``tags`` column, or label probabilities thresholded at 0.5) or a number."""
    header, rows = read_csv(path)
    by_id = {r[0]: r for r in rows}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ValueError(f"{path.name} lacks {len(missing)} of the {len(ids)} test ids (first {missing[0]})")
    if not multilabel:
        return [float(by_id[i][1]) for i in ids]
    if "tags" in header:
        k = header.index("tags")
        return [set(by_id[i][k].split()) for i in ids]
    return [{lab for lab, v in zip(header[1:], by_id[i][1:]) if float(v) >= THRESHOLD} for i in ids]


def tag_matrix(sets: list[set[str]], labels: list[str]) -> np.ndarray:
    return np.array([[lab in s for lab in labels] for s in sets], dtype=int)


# ---- running the systems -----------------------------------------------------------------------------------------


@dataclass
class Row:
    system: str
    settings: str
    pred: Path | None = None
    wall_s: float | None = None
    note: str = ""
    scores: dict[str, Stat] = field(default_factory=dict)


def naive_script(kind: str) -> Path:
    return HERE / f"naive_{kind}.py"


def plan_epochs(budget_s: float, probe_wall_s: float, epoch_s: float) -> int:
    """Epochs that fill the budget after the fixed cost the probe measured (its wall time less its one epoch)."""
    return max(1, int((budget_s - max(0.0, probe_wall_s - epoch_s)) // max(epoch_s, 1e-6)))


def probe(args, out: Path, timeout_s: float) -> tuple[int, float]:
    """Run the naive script for one epoch; return (epochs that fit the budget, fixed cost in seconds)."""
    cmd = [sys.executable, str(naive_script(args.kind)), str(args.dataset), str(args.answers), str(args.res), "1"]
    rc, wall, text = run_logged(cmd, out / "naive-probe.log", out, timeout_s)
    found = _EPOCH.findall(text)
    if rc != 0 or not found:
        raise RuntimeError(failure("naive probe", rc, text, timeout_s))
    epoch_s = float(found[-1])
    epochs = plan_epochs(60.0 * args.budget, wall, epoch_s)
    print(
        f"probe: one epoch {epoch_s:.1f} s, fixed cost {wall - epoch_s:.1f} s; naive gets {epochs} epochs", flush=True
    )
    return epochs, wall - epoch_s


def script_row(name: str, cmd: list[str], settings: str, pred: Path, out: Path, timeout_s: float) -> Row:
    rc, wall, text = run_logged(cmd, out / f"{name}.log", out, timeout_s)
    if rc != 0 or not pred.is_file():
        return Row(name, settings, None, wall, failure("run", rc, text, timeout_s))
    return Row(name, settings, pred, wall)


def imgclf_row(args, time_limit: float, out: Path, timeout_s: float) -> Row:
    """``imgclf train`` on train.csv within ``time_limit`` seconds, then ``imgclf predict``; wall time covers both."""
    run, sub = out / "imgclf-run", out / "imgclf-sub.csv"
    extra = [x for kv in args.imgclf_set for x in ("--set", kv)]
    train = [sys.executable, "-m", "imgclf", "train", str(args.dataset / "train.csv"), "--out", str(run)]
    train += ["--set", f"train.time_limit={time_limit:.0f}", "--set", f"data.image_size={args.res}", *extra]
    settings = f"{args.res} px, time_limit {time_limit:.0f} s" + "".join(f", {kv}" for kv in args.imgclf_set)
    rc, wall, text = run_logged(train, out / "imgclf-train.log", REPO, timeout_s)
    if rc != 0:
        return Row("imgclf", settings, None, wall, failure("training", rc, text, timeout_s))
    predict = [sys.executable, "-m", "imgclf", "predict", str(run), str(args.dataset / "test")]
    predict += ["--sample", str(args.dataset / "sample_submission.csv"), "--out", str(sub)]
    predict += ["--probs", str(out / "imgclf-probs.csv")]
    rc, wall_p, text = run_logged(predict, out / "imgclf-predict.log", REPO, timeout_s)
    if rc != 0 or not sub.is_file():
        return Row("imgclf", settings, None, wall + wall_p, failure("predict", rc, text, timeout_s))
    return Row("imgclf", settings, sub, wall + wall_p, f"train {wall:.0f} s + predict {wall_p:.0f} s")


def run_all(args, out: Path) -> list[Row]:
    budget_s = 60.0 * args.budget
    timeout_s = 3 * budget_s + 300
    epochs, fixed = (args.epochs, None) if args.epochs else probe(args, out, timeout_s)
    rows: list[Row] = []
    base = [str(args.dataset), str(args.answers), str(args.res), str(epochs)]
    settings = f"{args.res} px, {epochs} epoch{'s' if epochs != 1 else ''}"
    if "naive" in args.systems:
        pred = out / "naive-pred.csv"
        cmd = [sys.executable, str(naive_script(args.kind)), *base, "--pred", str(pred)]
        rows.append(script_row("naive", cmd, settings, pred, out, timeout_s))
    if "imgclf" in args.systems:
        allowance = args.allowance if args.allowance is not None else max(15.0, fixed or 0.1 * budget_s)
        rows.append(imgclf_row(args, max(1.0, budget_s - allowance), out, timeout_s))
    if "fastai" in args.systems:
        if importlib.util.find_spec("fastai") is None:
            rows.append(Row("fastai", "–", note="not installed (pip install 'imgclf[bench]')"))
        else:
            pred = out / "fastai-pred.csv"
            own = args.fastai_epochs or epochs  # fastai's epochs cost more than the naive script's: its own count
            cmd = [sys.executable, str(HERE / "fastai_task.py"), *base[:3], str(own), "--kind", args.kind]
            rows.append(
                script_row("fastai", [*cmd, "--pred", str(pred)], f"{args.res} px, {own} epochs", pred, out, timeout_s)
            )
    return rows


# ---- the report --------------------------------------------------------------------------------------------------


def score_rows(rows: list[Row], answers: Path, kind: str) -> None:
    """Fill each row's scores (and gaps to the naive row when it has predictions); a bad file becomes the row's note."""
    multilabel = kind == "multilabel"
    ids, truth = read_answers(answers)
    preds: dict[str, list] = {}
    for r in rows:
        if r.pred is None:
            continue
        try:
            preds[r.system] = read_prediction(r.pred, ids, multilabel)
        except (ValueError, IndexError) as e:
            r.note = f"unreadable predictions: {e}"
    if multilabel:
        labels = sorted(set().union(*truth, *(s for p in preds.values() for s in p)))
        y = tag_matrix(truth, labels)
        mats = {k: tag_matrix(v, labels) for k, v in preds.items()}
        naive = mats.get("naive")
        for r in rows:
            if r.system in mats:
                r.scores = multilabel_scores(y, mats[r.system], None if r.system == "naive" else naive)
    else:
        y = np.array(truth)
        naive = np.array(preds["naive"]) if "naive" in preds else None
        for r in rows:
            if r.system in preds:
                r.scores = regression_scores(y, np.array(preds[r.system]), None if r.system == "naive" else naive)


def _fmt(stat: Stat | None, signed: bool = False) -> str:
    if stat is None:
        return "–"
    return f"{stat[0]:+.4f} ± {stat[1]:.4f}" if signed else f"{stat[0]:.4f} ± {stat[1]:.4f}"


def table(rows: list[Row], kind: str) -> str:
    first, second = ("f2", "micro_f1") if kind == "multilabel" else ("rmse", "mae")
    names = {"f2": "samples F2", "micro_f1": "micro-F1", "rmse": "RMSE", "mae": "MAE"}
    lines = [
        f"| system | settings | {names[first]} ± SE | {names[second]} ± SE | Δ {names[first]} vs naive ± SE "
        f"| Δ {names[second]} vs naive ± SE | wall s | note |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        s, wall = r.scores, f"{r.wall_s:.0f}" if r.wall_s is not None else "–"
        cells = [_fmt(s.get(first)), _fmt(s.get(second))]
        cells += [_fmt(s.get(f"{first}_gap"), True), _fmt(s.get(f"{second}_gap"), True)]
        lines.append(f"| {r.system} | {r.settings} | {' | '.join(cells)} | {wall} | {r.note} |")
    better = "higher" if kind == "multilabel" else "lower"
    return "\n".join(lines) + f"\n\nΔ is system minus naive on the same test images ({better} is better)."


def header(argv: list[str]) -> str:
    from _common import machine

    m = machine()
    return (
        f"Command: `{' '.join(['python', 'bench/task_formats.py', *argv])}`\n"
        f"Machine: {os.uname().nodename}, {m['cpu']}, {m['cores']} cores, GPU {m['gpu'] or 'none'}; "
        f"torch {m['torch']}. Date: {m['date']}.\n\n"
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path, help="train.csv, train/, test/ and sample_submission.csv")
    ap.add_argument("answers", type=Path, help="the test labels CSV (answers/test_labels.csv)")
    ap.add_argument("--kind", required=True, choices=("multilabel", "regression"))
    ap.add_argument("--budget", type=float, required=True, help="minutes per system")
    ap.add_argument("--out", type=Path, required=True, help="folder for logs, predictions and task_formats.md")
    ap.add_argument("--res", type=int, default=64, help="image size for every system (default 64)")
    ap.add_argument("--epochs", type=int, default=None, help="fix the naive and fastai epochs (skips the probe)")
    ap.add_argument(
        "--fastai-epochs", type=int, default=None, help="fastai's epochs, from its own probe (default: the naive count)"
    )
    ap.add_argument("--allowance", type=float, default=None, help="seconds of the budget kept for imgclf predict")
    ap.add_argument("--imgclf-set", action="append", default=[], metavar="KEY=VAL", help="extra --set for imgclf")
    ap.add_argument(
        "--systems", nargs="+", choices=("naive", "imgclf", "fastai"), default=["naive", "imgclf", "fastai"]
    )
    args = ap.parse_args(argv)
    for path in (args.dataset / "train.csv", args.dataset / "test", args.answers):
        if not path.exists():
            print(f"error: {path} does not exist", file=sys.stderr)
            return 2
    args.dataset, args.answers = args.dataset.resolve(), args.answers.resolve()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        rows = run_all(args, out)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    score_rows(rows, args.answers, args.kind)
    text = header(argv) + table(rows, args.kind) + f"\n\nTotal wall time {time.perf_counter() - t0:.0f} s.\n"
    (out / "task_formats.md").write_text(text)
    print(text + f"\nwrote {out / 'task_formats.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
