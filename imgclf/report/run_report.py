"""The run report: one self-contained HTML page about one run directory.

Config, learning curves, confusion matrix, per-class precision/recall, the most confused
class pairs, the most confidently wrong validation images, the augmentation preview and —
when the run or its dataset has them — the cleaning summary, the TTA table and the
calibration curve. Plots and thumbnails are embedded as base64; the page loads nothing.

Reads the run directory (and the dataset it names, for thumbnails) only. Example::

    write_run_report(Path("runs/cars-lite0"))          # → runs/cars-lite0/report.html
"""

from __future__ import annotations

import base64
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from imgclf.errors import ImgclfError, RunDirError
from imgclf.report import html as h
from imgclf.report.plots import fig_to_base64, learning_curves
from imgclf.report.recipe import recipe_section
from imgclf.report.targets import target_sections
from imgclf.run.rundir import RunDir, read_metrics, read_run_csv

log = logging.getLogger("imgclf")

GALLERY_SIZE = 24
THUMB = 128
_SUMMARY_KEYS = [
    "val_accuracy",
    "val_macro_f1",
    "val_loss",
    "metric",
    "monitor",
    "best_value",
    "best_epoch",
    "epochs_run",
    "stopped_early",
    "train_seconds",
    "mean_images_per_second",
    "backbone",
    "weights",
    "pretrained",
    "head",
    "strategy",
    "bn_policy",
    "image_size",
    "num_classes",
    "train_images",
    "val_images",
    "trainable_params",
    "total_params",
    "device",
    "seed",
]
_EXTRA_CSS = """
.gallery{display:flex;flex-wrap:wrap;gap:10px}.card{width:140px;font-size:.75rem;border:1px solid #ddd;padding:5px;
word-break:break-all}.card img{width:128px;height:128px;object-fit:contain;background:#f4f4f4;display:block}
.nothumb{width:128px;height:128px;background:#eee;display:flex;align-items:center;justify-content:center;color:#888}
.row{display:flex;flex-wrap:wrap;gap:0 2rem}.row>section{flex:1 1 480px;min-width:0}
.wrong{color:#c62828;font-weight:bold}.kv th{text-align:left;background:#f4f4f4;font-weight:normal;color:#555}
.stats{display:flex;flex-wrap:wrap;gap:12px;margin:.6rem 0 1rem}.stat{border:1px solid #ddd;border-radius:6px;padding:.5rem .9rem;
min-width:120px;color:#555;font-size:.8rem}.stat .big{font-size:1.5rem;color:#222;font-weight:600}
"""


@dataclass
class RunData:
    """What the report reads from a run directory (missing optional files are None/empty)."""

    run: RunDir
    config_text: str
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]
    classes: list[str]
    predictions: pd.DataFrame | None
    dataset_root: Path | None

    @property
    def name(self) -> str:
        return self.run.root.resolve().name


def _read_json(path: Path, default: Any = None) -> Any:
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunDirError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None


def read_run(run_dir: Path) -> RunData:
    run = RunDir(Path(run_dir))
    run.require("config", "classes")
    try:
        predictions = (
            read_run_csv(run.val_predictions, ("path", "label", "pred"), keep_default_na=False)
            if run.val_predictions.is_file()
            else None
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise RunDirError(f"cannot read {run.val_predictions}: {str(exc).splitlines()[0]}") from None
    dataset_root = None
    dataset = _read_json(run.info, {}).get("dataset")
    if dataset:
        root = Path(dataset).parent if Path(dataset).is_file() else Path(dataset)
        dataset_root = root if root.is_dir() else None
    return RunData(
        run,
        run.config.read_text(),
        _read_json(run.summary, {}),
        read_metrics(run.metrics),
        _read_json(run.classes),
        predictions,
        dataset_root,
    )


# ------------------------------------------------------------------ sections


_HEADLINE = [
    ("val_accuracy", "validation accuracy"),
    ("val_macro_f1", "macro-F1"),
    ("best_epoch", "best epoch"),
    ("epochs_run", "epochs run"),
    ("train_seconds", "training seconds"),
    ("val_images", "validation images"),
]


def recipe_estimate(summary: dict[str, Any]) -> dict[str, Any] | None:
    """``summary.json``'s ``recipe.estimate`` (metric, value, se, images, what: the score of what a ``--budget``
    run submits and what it rests on), or None when absent or not of that shape."""
    estimate = (summary.get("recipe") or {}).get("estimate") if isinstance(summary.get("recipe"), dict) else None
    if not isinstance(estimate, dict):
        return None
    numbers = [estimate.get(k) for k in ("value", "se")]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in numbers):
        return None
    return estimate


