"""Compare TTA settings on labelled images: no TTA, fixed N views, adaptive, adaptive with a chosen threshold.

Every view's logits are computed once (``view_logits``, one view at a time so each view's
cost is timed); every row is then replayed from those logits through the same
``fixed_tta`` / ``adaptive_tta`` code that runs at test time, with a look-up forward.

Wall time: by default *estimated* for each row as Σ over views of (images that got the
view) × (measured seconds per forward pass of that view), decoding excluded (it is done
once for all rows and reported apart). ``measure=True`` instead runs every row for real
with the model and reports its measured time, accuracy and passes.

"adaptive (auto)" picks the threshold with :func:`~imgclf.infer.tta_threshold.choose_adaptive_threshold`. Picking
it on the very images it is scored on would flatter it, so it is either chosen on separate
data (``choose_on``, e.g. the validation split when scoring the test split) or cross-fitted:
the images are split into two stratified halves and each half is scored with the threshold
chosen on the other.

Example::

    result = compare_tta(forward, images, labels, views, cfg.tta, ns=(2, 4, 10), batch_size=64)
    write_compare(RunDir(run_dir).eval.root, result)
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgclf.config import TTAConfig
from imgclf.errors import ConfigError
from imgclf.eval.metrics import Metric, get_metric, metric_of
from imgclf.infer.tta_threshold import choose_adaptive_threshold
from imgclf.infer.tta import Forward, TTAResult, View, adaptive_tta, fixed_tta, view_logits
from imgclf.io import atomic_write_text
from imgclf.run.rundir import EvalDir

DEFAULT_NS = (2, 4, 10)
COLUMNS = (
    "setting",
    "mode",
    "max_views",
    "threshold",
    "accuracy",
    "delta_pp_vs_full",
    "metric",
    "score",
    "delta_score_vs_full",
    "forward_passes",
    "passes_per_image",
    "share_of_full_passes",
    "wall_seconds",
    "timing",
    "passes_histogram",
)


@dataclass
class CompareRow:
    setting: str  # "none", "fixed 4", "adaptive", "adaptive (auto)"
    mode: str  # none | fixed | adaptive | adaptive_auto
    max_views: int
    threshold: str  # "" for none/fixed; "0.2", or "0.15/0.25" when cross-fitted
    accuracy: float
    forward_passes: int
    passes_per_image: float
    wall_seconds: float
    timing: str  # measured | estimated
    passes_histogram: str  # "views×images", e.g. "2×812 3×90 10×98"
    delta_pp_vs_full: float = 0.0  # accuracy minus that of the largest fixed N, in percentage points
    share_of_full_passes: float = 1.0  # forward passes / those of the largest fixed N
    metric: str = "accuracy"  # the run's train.metric
    score: float = float("nan")  # that metric on the row's (calibrated) probabilities
    delta_score_vs_full: float = 0.0  # score minus that of the largest fixed N


@dataclass
class CompareResult:
    rows: list[CompareRow]
    caption: str
    images: int
    decode_seconds: float = 0.0
    view_seconds: list[float] = field(default_factory=list)  # per view, for all images
    thresholds: dict[str, Any] = field(default_factory=dict)

    def row(self, setting: str) -> CompareRow:
        return next(r for r in self.rows if r.setting == setting)


class _Lookup:
    """A view of image ``i`` that yields the pair (i, v); the look-up forward maps it to logits."""

    def __init__(self, view: int):
        self.view = view

    def __call__(self, index: int) -> torch.Tensor:
        return torch.tensor([index, self.view])


def _lookup(z: np.ndarray) -> tuple[Forward, list[_Lookup]]:
    table = torch.from_numpy(z)

    def forward(batch: torch.Tensor) -> torch.Tensor:
        return table[batch[:, 0], batch[:, 1]]

    return forward, [_Lookup(v) for v in range(z.shape[1])]


class _Subset(Sequence):
    def __init__(self, items: Sequence[Any], index: np.ndarray):
        self.items, self.index = items, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Any:  # type: ignore[override]
        return self.items[int(self.index[i])]


def all_view_logits(
    forward: Forward, images: Sequence[Any], views: Sequence[View], batch_size: int
) -> tuple[np.ndarray, list[float]]:
    """Raw logits ``(N, V, C)`` and the seconds each view took over all images."""
    parts, seconds = [], []
    if len(images):  # warm-up: the first call pays one-off costs (allocations, kernel choice) that no view should carry
        view_logits(forward, _Subset(images, np.arange(min(batch_size, len(images)))), views[:1], batch_size)
    for view in views:
        t0 = time.perf_counter()
        parts.append(view_logits(forward, images, [view], batch_size))
        seconds.append(time.perf_counter() - t0)
    return np.concatenate(parts, axis=1), seconds


def halves(labels: np.ndarray) -> np.ndarray:
    """Fold 0/1 per image: alternate images within each class, so both halves are stratified."""
    fold = np.zeros(len(labels), dtype=int)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        fold[idx[1::2]] = 1
    return fold


def histogram_text(passes: np.ndarray) -> str:
    return " ".join(f"{k}×{v}" for k, v in sorted(Counter(np.asarray(passes).tolist()).items()))


class _Rows:
    """Builds the table's rows, replayed from the view logits (or run for real when ``measure``)."""

    def __init__(
        self,
        forward: Forward,
        images: Sequence[Any],
        y: np.ndarray,
        views: Sequence[View],
        z: np.ndarray,
        seconds: Sequence[float],
        cfg: TTAConfig,
        batch_size: int,
        temperature: float,
        measure: bool,
        metric: Metric,
    ):
        self.forward, self.images, self.y, self.views, self.z = forward, images, y, views, z
        self.per_pass = np.asarray(seconds) / len(images)
        self.cfg, self.batch_size, self.temperature, self.measure = cfg, batch_size, temperature, measure
        self.look, self.look_views = _lookup(z)
        self.metric = metric

    def part(
        self, n: int | None = None, trial: TTAConfig | None = None, index: np.ndarray | None = None
    ) -> tuple[np.ndarray, TTAResult, float | None]:
        """Fixed ``n`` views, or adaptive with ``trial``, on images ``index`` (all by default)."""
        idx = np.arange(len(self.images)) if index is None else index
        if self.measure:
            forward, views, items, batch = self.forward, self.views, _Subset(self.images, idx), self.batch_size
        else:  # a look-up: batching changes only the number of Python calls
            forward, views, items, batch = (
                self.look,
                self.look_views,
                _Subset(range(len(self.images)), idx),
                max(len(idx), 1),
            )
        t0 = time.perf_counter()
        if n is not None:
            res = fixed_tta(forward, items, views, n, batch, self.cfg.aggregate, self.temperature)
        else:
            res = adaptive_tta(forward, items, views, trial, batch, self.temperature)
        return idx, res, (time.perf_counter() - t0 if self.measure else None)

    def row(self, setting: str, mode: str, max_views: int, threshold: str, parts: list) -> CompareRow:
        """One row from ``parts`` = [(image indices, result on them, measured seconds or None)]."""
        n_img = len(self.images)
        correct = sum(int((res.predictions == self.y[idx]).sum()) for idx, res, _ in parts)
        passes = np.zeros(n_img, dtype=int)
        probs = np.zeros((n_img, self.z.shape[2]))
        for idx, res, _ in parts:
            passes[idx] = res.passes
            probs[idx] = res.probs
        if self.measure:
            wall = float(sum(s for _, _, s in parts))
        else:  # image i got views 0..passes[i]-1 (TTA adds views in order): count the images per view
            got = np.array([(passes > v).sum() for v in range(len(self.views))])
            wall = float((got * self.per_pass).sum())
        return CompareRow(
            setting,
            mode,
            max_views,
            threshold,
            correct / n_img,
            int(passes.sum()),
            float(passes.mean()),
            wall,
            "measured" if self.measure else "estimated",
            histogram_text(passes),
            metric=self.metric.name,
            score=self.metric.score(self.y, probs),
        )


