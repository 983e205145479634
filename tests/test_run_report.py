"""The run report: every section, self-contained, optional parts from the files that hold them."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from report_run import trained_run

from imgclf.cli.main import run
from imgclf.report.run_report import (
    cleaning_section,
    gallery_section,
    read_run,
    reliability_series,
    render_run_report,
    write_run_report,
    write_run_report_safely,
)

SECTIONS = [
    "Overview",
    "Learning curves",
    "Confusion matrix",
    "Per-class precision and recall",
    "Most confused classes",
    "Most confidently wrong validation images",
    "Augmentation preview",
    "Config",
]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> Path:
    return trained_run(tmp_path_factory)


@pytest.fixture
def run_copy(real_run, tmp_path) -> Path:
    """A copy of the real run that a test may change."""
    return Path(shutil.copytree(real_run, tmp_path / "run", ignore=shutil.ignore_patterns("checkpoints")))


def section_titles(page: str) -> list[str]:
    return re.findall(r"<h2>(.*?)</h2>", page)


def test_train_writes_report_with_every_section(real_run):
    page = (real_run / "report.html").read_text()
    titles = section_titles(page)
    assert all(title in titles for title in SECTIONS), titles
    assert "test_efficientnet" in page and "train.epochs" not in page  # the config is shown as YAML
    assert "epochs: 1" in page


def test_report_is_self_contained(real_run):
    page = (real_run / "report.html").read_text()
    assert not re.search(r"https?://", page, re.IGNORECASE)
    assert "<link" not in page and "<script" not in page and "url(" not in page and "@import" not in page
    sources = re.findall(r"<img[^>]*\ssrc=\"([^\"]*)\"", page)
    assert len(sources) == page.count("<img") >= 5  # curves, confusion, per-class, augmentations, thumbnails
    assert all(s.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")) for s in sources)


def test_gallery_lists_most_confident_mistakes_first(run_copy):
    preds = pd.read_csv(run_copy / "val_predictions.csv")
    preds["correct"] = False
    preds["confidence"] = [0.1 * (i + 1) for i in range(len(preds))]
    preds.loc[0, "correct"] = True  # a right answer never enters the gallery
    preds.to_csv(run_copy / "val_predictions.csv", index=False)
    gallery = gallery_section(read_run(run_copy))
    shown = re.findall(r"confidence (\d\.\d+)", gallery)
    assert [float(c) for c in shown] == pytest.approx(sorted(preds["confidence"][1:], reverse=True), abs=1e-3)
    assert gallery.count("<img") == len(preds) - 1


def test_missing_dataset_gives_notes_not_broken_images(run_copy):
    (run_copy / "run.json").write_text(json.dumps({"dataset": str(run_copy / "gone")}))
    page = render_run_report(run_copy)
    assert all(t in section_titles(page) for t in SECTIONS)
    assert "no preview" in page or "Every validation image was classified correctly" in page
    assert "dataset folder or preprocessing.json is missing" in page
    assert all(s.startswith("data:image/") for s in re.findall(r"src=\"([^\"]*)\"", page))


def test_optional_sections_appear_when_their_files_exist(run_copy):
    page = (run_copy / "report.html").read_text()
    for title in ("Test-time augmentation", "Cleaning summary"):
        assert title not in section_titles(page)
    (run_copy / "eval").mkdir()
    pd.DataFrame({"mode": ["none", "fixed"], "accuracy": [0.5, 0.75], "forward_passes": [6, 12]}).to_csv(
        run_copy / "eval" / "tta_compare.csv", index=False
    )
    calibration = {
        "temperature": 1.7,
        "ece_before": 0.12,
        "ece_after": 0.03,
        "reliability": {"confidence": [0.3, None, 0.9], "accuracy": [0.2, None, 0.95], "count": [3, 0, 3]},
    }
    (run_copy / "calibration.json").write_text(json.dumps(calibration))
    dataset = Path(json.loads((run_copy / "run.json").read_text())["dataset"])
    (dataset / "cleaning_report.md").write_text("# Cleaning report\n\n- flagged files: **0**\n")
    try:
        page = render_run_report(run_copy)
    finally:
        (dataset / "cleaning_report.md").unlink()
    titles = section_titles(page)
    assert {"Test-time augmentation", "Calibration", "Cleaning summary"} <= set(titles)
    assert "fixed" in page and "0.75" in page and "1.7" in page and "flagged files" in page
    calibration_html = page.split("<h2>Calibration</h2>")[1].split("</section>")[0]
    assert 'alt="reliability diagram"' in calibration_html


def test_cleaning_summary_from_a_prepared_dataset(run_copy, tmp_path):
    from imgclf.data.prepare import PrepareOptions, prepare

    dataset = Path(json.loads((run_copy / "run.json").read_text())["dataset"])
    prepared = tmp_path / "prepared"
    prepare(dataset / "train", prepared, PrepareOptions(workers=1, link=False))
    (run_copy / "run.json").write_text(json.dumps({"dataset": str(prepared)}))
    section = cleaning_section(read_run(run_copy))
    assert "manifest.csv" in section and "kept" in section


def test_reliability_series_accepts_one_curve_or_named_curves():
    one = {"reliability": {"confidence": [0.2, None], "accuracy": [0.1, None], "count": [4, 0]}}
    assert list(reliability_series(one)) == ["validation"]
    bins = {"reliability": [{"confidence": 0.2, "accuracy": 0.3}, {"confidence": 0.8, "accuracy": 0.7}]}
    assert reliability_series(bins)["validation"] == ([0.2, 0.8], [0.3, 0.7])
    named = {
        "reliability": {
            "before": {"confidence": [0.5], "accuracy": [0.4]},
            "after": {"confidence": [0.45], "accuracy": [0.4]},
        }
    }
    assert set(reliability_series(named)) == {"before", "after"}
    assert reliability_series({"temperature": 1.0}) == {}


def test_report_cli_writes_to_out(real_run, tmp_path):
    out = tmp_path / "elsewhere" / "r.html"
    run(["report", str(real_run), "--out", str(out)])
    assert out.is_file() and "<h2>Confusion matrix</h2>" in out.read_text()


def test_report_of_missing_run_is_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        run(["report", str(tmp_path / "nope")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "nope" in err and "Traceback" not in err


def test_a_report_that_cannot_be_drawn_warns_and_returns_none(run_copy, caplog):
    (run_copy / "config.yaml").unlink()
    (run_copy / "report.html").unlink()
    with caplog.at_level(logging.WARNING, logger="imgclf"):
        assert write_run_report_safely(run_copy) is None
    assert "imgclf report" in caplog.text
    assert not (run_copy / "report.html").exists()
    with pytest.raises(Exception):  # noqa: B017 - whatever the damage raises: the safe writer above must catch it
        write_run_report(run_copy)


def test_unreadable_run_file_is_one_line_error(run_copy, capsys):
    (run_copy / "summary.json").write_text("{not json")
    with pytest.raises(SystemExit) as exc:
        run(["report", str(run_copy)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "summary.json" in err and "Traceback" not in err


def _as_budget_run_without_validation(run_dir: Path) -> dict:
    """The run as a --budget run that trained on every image looks: no validation predictions, NaN val tiles, 0
    validation images, and the recipe's estimate in summary.json (the shape the recipe writes)."""
    (run_dir / "val_predictions.csv").unlink()
    summary = json.loads((run_dir / "summary.json").read_text())
    estimate = {
        "metric": "accuracy",
        "value": 0.82,
        "se": 0.015,
        "images": 394,
        "what": "the submitted 2-model blend with 4-view TTA on 394 held-out images no model trained on",
    }
    summary.update(val_accuracy=None, val_images=0, recipe={"budget_seconds": 540, "estimate": estimate})
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return estimate