def _stat(big: str, label: str, small: str = "") -> str:
    note = f"<div>{h.escape(small)}</div>" if small else ""
    return f'<div class="stat"><div class="big">{h.escape(big)}</div>{h.escape(label)}{note}</div>'


def _shown(key: str, value: Any) -> bool:
    """A headline tile only for a real value: no "—" accuracy, no "0 validation images" for a run without a split."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return False
    return not (key == "val_images" and value == 0)


def headline_cards(data: RunData) -> str:
    """The estimate of a --budget run first (value ± se and what it rests on), the run's own tiles, then the
    latest ``imgclf evaluate`` of the run."""
    cards = []
    estimate = recipe_estimate(data.summary)
    if estimate:
        cards.append(
            _stat(
                f"{estimate['value']:.3f} ± {estimate['se']:.3f}",
                f"{estimate.get('metric', 'accuracy')} estimate",
                str(estimate.get("what") or ""),
            )
        )
    metric = data.summary.get("metric", "accuracy")
    own = [] if metric in ("accuracy", "macro_f1") else [(f"val_{metric}", f"{metric} (the run's metric)")]
    cards += [
        _stat(h.format_value(data.summary[key], 3), label)
        for key, label in [*own, *_HEADLINE]
        if key in data.summary and _shown(key, data.summary[key])
    ]
    scored = data.run.read_eval_metrics()
    if isinstance(scored.get("accuracy"), (int, float)):
        cards.append(
            _stat(
                h.format_value(scored["accuracy"], 3),
                "accuracy, imgclf evaluate",
                f"on {scored.get('images', '?')} images: {scored.get('evaluated_on', '')}",
            )
        )
    return "".join(cards)


def overview_section(data: RunData) -> str:
    if not data.summary:
        return h.section("Overview", h.paragraph("No summary.json: the run did not finish.", "note"))
    cards = headline_cards(data)
    details = [(key, data.summary[key]) for key in _SUMMARY_KEYS if key in data.summary]
    scored = data.run.read_eval_metrics()
    if scored:
        details += [
            (f"eval {k}", scored[k])
            for k in dict.fromkeys(
                (scored.get("metric", "accuracy"), "accuracy", "macro_f1", "log_loss", "images", "evaluated_on", "tta")
            )
            if k in scored
        ]
    # Three key/value pairs per row keep a long summary on one screen.
    per_row = 3
    rows = []
    for start in range(0, len(details), per_row):
        chunk = details[start : start + per_row]
        rows.append(
            "<tr>"
            + "".join(
                f'<th class="text">{h.escape(k)}</th><td class="text">{h.escape(h.format_value(v))}</td>'
                for k, v in chunk
            )
            + "</tr>"
        )
    return h.section("Overview", f'<div class="stats">{cards}</div>', f'<table class="kv">{"".join(rows)}</table>')


def config_section(data: RunData) -> str:
    return h.section("Config", h.preformatted(data.config_text))


def curves_section(data: RunData) -> str:
    if not data.metrics:
        return h.section("Learning curves", h.paragraph("No metrics.csv rows yet.", "note"))
    # Train and validation as two lines on shared panels, so over-fitting shows at a glance.
    train = [
        {
            "epoch": r["epoch"],
            "loss": r.get("train_loss"),
            "accuracy": r.get("train_accuracy"),
            "lr": r.get("lr"),
            "epoch_seconds": r.get("epoch_seconds"),
        }
        for r in data.metrics
    ]
    val = [{"epoch": r["epoch"], "loss": r.get("val_loss"), "accuracy": r.get("val_accuracy")} for r in data.metrics]
    fig = learning_curves(
        {"train": train, "validation": val}, ("loss", "accuracy", "lr", "epoch_seconds"), width=3.4, height=2.8
    )
    # The legend belongs on the panels where both lines are drawn; epochs are whole numbers.
    for ax in fig.axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.axes[0].legend(fontsize="small", loc="best")
    return h.section(
        "Learning curves",
        h.image(fig_to_base64(fig), "learning curves: loss, accuracy, learning rate, seconds per epoch"),
    )


def validation_scores(data: RunData):
    """``Scores`` of val_predictions.csv, classes in the run's order (None without predictions)."""
    from imgclf.eval.scores import score

    if data.predictions is None or data.predictions.empty:
        return None
    index = {c: i for i, c in enumerate(data.classes)}
    labels = data.predictions["label"].astype(str).map(index).to_numpy()
    preds = data.predictions["pred"].astype(str).map(index).to_numpy()
    return score(labels, preds, data.classes)


