"""bench/datasets.py: the no-up and imbalanced variants of the demo data (file-level helpers; the
full materialisation writes 1,000 test images and is exercised by bench/peers.py, not here)."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.data.demo import CLASS_NAMES
from imgclf.data.dihedral import dihedral
from imgclf.errors import ConfigError, DataError

# bench/ holds scripts, not a package: load this one by path, under a name nothing else uses.
_spec = importlib.util.spec_from_file_location(
    "bench_datasets", Path(__file__).resolve().parents[1] / "bench" / "datasets.py"
)
bench_datasets = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_datasets)


def _write(folder: Path, names: list[str], rng: np.random.Generator) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name in names:
        arr = rng.integers(0, 256, (28, 28), dtype=np.uint8)
        Image.fromarray(arr).save(folder / name)
        arrays[name] = arr
    return arrays


def test_noup_turns_every_image_by_an_element_of_d4(tmp_path):
    rng = np.random.default_rng(0)
    before = _write(tmp_path / "train" / "Bag", [f"train_{i:05d}.png" for i in range(12)], rng)
    before_test = _write(tmp_path / "test", [f"test_{i:05d}.png" for i in range(12)], rng)
    bench_datasets._turn_every_image(tmp_path, seed=0)
    used = set()
    for folder, originals in ((tmp_path / "train" / "Bag", before), (tmp_path / "test", before_test)):
        for name, arr in originals.items():
            after = np.asarray(Image.open(folder / name))
            ks = [k for k in range(8) if np.array_equal(after, np.asarray(dihedral(Image.fromarray(arr), k)))]
            assert len(ks) == 1
            used.add(ks[0])
    assert len(used) > 3  # not all left upright


def test_imbalanced_keeps_a_geometric_decay_and_the_first_images(tmp_path):
    rng = np.random.default_rng(0)
    for name in CLASS_NAMES:
        _write(tmp_path / "train" / name, [f"train_{i:05d}.png" for i in range(20)], rng)
    bench_datasets._drop_to_sizes(tmp_path / "train", imbalance=10)
    sizes = [len(list((tmp_path / "train" / name).iterdir())) for name in CLASS_NAMES]
    assert sizes == bench_datasets.imbalanced_sizes(20, 10) and sizes[0] == 20 and sizes[-1] == 2
    assert sorted(p.name for p in (tmp_path / "train" / CLASS_NAMES[-1]).iterdir()) == [
        "train_00000.png",
        "train_00001.png",
    ]


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="kind"):
        bench_datasets.materialise("rotated", tmp_path / "x")
    with pytest.raises(ConfigError, match="imbalance"):
        bench_datasets.imbalanced_sizes(10, 0.5)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("user data")
    with pytest.raises(DataError, match="not written by"):
        bench_datasets.materialise("noup", tmp_path / "mine")
    assert (tmp_path / "mine" / "keep.txt").read_text() == "user data"


def _fake_upstream(folder: Path, n: int = 10_000) -> np.ndarray:
    """idx files like Debian's: image ``i`` carries its own row number in its first two pixels, label ``i % 10``."""
    import gzip

    folder.mkdir()
    images = np.zeros((n, 28, 28), np.uint8)
    images[:, 0, 0], images[:, 0, 1] = np.arange(n) % 256, np.arange(n) // 256
    labels = (np.arange(n) % 10).astype(np.uint8)
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(b"\0" * 16 + images.tobytes())
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(b"\0" * 8 + labels.tobytes())
    return labels


def test_extra_test_images_come_from_the_rest_of_the_official_test_split(tmp_path):
    import csv

    from imgclf.data.demo import DemoPaths, demo_npz_bytes

    labels = _fake_upstream(tmp_path / "upstream")
    paths = DemoPaths.for_root(tmp_path / "ds")
    (paths.dataset / "test").mkdir(parents=True)
    paths.answers.parent.mkdir(parents=True)
    paths.answers.write_text("Id,Category,label\n")
    (paths.dataset / "sample_submission.csv").write_text("Id,Category\n")
    changed = []
    bench_datasets._add_extra_test(
        paths,
        40,
        seed=0,
        upstream=tmp_path / "upstream",
        change=lambda folder, seed: changed.append((len(list(folder.iterdir())), seed)),
    )
    assert changed == [(40, 1)]  # the kind's change (noup, small) turns the extra images too, with their own seed

    with np.load(io.BytesIO(demo_npz_bytes())) as npz:
        taken = set(npz["test_source_index"].tolist())
    rows = list(csv.DictReader(paths.answers.open()))
    assert len(rows) == 40 and len(list((paths.dataset / "test").iterdir())) == 40
    sample = list(csv.DictReader((paths.dataset / "sample_submission.csv").open()))
    assert [r["Id"] for r in sample] == [r["Id"] for r in rows]
    per_class = {}
    for r in rows:
        pixels = np.asarray(Image.open(paths.dataset / "test" / r["Id"]))
        source = int(pixels[0, 0]) + 256 * int(pixels[0, 1])
        assert r["Id"] == f"extra_{source + 1:05d}.png" and source not in taken
        assert r["label"] == CLASS_NAMES[labels[source]]
        per_class[r["label"]] = per_class.get(r["label"], 0) + 1
    assert per_class == {name: 4 for name in CLASS_NAMES}