def compare_tta(
    forward: Forward,
    images: Sequence[Any],
    labels: Any,
    views: Sequence[View],
    cfg: TTAConfig,
    ns: Sequence[int] = DEFAULT_NS,
    batch_size: int = 64,
    temperature: float = 1.0,
    *,
    choose_on: tuple[np.ndarray, np.ndarray] | None = None,
    tolerance: float = 0.001,
    measure: bool = False,
    logits: tuple[np.ndarray, list[float]] | None = None,
    metric: Metric | None = None,
) -> CompareResult:
    """The comparison table for ``images`` with class indices ``labels`` (see the module docstring).

    ``views`` are the run's views in ``cfg.views`` order; ``ns`` the fixed N to show (each in
    1..len(views); N=1 is the "none" row; the largest is "full TTA"). ``choose_on``: other
    labelled data ``(view logits (M, V, C), labels)`` to pick the auto threshold on; None
    cross-fits it on two halves of ``images``. ``tolerance``: how far below full TTA
    (accuracy, a fraction) the auto threshold may land. ``logits``: ``all_view_logits`` of
    ``images`` if already computed.
    """
    y = np.asarray(labels, dtype=np.int64)
    if len(y) != len(images) or len(images) == 0:
        raise ConfigError(f"TTA comparison needs labelled images; got {len(images)} images and {len(y)} labels")
    ns = sorted({int(n) for n in ns})
    if not ns or ns[0] < 1 or ns[-1] > len(views):
        raise ConfigError(f"--tta-ns must lie in 1..{len(views)} (the listed views), got {','.join(map(str, ns))}")
    z, seconds = logits or all_view_logits(forward, images, views, batch_size)
    build = _Rows(
        forward, images, y, views, z, seconds, cfg, batch_size, temperature, measure, metric or get_metric("accuracy")
    )
    max_views = min(cfg.max_views, len(views))

    rows = [build.row("none", "none", 1, "", [build.part(n=1)])]
    rows += [build.row(f"fixed {n}", "fixed", n, "", [build.part(n=n)]) for n in ns if n > 1]
    rows.append(build.row("adaptive", "adaptive", max_views, f"{cfg.threshold:g}", [build.part(trial=cfg)]))
    auto, thresholds, how = _auto_row(build, cfg, tolerance, choose_on, max_views)
    if auto is not None:
        rows.append(auto)

    full = rows[0] if ns[-1] == 1 else next(r for r in rows if r.setting == f"fixed {ns[-1]}")
    for r in rows:
        r.delta_pp_vs_full = 100.0 * (r.accuracy - full.accuracy)
        r.delta_score_vs_full = r.score - full.score
        r.share_of_full_passes = r.forward_passes / max(full.forward_passes, 1)
    timing = (
        "wall time measured by running each row with the model"
        if measure
        else "wall time estimated (*): images per view × measured seconds per forward pass of that view"
    )
    caption = (
        f"TTA on {len(images)} labelled images (uncertainty {cfg.uncertainty}, aggregate {cfg.aggregate}, "
        f"first {cfg.first_views} views, stable {cfg.stable_views}, temperature {temperature:.3g}); "
        f"adaptive (auto): {how}; Δ and shares are against {full.setting}; {timing}; decoding excluded."
    )
    return CompareResult(rows, caption, len(images), view_seconds=list(seconds), thresholds=thresholds)