def evaluated_scores(data: RunData):
    """For a run without validation predictions: the ``Scores`` of its latest ``imgclf evaluate`` (eval/), and a
    sentence saying what they are; or None and a sentence saying why there is nothing to show."""
    from imgclf.eval.scores import Scores

    if not data.summary:
        return None, "No val_predictions.csv: the run did not finish."
    files, scored = data.run.eval, data.run.read_eval_metrics()
    if not (scored and files.confusion_csv.is_file() and files.per_class.is_file()):
        return None, (
            "This run kept no validation split (it trained on every image), so it has no validation predictions; "
            "`imgclf evaluate RUN DATASET` scores it on labelled images it never saw, and the report then shows them here."
        )
    confusion = (
        pd.read_csv(files.confusion_csv, index_col=0).reindex(index=data.classes, columns=data.classes).fillna(0)
    )
    per_class = pd.read_csv(files.per_class)
    scores = Scores(
        accuracy=float(scored.get("accuracy", np.nan)),
        macro_f1=float(scored.get("macro_f1", np.nan)),
        per_class=per_class,
        confusion=confusion.to_numpy(dtype=int),
    )
    lead = (
        f"imgclf evaluate on {scored.get('evaluated_on', 'labelled images')}: {int(scores.confusion.sum())} images, "
        f"accuracy {scores.accuracy:.4f}, macro-F1 {scores.macro_f1:.4f}."
    )
    return scores, lead


def results_sections(data: RunData) -> list[str]:
    from imgclf.eval.scores import most_confused
    from imgclf.report.figures import confusion_figure
    from imgclf.report.figures import per_class_figure

    scores = validation_scores(data)
    lead = ""
    if scores is None:
        scores, lead = evaluated_scores(data)
    else:
        lead = f"Validation: {int(scores.confusion.sum())} images, accuracy {scores.accuracy:.4f}, macro-F1 {scores.macro_f1:.4f}."
    if scores is None:
        note = h.paragraph(lead, "note")
        return [
            h.section(title, note)
            for title in ("Confusion matrix", "Per-class precision and recall", "Most confused classes")
        ]
    confusion = h.section(
        "Confusion matrix",
        h.paragraph(lead),
        h.image(fig_to_base64(confusion_figure(scores.confusion, data.classes)), "confusion matrix"),
    )
    per_class = h.section(
        "Per-class precision and recall",
        h.image(fig_to_base64(per_class_figure(scores.per_class)), "per-class precision and recall"),
        h.table(scores.per_class.sort_values("f1", kind="stable"), highlight={"f1": "min"}),
    )
    pairs = [
        {"true class": t, "predicted as": p, "images": n}
        for t, p, n in most_confused(scores.confusion, data.classes, top=15)
    ]
    confused = h.section(
        "Most confused classes",
        h.table(pairs) if pairs else h.paragraph("No mistakes on the validation split.", "note"),
    )
    # Side by side on a wide screen: the matrix shows where mistakes go, the bars which classes suffer.
    return [f'<div class="row">{confusion}{per_class}</div>', confused]


def thumbnail(path: Path | None, alt: str) -> str:
    from imgclf.report.cleaning import thumbnail_uri

    uri = thumbnail_uri(path, THUMB) if path is not None else None
    if uri is None:  # a card without an <img>: nothing undecodable ever reaches the page
        return '<div class="nothumb">no preview</div>'
    return f'<img src="{uri}" alt="{h.escape(alt)}">'