def test_extra_test_refuses_a_missing_source_or_an_uneven_count(tmp_path):
    with pytest.raises(ConfigError, match="multiple of 10"):
        bench_datasets.materialise("demo", tmp_path / "x", extra_test=15)
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        bench_datasets.read_upstream_test(tmp_path / "nowhere")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_defects_layout_counts_and_answers(tmp_path, capsys):
    import csv

    out = tmp_path / "defects"
    assert (
        bench_datasets.main(
            ["defects", str(out), "--train-per-class", "3", "--test-per-class", "2", "--extra-test", "8"]
        )
        == 0
    )
    dataset = out / "dataset"
    assert sorted(p.name for p in (dataset / "train").iterdir()) == sorted(bench_datasets.DEFECT_CLASSES)
    for name in bench_datasets.DEFECT_CLASSES:
        assert sorted(p.name for p in (dataset / "train" / name).iterdir()) == [
            f"{name}_{i:05d}.png" for i in (1, 2, 3)
        ]
    tests = sorted(p.name for p in (dataset / "test").iterdir())
    assert tests == sorted(f"{prefix}_{i:05d}.png" for prefix in ("test", "extra") for i in range(1, 9))
    rows = list(csv.DictReader((out / "answers" / "test_labels.csv").open()))
    assert list(rows[0]) == ["Id", "Category", "label"]
    assert sorted(r["Id"] for r in rows) == tests and len(rows) == 16
    sample = list(csv.DictReader((dataset / "sample_submission.csv").open()))
    assert list(sample[0]) == ["Id", "Category"] and [r["Id"] for r in sample] == [r["Id"] for r in rows]
    index_of = {name: i for i, name in enumerate(sorted(bench_datasets.DEFECT_CLASSES))}
    assert all(int(r["Category"]) == index_of[r["label"]] for r in rows)
    for prefix in ("test_", "extra_"):  # 2 a class in the test set, 8 / 4 a class in the extra images
        labels = [r["label"] for r in rows if r["Id"].startswith(prefix)]
        assert sorted(labels) == sorted(bench_datasets.DEFECT_CLASSES * 2)
    for path in [*(dataset / "train").rglob("*.png"), *(dataset / "test").iterdir()]:
        with Image.open(path) as image:
            assert image.mode == "L" and image.size == (bench_datasets.DEFECT_CANVAS,) * 2
    assert (out / bench_datasets.MARKER).is_file() and "train images 12" in capsys.readouterr().out


def test_defects_are_reproducible_and_independent_of_the_other_sizes(tmp_path):
    build = bench_datasets.materialise
    full = _files(build("defects", tmp_path / "a", train_per_class=3, test_per_class=2, extra_test=8).root)
    assert _files(build("defects", tmp_path / "b", train_per_class=3, test_per_class=2, extra_test=8).root) == full
    plain = _files(build("defects", tmp_path / "c", train_per_class=2, test_per_class=2).root)
    images = {k: v for k, v in plain.items() if k.endswith(".png")}
    assert images and all(full[k] == v for k, v in images.items())  # the first images of a larger set, byte for byte
    other = _files(build("defects", tmp_path / "d", train_per_class=2, test_per_class=2, seed=1).root)
    assert all(other[k] != v for k, v in images.items())


def test_a_defect_changes_a_small_area_of_the_same_background():
    render = bench_datasets.render_defect
    for seed in range(6):
        good = np.asarray(render("good", np.random.default_rng(seed)), int)
        for name in ("scratch", "crack", "spots"):
            marked = np.asarray(render(name, np.random.default_rng(seed)), int)
            changed = marked != good
            assert 0 < changed.mean() < 0.05, (name, seed, changed.mean())
            ys, xs = np.nonzero(changed)
            assert np.ptp(ys) < 90 and np.ptp(xs) < 90  # one mark, not noise over the image
            assert np.abs(marked - good).max() >= 8  # faint, but there
    assert not np.array_equal(
        np.asarray(render("good", np.random.default_rng(0))), np.asarray(render("good", np.random.default_rng(1)))
    )
    with pytest.raises(ConfigError, match="defect class"):
        render("dent", np.random.default_rng(0))


def test_defects_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="multiple of 4"):
        bench_datasets.materialise("defects", tmp_path / "x", extra_test=10)
    with pytest.raises(ConfigError, match="defects kind only"):
        bench_datasets.materialise("demo", tmp_path / "y", test_per_class=5)
    with pytest.raises(ConfigError, match="at least one image"):
        bench_datasets.materialise("defects", tmp_path / "z", train_per_class=0)
