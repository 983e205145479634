"""The README's worked example, run command by command as written, on generated competition-style downloads.

The commands are read from README.md itself (the fenced block under "Your own photos"), so the test
follows the README: only the download path is replaced, the tiny test model is set on the
commands that take ``--set`` and ``--budget`` is shortened to 15 s. The labelled images step 4 evaluates on are
the ones step 1 (``prepare --holdout``) set aside: nothing is built by hand. Sample ids have no file extensions,
as in many competitions.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import TINY, cli, make_image

README = Path(__file__).resolve().parents[1] / "README.md"
CLASSES = ("audi_a4", "bmw_3", "fiat_500")
DOWNLOAD = "~/Downloads/car-competition"


def readme_commands() -> list[list[str]]:
    text = README.read_text()
    section = text[text.index("## Your own photos") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line)[1:] for line in block.splitlines() if line.startswith("imgclf ")]


def class_folder_download(root: Path, per_class: int = 8, test: int = 6) -> Path:
    """train/<class>/*.jpg, test/*.jpg and a sample_submission.csv listing stems (no extensions)."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        (root / "train" / name).mkdir(parents=True)
        for i in range(per_class):
            make_image(rng, c).save(root / "train" / name / f"{name}_{i:03d}.jpg", quality=95)
    (root / "test").mkdir()
    for i in range(test):
        make_image(rng, i % 3).save(root / "test" / f"{i:04d}.jpg", quality=95)
    (root / "sample_submission.csv").write_text("Id,Category\n" + "".join(f"{i:04d},0\n" for i in range(test)))
    return root


def flat_download(root: Path, per_class: int = 8, test: int = 6) -> Path:
    """train_images/*.jpg with train.csv (image_id,label by stem), test_images/ and sample_submission.csv."""
    rng = np.random.default_rng(1)
    (root / "train_images").mkdir(parents=True)
    rows = []
    for c, name in enumerate(CLASSES):
        for i in range(per_class):
            stem = f"tr{c}{i:03d}"
            make_image(rng, c).save(root / "train_images" / f"{stem}.jpg", quality=95)
            rows.append(f"{stem},{name}\n")
    (root / "train.csv").write_text("image_id,label\n" + "".join(rows))
    (root / "test_images").mkdir()
    for i in range(test):
        make_image(rng, i % 3).save(root / "test_images" / f"te{i:03d}.jpg", quality=95)
    (root / "sample_submission.csv").write_text(
        "image_id,label\n" + "".join(f"te{i:03d},{CLASSES[0]}\n" for i in range(test))
    )
    return root


def run_readme(download: Path, workdir: Path, capsys, monkeypatch) -> list[tuple]:
    """Run the README's commands; ``kaggle submit`` goes to a stand-in for the Kaggle client (no network here),
    which records what would have been sent. Returns those records."""
    import imgclf.competition

    sent: list[tuple] = []
    monkeypatch.setattr(
        imgclf.competition,
        "submit_file",
        lambda file, competition, message, api=None: sent.append(
            (Path(file).resolve(), competition, Path(file).read_text())
        ),
    )
    commands = readme_commands()
    assert [c[0] for c in commands] == ["prepare", "show-augs", "train", "evaluate", "evaluate", "predict", "kaggle"]
    for args in commands:
        args = [str(download) if a == DOWNLOAD else a for a in args]
        if args[0] == "train":  # show-augs --budget is a switch; train --budget takes the time
            args = ["15s" if i and args[i - 1] == "--budget" else a for i, a in enumerate(args)]
        if args[0] in ("show-augs", "train"):  # the tiny test model instead of the default backbone
            args += [x for o in TINY for x in ("--set", o)]
        code, _, err = cli(args, capsys)
        assert code == 0, f"imgclf {' '.join(args)} failed: {err}"
    return sent


@pytest.mark.parametrize("layout", ["class_folders", "flat"])
def test_readme_worked_example_runs_end_to_end(layout: str, tmp_path: Path, capsys, monkeypatch):
    make = class_folder_download if layout == "class_folders" else flat_download
    download = make(tmp_path / "download")
    monkeypatch.chdir(tmp_path)
    sent = run_readme(download, tmp_path, capsys, monkeypatch)
    sample = pd.read_csv(download / "sample_submission.csv", dtype=str)
    submission = tmp_path / "runs" / "lite0" / "submission.csv"
    sub = pd.read_csv(submission, dtype=str)
    # kaggle submit found, without --file, the very file predict wrote
    assert sent == [(submission.resolve(), "cars", submission.read_text())]
    assert list(sub.columns) == list(sample.columns)
    assert list(sub.iloc[:, 0]) == list(sample.iloc[:, 0])  # the sample's ids, stems as given, in its order
    expected = {"0", "1", "2"} if layout == "class_folders" else set(CLASSES)
    assert set(sub.iloc[:, 1]) <= expected
    assert (tmp_path / "augs.png").stat().st_size > 1000
    scored = json.loads((tmp_path / "runs" / "lite0" / "eval" / "metrics.json").read_text())
    held_out = sorted(p.name for p in (tmp_path / "data" / "cars" / "holdout" / "train").rglob("*.jpg"))
    assert scored["images"] == len(held_out) > 0  # step 4 scored what step 1 set aside
    assert not set(held_out) & {p.name for p in (tmp_path / "data" / "cars" / "train").rglob("*.jpg")}