def gallery_section(data: RunData, size: int = GALLERY_SIZE) -> str:
    title = "Most confidently wrong validation images"
    preds = data.predictions
    if preds is None or preds.empty:
        return h.section(title, h.paragraph("No val_predictions.csv.", "note"))
    correct = preds["correct"].astype(str).str.lower().isin(("true", "1"))
    wrong = preds[~correct].sort_values("confidence", ascending=False, kind="stable").head(size)
    if wrong.empty:
        return h.section(title, h.paragraph("Every validation image was classified correctly.", "note"))
    cards = []
    for row in wrong.itertuples(index=False):
        path = data.dataset_root / str(row.path) if data.dataset_root else None
        cards.append(
            f'<div class="card">{thumbnail(path, str(row.path))}true: <b>{h.escape(row.label)}</b><br>'
            f'predicted: <span class="wrong">{h.escape(row.pred)}</span><br>confidence {float(row.confidence):.3f}<br>'
            f'<span class="note">{h.escape(row.path)}</span></div>'
        )
    note = "" if data.dataset_root else h.paragraph("The run's dataset folder is gone: no previews.", "note")
    lead = h.paragraph(
        f"{int((~correct).sum())} of {len(preds)} validation images are wrong; the {len(wrong)} most confident mistakes:"
    )
    return h.section(title, lead, note, f'<div class="gallery">{"".join(cards)}</div>')


def augmentation_section(data: RunData, n: int = 6, max_classes: int = 8) -> str:
    from imgclf.data.samples import load_training_set
    from imgclf.data.transforms import Preprocessing
    from imgclf.report.augs import aug_preview
    from imgclf.run.trust import run_config

    title = "Augmentation preview"
    if data.dataset_root is None or not data.run.preprocessing.is_file():
        return h.section(title, h.paragraph("The run's dataset folder or preprocessing.json is missing.", "note"))
    cfg = run_config(data.run)  # its cache_dir is the user's to choose, not the run's
    pre = Preprocessing.from_dict(json.loads(data.run.preprocessing.read_text()))
    samples = load_training_set(data.dataset_root, Path(cfg.data.blocklist) if cfg.data.blocklist else None)
    grid = aug_preview(samples, cfg.data, pre, n=n, per_class=1, max_classes=max_classes)
    buf = io.BytesIO()
    grid.save(buf, format="PNG")
    caption = h.paragraph(
        f"data.augment={cfg.data.augment}, image size {pre.image_size}: the original, the validation view, "
        f"then {n} training augmentations (as the training pipeline draws them).",
        "note",
    )
    return h.section(title, caption, h.image(base64.b64encode(buf.getvalue()).decode("ascii"), "augmentation preview"))


def cleaning_section(data: RunData) -> str | None:
    root = data.dataset_root
    if root is None:
        return None
    if (root / "manifest.csv").is_file():
        from imgclf.data.manifest import read_manifest
        from imgclf.report.cleaning import class_counts, flag_counts

        table = read_manifest(root)
        flags = [{"flag": f, "files": n} for f, n in flag_counts(table).items()]
        return h.section(
            "Cleaning summary",
            h.paragraph(f"From {root / 'manifest.csv'} (full report: {root / 'cleaning_report.html'})."),
            h.table(flags) if flags else h.paragraph("No file was flagged.", "note"),
            h.table(class_counts(table)),
        )
    if (root / "cleaning_report.md").is_file():
        return h.section("Cleaning summary", h.preformatted((root / "cleaning_report.md").read_text()))
    return None


def tta_section(data: RunData) -> str | None:
    path = data.run.eval.tta_compare_csv
    if not path.is_file():
        return None
    return h.section(
        "Test-time augmentation",
        h.paragraph(f"From {path.relative_to(data.run.root)}.", "note"),
        h.table(pd.read_csv(path)),
    )


