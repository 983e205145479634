"""The report of a real run, opened in headless Chromium: no console errors, every image decoded, a non-blank page.

Chromium comes from Debian (``apt-get install -y chromium``, done by .ci/run). Without it the
test is skipped locally, but fails under ``CI=true``: CI must never skip it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from report_run import trained_run

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
WINDOW = (1280, 2000)
TIMEOUT = 90

# Injected into a copy of the report (the report itself has no scripts): after the load event it
# records, on <body>, how many <img> elements there are and which did not decode.
_PROBE = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                     .map(function (i) { return i.alt || i.src.slice(0, 60); });
  document.body.setAttribute("data-images-total", String(images.length));
  document.body.setAttribute("data-images-broken", JSON.stringify(broken));
  document.body.setAttribute("data-probe", "done");
});
</script>"""


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(
                "chromium is not installed; .ci/run must `apt-get install -y chromium` (this test never skips in CI)"
            )
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    return path


def chromium_run(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--hide-scrollbars",
        "--mute-audio",
        f"--user-data-dir={profile}",
    ]
    result = subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, f"chromium exited {result.returncode}: {result.stderr[-2000:]}"
    return result


def console_messages(stderr: str) -> list[str]:
    """Chromium's ``--enable-logging=stderr`` lines for page console output (any level)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    path = trained_run(tmp_path_factory) / "report.html"
    assert path.is_file(), "train did not write report.html"
    return path


def test_report_opens_in_chromium_without_errors_and_every_image_decodes(chromium, report, tmp_path):
    page = report.read_text()
    assert "<script" not in page  # the probe below is the only script the browser runs
    _, attrs = _probe(chromium, report, tmp_path)  # no console message, the load event fired, no broken image
    assert int(attrs["data-images-total"]) == page.count("<img") >= 5


def test_report_screenshot_is_not_blank(chromium, report, tmp_path):
    shot = tmp_path / "report.png"
    chromium_run(
        chromium,
        tmp_path / "profile",
        f"--screenshot={shot}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        report.as_uri(),
    )
    image = Image.open(shot).convert("L")
    assert image.size == WINDOW
    pixels = np.asarray(image, dtype=np.float64)
    assert pixels.std() > 20  # text, plots and thumbnails, not an empty white (or black) page
    assert (pixels < 128).mean() > 0.01


def test_the_checks_catch_a_broken_image_and_a_console_error(chromium, tmp_path):
    """Negative control: the same probe and log parsing report what a bad page does."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><body><img alt="ok" src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==">'
        '<img alt="missing" src="missing.png"><script>undefined_function();</script>' + _PROBE + "</body></html>"
    )
    result = chromium_run(
        chromium,
        tmp_path / "profile",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
        "--dump-dom",
        bad.as_uri(),
    )
    assert any("undefined_function" in line for line in console_messages(result.stderr))
    assert 'data-images-total="2"' in result.stdout
    assert "missing" in re.search(r'data-images-broken="([^"]*)"', result.stdout).group(1)


@pytest.fixture(scope="module")
def budget_report(tmp_path_factory) -> Path:
    """The report of a real ``train --budget`` run (tiny model and data), as the README's step 3 makes it."""
    from conftest import TINY, make_dataset

    from imgclf.cli.main import run

    root = tmp_path_factory.mktemp("budget-report")
    dataset = make_dataset(root / "data", per_class=8, test=0)
    args = ["train", str(dataset), "--out", str(root / "run"), "--budget", "30s"]
    for item in TINY:
        args += ["--set", item]
    run(args)
    return root / "run" / "report.html"


def test_a_budget_runs_report_shows_its_estimate_and_what_it_rests_on_in_chromium(chromium, budget_report, tmp_path):
    summary = json.loads((budget_report.parent / "summary.json").read_text())
    estimate = summary["recipe"]["estimate"]
    page = budget_report.read_text()
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", _PROBE + "</body>", 1))
    result = chromium_run(
        chromium,
        tmp_path / "profile",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
        "--dump-dom",
        probed.as_uri(),
    )
    assert console_messages(result.stderr) == []
    dom = result.stdout
    assert 'data-probe="done"' in dom and 'data-images-broken="[]"' in dom
    text = re.sub(r"<[^>]+>", " ", dom)  # what the reader sees
    assert f"{estimate['value']:.3f} ± {estimate['se']:.3f}" in text and "accuracy estimate" in text
    assert "held-out images no model trained on" in text  # what the estimate rests on
    assert "did not finish" not in text and "0 validation images" not in text