def _auto_row(build: _Rows, cfg: TTAConfig, tolerance: float, choose_on, max_views: int):
    """The "adaptive (auto)" row: threshold chosen on ``choose_on``, else cross-fitted on two halves."""
    budgetless = cfg.model_copy(update={"budget": None})  # a budget is sized for the scored set, not the choosing one
    within = f"cheapest within {100 * tolerance:g} pp of {max_views}-view TTA"
    if choose_on is not None:
        choice = choose_adaptive_threshold(
            choose_on[0], choose_on[1], budgetless, tolerance=tolerance, temperature=build.temperature
        )
        trial = cfg.model_copy(update={"threshold": choice.threshold})
        how = f"threshold {choice.threshold:g} chosen on {len(choose_on[1])} separate labelled images ({within} there)"
        row = build.row(
            "adaptive (auto)", "adaptive_auto", max_views, f"{choice.threshold:g}", [build.part(trial=trial)]
        )
        return row, {"chosen_on": "separate", "threshold": choice.threshold, "matched": choice.matched}, how
    fold = halves(build.y)
    if min((fold == 0).sum(), (fold == 1).sum()) < 1:
        return None, {}, "skipped (too few images to split in two)"
    parts, chosen = [], []
    for k in (0, 1):  # choose on the other half, score on this one
        pick, score = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        choice = choose_adaptive_threshold(
            build.z[pick], build.y[pick], budgetless, tolerance=tolerance, temperature=build.temperature
        )
        chosen.append(choice.threshold)
        parts.append(build.part(trial=cfg.model_copy(update={"threshold": choice.threshold}), index=score))
    shown = "/".join(f"{t:g}" for t in chosen)
    how = (
        f"threshold chosen on one stratified half of these images and scored on the other, both ways "
        f"(thresholds {shown}; {within} on the choosing half)"
    )
    row = build.row("adaptive (auto)", "adaptive_auto", max_views, shown, parts)
    return row, {"chosen_on": "cross-fit halves", "thresholds": chosen}, how


