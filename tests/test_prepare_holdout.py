"""``imgclf prepare SRC --out DIR --holdout F``: a labelled, stratified, seeded share of the training images, kept
whole by duplicate group, set aside as DIR/holdout (a dataset folder of its own) and absent from DIR/train."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from conftest import cli, make_dataset
from imgclf.data.manifest import read_manifest
from imgclf.data.samples import load_training_set


def _source(root: Path) -> Path:
    """Three classes of 10 images; in each class, image 0 and a JPEG re-encoding of it (one group)."""
    make_dataset(root, per_class=10, test=0)
    for cls in ("alpha", "beta", "gamma"):
        original = Image.open(root / "train" / cls / f"{cls}_000.png")
        original.save(root / "train" / cls / f"{cls}_copy.jpg", quality=95)
    return root


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_prepare_holdout_sets_a_stratified_grouped_share_aside_as_its_own_dataset(tmp_path: Path, capsys):
    src = _source(tmp_path / "src")
    code, out, err = cli(["prepare", src, "--out", tmp_path / "data", "--holdout", "0.2"], capsys)
    assert code == 0, err
    data = tmp_path / "data"
    held, trained = _files(data / "holdout" / "train"), _files(data / "train")
    assert held and not held & trained  # none of them in train/
    assert len(held) + len(trained) == 33
    assert {h.split("/")[0] for h in held} == {"alpha", "beta", "gamma"}  # every class
    for cls in ("alpha", "beta", "gamma"):  # a duplicate group is never split between them
        assert (f"{cls}/{cls}_000.png" in held) == (f"{cls}/{cls}_copy.jpg" in held)
    manifest = read_manifest(data)
    copies = manifest[manifest["path"].str.endswith("_copy.jpg")]
    assert len(copies) == 3 and all(copies["dup_group"])  # prepare grouped each copy with its original
    assert (manifest["split"] == "holdout").sum() == len(held)
    assert set(manifest.loc[manifest["split"] == "holdout", "path"]) == {f"holdout/train/{h}" for h in held}
    assert "held out" in out
    # what training reads: the rest; what evaluate reads: the holdout, labelled
    assert len(load_training_set(data).paths) == len(trained)
    holdout = load_training_set(data / "holdout")
    assert sorted(holdout.classes) == ["alpha", "beta", "gamma"] and len(holdout.paths) == len(held)
    # seeded: the same draw again, and a re-run without --holdout puts them back
    assert cli(["prepare", src, "--out", tmp_path / "again", "--holdout", "0.2"], capsys)[0] == 0
    assert _files(tmp_path / "again" / "holdout" / "train") == held
    assert cli(["prepare", src, "--out", data], capsys)[0] == 0
    assert not _files(data / "holdout") and len(_files(data / "train")) == 33


def test_prepare_holdout_outside_zero_to_one_is_one_line_exit_2(tmp_path: Path, capsys):
    src = _source(tmp_path / "src")
    for bad in ("0", "1", "1.5", "-0.2"):
        code, _, err = cli(["prepare", src, "--out", tmp_path / "data", "--holdout", bad], capsys)
        assert code == 2 and "--holdout must be a share between 0 and 1" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists()