def _probe(chromium: str, page: Path, tmp_path: Path) -> tuple[str, dict]:
    """The page opened in Chromium with the image probe: the DOM it ends with and the probe's attributes."""
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", _PROBE + "</body>", 1))
    result = chromium_run(
        chromium,
        tmp_path / "profile",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
        "--dump-dom",
        probed.as_uri(),
    )
    assert console_messages(result.stderr) == []
    body = re.search(r"<body([^>]*)>", result.stdout)
    assert body is not None, result.stdout[:500]
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))
    assert attrs.get("data-probe") == "done" and json.loads(attrs["data-images-broken"].replace("&quot;", '"')) == []
    return result.stdout, attrs


@pytest.fixture(scope="module")
def cleaning_report(tmp_path_factory) -> Path:
    """``prepare`` on look-alike micrographs plus one photo copied under two classes (a label conflict)."""
    import importlib.util

    from imgclf.cli.main import run

    spec = importlib.util.spec_from_file_location(
        "dedup_corpus", Path(__file__).resolve().parents[1] / "bench" / "dedup_corpus.py"
    )
    corpus = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(corpus)
    root = tmp_path_factory.mktemp("cleaning-report")
    for k, image in enumerate(corpus.lookalike_images(36, side=96)):
        (root / "src/train" / "ab"[k % 2]).mkdir(parents=True, exist_ok=True)
        image.save(root / "src/train" / "ab"[k % 2] / f"la{k:02d}.jpg", quality=90)
    photo = corpus.photo(3)
    photo.save(root / "src/train/a/photo.jpg", quality=90)
    photo.resize((96, 72)).save(root / "src/train/b/photo_small.jpg", quality=80)
    run(["prepare", str(root / "src"), "--out", str(root / "out"), "--workers", "1"])
    return root / "out" / "cleaning_report.html"


def test_cleaning_report_shows_proposed_and_lookalike_pairs_side_by_side_in_chromium(
    chromium, cleaning_report, tmp_path
):
    dom, attrs = _probe(chromium, cleaning_report, tmp_path)
    pairs = re.findall(r"<div class=\"pair\" data-flag=\"(\w+)\">(.*?)</div>", dom, flags=re.DOTALL)
    conflicts = [body for flag, body in pairs if flag == "label_conflict"]
    lookalikes = [body for flag, body in pairs if flag == "lookalike"]
    assert len(conflicts) == 2 and lookalikes  # both sides of the conflict are proposed; look-alikes are shown too
    for body in conflicts + lookalikes:  # two decoded thumbnails and the evidence, side by side
        assert body.count("<img ") == 2 and (" copy (aligned residual" in body or "different capture (" in body)
    assert (
        'alt="train/a/photo.jpg"' in conflicts[0] + conflicts[1]
        and 'alt="train/b/photo_small.jpg"' in conflicts[0] + conflicts[1]
    )
    text = re.sub(r"<[^>]+>", " ", dom)
    assert "real evidence that one of the two labels is wrong" in text and "--group-lookalikes" in text
    assert int(attrs["data-images-total"]) >= 2 * len(pairs)


def test_label_issue_review_page_shows_each_candidate_as_a_thumbnail_in_chromium(chromium, tmp_path):
    from imgclf.report.label_review import write_label_review

    for name in ("a/1.jpg", "b/2.png"):
        (tmp_path / "data/train" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(
            tmp_path / "data/train" / name
        )
    issues = tmp_path / "cv" / "label_issues.csv"
    issues.parent.mkdir()
    issues.write_text(
        "# comment\nkey,reason\ntrain/b/2.png,label issue #1: labelled b (p=0.010)\ntrain/a/1.jpg,label issue #2: labelled a (p=0.200)\n"
    )
    page = write_label_review(issues, tmp_path / "data")
    assert page == tmp_path / "cv" / "label_issues.html"
    dom, attrs = _probe(chromium, page, tmp_path)
    assert attrs["data-images-total"] == "2"
    assert dom.index('alt="train/b/2.png"') < dom.index('alt="train/a/1.jpg"')  # in rank order
    assert "label issue #1: labelled b" in dom