def compare_records(result: CompareResult) -> list[dict[str, Any]]:
    return [{c: asdict(r)[c] for c in COLUMNS} for r in result.rows]


def write_compare(out: Path, result: CompareResult) -> tuple[Path, Path]:
    """``out/tta_compare.csv`` (one row per setting, columns ``COLUMNS``) and ``out/tta_compare.md``."""
    import pandas as pd

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(compare_records(result), columns=list(COLUMNS))
    files = EvalDir(out)
    atomic_write_text(files.tta_compare_csv, frame.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(files.tta_compare_md, f"{result.caption}\n\n{markdown(result)}\n")
    return files.tta_compare_csv, files.tta_compare_md


def formatted(row: CompareRow) -> dict[str, str]:
    """Display strings, shared by the Markdown file and the CLI's rich table (the run's metric first
    when it is not accuracy)."""
    own = (
        {}
        if row.metric == "accuracy"
        else {row.metric: f"{row.score:.4f}", f"Δ {row.metric}": f"{row.delta_score_vs_full:+.4f}"}
    )
    return {
        "setting": row.setting,
        "threshold": row.threshold or "–",
        **own,
        "accuracy": f"{100 * row.accuracy:.2f} %",
        "Δ vs full (pp)": f"{row.delta_pp_vs_full:+.2f}",
        "passes": str(row.forward_passes),
        "per image": f"{row.passes_per_image:.2f}",
        "share of full": f"{100 * row.share_of_full_passes:.0f} %",
        "wall s": f"{row.wall_seconds:.2f}" + ("" if row.timing == "measured" else "*"),
        "views per image": row.passes_histogram,
    }


def markdown(result: CompareResult) -> str:
    cells = [formatted(r) for r in result.rows]
    head = list(cells[0])
    right = {
        "accuracy",
        "Δ vs full (pp)",
        "passes",
        "per image",
        "share of full",
        "wall s",
        result.rows[0].metric,
        f"Δ {result.rows[0].metric}",
    }
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" if h in right else ":---" for h in head) + "|"]
    lines += ["| " + " | ".join(c[h] for h in head) + " |" for c in cells]
    if any(r.timing == "estimated" for r in result.rows):
        lines.append("\n\\* estimated wall time (see caption)")
    return "\n".join(lines)


# ---------------------------------------------------------------- the job the CLI runs


def compare_run(
    run_dir: Path,
    dataset: Path | None = None,
    out: Path | None = None,
    *,
    tta: TTAConfig | None = None,
    ns: Sequence[int] = DEFAULT_NS,
    batch_size: int = 64,
    device: str = "auto",
    measure: bool = False,
    tolerance: float = 0.001,
    calibrated: bool = True,
) -> dict[str, Any]:
    """``evaluate --tta-compare``: the table on the run's validation split (or ``dataset``), written
    to ``out`` (default ``RUN_DIR/eval``) as ``tta_compare.csv`` and ``tta_compare.md``."""
    from imgclf.data.pipeline import image_loader
    from imgclf.infer.jobs import evaluation_images
    from imgclf.run.load import load_run
    from imgclf.infer.tta_runner import DecodedImages, model_forward, run_views

    loaded = load_run(run_dir, device)
    cfg = tta or loaded.cfg.tta
    paths, labels, root, what = evaluation_images(run_dir, dataset, loaded.classes)
    t0 = time.perf_counter()
    images = DecodedImages(paths, image_loader(loaded.cfg.data, root, loaded.pre))
    decode_seconds = time.perf_counter() - t0
    label_of = dict(zip(paths, labels.tolist()))
    y = np.array([label_of[p] for p in images.paths], dtype=np.int64)
    temperature = loaded.temperature if calibrated else 1.0
    result = compare_tta(
        model_forward(loaded, device),
        images,
        y,
        run_views(loaded, cfg.views),
        cfg,
        ns,
        batch_size,
        temperature,
        tolerance=tolerance,
        measure=measure,
        metric=metric_of(loaded.cfg.train),
    )
    result.decode_seconds = decode_seconds
    result.caption = f"{loaded.run.root.name} on {what}: {result.caption}"
    out = Path(out) if out else loaded.run.eval.root
    csv_path, md_path = write_compare(out, result)
    return {
        "result": result,
        "csv": str(csv_path),
        "md": str(md_path),
        "skipped_images": [str(p) for p in images.bad],
        "evaluated_on": what,
    }