def reliability_series(calibration: dict[str, Any]) -> dict[str, tuple[list[float], list[float]]]:
    """Named ``(confidence, accuracy)`` bins from calibration.json's ``reliability`` entry.

    Accepts one curve (``{"confidence": [...], "accuracy": [...]}`` or a list of bin dicts) or
    several named ones (``{"before": curve, "after": curve}``); anything else gives no curve.
    """

    def curve(obj: Any) -> tuple[list[float], list[float]] | None:
        if isinstance(obj, list) and obj and all(isinstance(b, dict) for b in obj):
            obj = {k: [b.get(k) for b in obj] for k in obj[0]}
        if not isinstance(obj, dict):
            return None
        conf = next((obj[k] for k in ("confidence", "mean_confidence", "conf") if k in obj), None)
        acc = next((obj[k] for k in ("accuracy", "acc") if k in obj), None)
        if conf is None or acc is None or len(conf) != len(acc):
            return None
        return [float("nan") if v is None else float(v) for v in conf], [
            float("nan") if v is None else float(v) for v in acc
        ]

    rel = calibration.get("reliability")
    single = curve(rel)
    if single is not None:
        return {"validation": single}
    if isinstance(rel, dict):
        return {str(name): c for name, value in rel.items() if (c := curve(value)) is not None}
    return {}


def calibration_section(data: RunData) -> str | None:
    from imgclf.report.figures import reliability_figure

    calibration = data.run.read_calibration()
    if not calibration:
        return None
    flat = [{"": k, "value": v} for k, v in calibration.items() if isinstance(v, (int, float, str, bool))]
    parts = [h.table(flat, ["", "value"], text_columns=[""])] if flat else []
    series = reliability_series(calibration)
    if series:
        parts.append(h.image(fig_to_base64(reliability_figure(series)), "reliability diagram"))
    else:
        parts.append(h.paragraph("calibration.json holds no reliability bins.", "note"))
    return h.section("Calibration", *parts)


# ------------------------------------------------------------------ the page


def _guarded(title: str, draw: Callable[[], str | None]) -> str | None:
    """One section that cannot be drawn becomes a note, not a missing report."""
    try:
        return draw()
    except (ImgclfError, OSError, ValueError, KeyError, pd.errors.ParserError) as exc:
        log.warning("report: could not draw %s: %s", title.lower(), exc)
        return h.section(title, h.paragraph(f"Could not draw this section: {exc}", "note"))


def render_run_report(run_dir: Path) -> str:
    """The whole page as a string."""
    data = read_run(run_dir)
    classes = not data.run.task.is_file()  # a multilabel or regression run has task.json (imgclf.task)
    parts = [
        overview_section(data),
        _guarded("Budget recipe", lambda: recipe_section(data.run)),
        _guarded("Learning curves", lambda: curves_section(data)),
        _guarded("Validation results", lambda: "".join(results_sections(data)))
        if classes
        else _guarded("Validation results", lambda: target_sections(data.run, data.predictions)),
        _guarded("Most confidently wrong validation images", lambda: gallery_section(data)) if classes else None,
        _guarded("Augmentation preview", lambda: augmentation_section(data)),
        _guarded("Cleaning summary", lambda: cleaning_section(data)),
        _guarded("Test-time augmentation", lambda: tta_section(data)),
        _guarded("Calibration", lambda: calibration_section(data)),
        config_section(data),
    ]
    acc, estimate = data.summary.get("val_accuracy"), recipe_estimate(data.summary)
    subtitle = " · ".join(
        str(s)
        for s in (
            data.summary.get("backbone"),
            data.summary.get("weights"),
            f"{estimate.get('metric', 'accuracy')} estimate {estimate['value']:.3f} ± {estimate['se']:.3f}"
            if estimate
            else f"validation accuracy {acc:.4f}"
            if isinstance(acc, (int, float)) and not np.isnan(acc)
            else None,
            data.run.root.resolve(),
        )
        if s
    )
    document = h.page(f"Run report: {data.name}", *(p for p in parts if p), subtitle=subtitle)
    return document.replace("</style>", _EXTRA_CSS + "</style>", 1)


def write_run_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write the report (default ``RUN_DIR/report.html``) atomically; return its path."""
    out = Path(out) if out else RunDir(Path(run_dir)).report
    return h.write_page(out, render_run_report(run_dir))


def write_run_report_safely(run_dir: Path) -> Path | None:
    """For the end of training: a report that cannot be drawn is a warning, never a failed run."""
    try:
        return write_run_report(run_dir)
    except Exception as exc:  # noqa: BLE001 — the trained model matters more than its report
        log.warning(
            "could not write %s: %s; re-create it with `imgclf report %s`",
            RunDir(Path(run_dir)).report,
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            run_dir,
        )
        return None