def test_a_finished_run_with_an_estimate_shows_it_first_and_never_says_it_did_not_finish(run_copy):
    estimate = _as_budget_run_without_validation(run_copy)
    page = render_run_report(run_copy)
    assert "did not finish" not in page
    assert "0 validation images" not in page and ">0</div>validation images" not in page
    assert "—</div>validation accuracy" not in page
    tiles = re.findall(r'<div class="stat"><div class="big">(.*?)</div>(.*?)</div>', page)
    assert tiles[0] == ("0.820 ± 0.015", "accuracy estimate<div>" + estimate["what"])
    assert "accuracy estimate 0.820 ± 0.015" in page  # the subtitle too
    assert "kept no validation split" in page and "imgclf evaluate RUN DATASET" in page


def test_a_run_without_validation_shows_its_latest_evaluation_in_tiles_and_tables(run_copy):
    _as_budget_run_without_validation(run_copy)
    (run_copy / "summary.json").write_text(
        json.dumps({**json.loads((run_copy / "summary.json").read_text()), "recipe": {}})
    )
    page_before = render_run_report(run_copy)
    assert "kept no validation split" in page_before
    (run_copy / "eval").mkdir()
    (run_copy / "eval" / "metrics.json").write_text(
        json.dumps(
            {"accuracy": 0.75, "macro_f1": 0.7, "images": 4, "evaluated_on": "all labelled images of data/cars/holdout"}
        )
    )
    classes = json.loads((run_copy / "classes.json").read_text())
    pd.DataFrame([[1 if i == j else 0 for j in classes] for i in classes], index=classes, columns=classes).to_csv(
        run_copy / "eval" / "confusion_matrix.csv"
    )
    pd.DataFrame({"class": classes, "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}).to_csv(
        run_copy / "eval" / "per_class.csv", index=False
    )
    page = render_run_report(run_copy)
    assert "imgclf evaluate on all labelled images of data/cars/holdout" in page
    assert "accuracy, imgclf evaluate" in page and "kept no validation split" not in page
    assert "did not finish" not in page
