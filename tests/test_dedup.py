"""Near copies: candidate search, pixel verification, stars not chains, safe defaults and the guard."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest
from conftest import cli
from PIL import Image

from imgclf.data.blocklist import load_blocklist
from imgclf.data.clean import analyze_file
from imgclf.data.duplicates import Item, find_duplicates
from imgclf.data.hashindex import radius_pairs
from imgclf.data.manifest import read_manifest
from imgclf.data.prepare import PrepareOptions, prepare
from imgclf.data.samples import load_training_set
from imgclf.data.verdicts import assess

_spec = importlib.util.spec_from_file_location(
    "dedup_corpus", Path(__file__).resolve().parents[1] / "bench" / "dedup_corpus.py"
)
corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus)


def _records(root: Path) -> list[dict]:
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        split, label = ("test", "") if rel.startswith("test/") else ("train", rel.split("/")[1])
        out.append({"path": rel, "label": label, "split": split, **analyze_file(path).to_dict()})
    return out


# --------------------------------------------------------------------------- the candidate index


def test_radius_pairs_finds_exactly_the_brute_force_pairs():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, 300, dtype=np.uint64)
    flips = np.array(
        [sum(1 << int(b) for b in rng.choice(64, int(rng.integers(0, 10)), replace=False)) for _ in range(300)],
        dtype=np.uint64,
    )
    hashes = np.concatenate([base, base ^ flips])  # 300 planted neighbours at 0-9 bits
    queries, owners = hashes[:50] ^ np.uint64(0b1011), np.arange(50)
    found = radius_pairs(hashes, 7, queries, owners)
    dist = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    qdist = np.bitwise_count(queries[:, None] ^ hashes[None, :])
    want = {(i, j) for i, j in zip(*np.nonzero(dist <= 7)) if i < j}
    want |= {(min(o, j), max(o, j)) for o, j in zip(*np.nonzero(qdist <= 7)) if o != j}
    assert set(zip(found.i.tolist(), found.j.tolist())) == want
    assert len(want) > 200  # the planted pairs are there, so the test means something


def test_groups_are_stars_never_chains():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(64, 64)).astype(np.float32)
    b = a + 0.33 * rng.normal(size=a.shape).astype(np.float32)  # ~0.95 to a
    c = b + 0.33 * rng.normal(size=a.shape).astype(np.float32)  # ~0.95 to b, ~0.91 to a
    thumbs = {Path("a"): a, Path("b"): b, Path("c"): c}
    items = [Item(n, Path(n), n, "0" * 16, [], area, 1) for n, area in (("a", 300), ("b", 200), ("c", 100))]
    found = find_duplicates(items, threshold=0.93, load_many=lambda paths: [thumbs[p] for p in paths])
    assert found.group_members() == [[0, 1]]  # c matched b, but b is not a representative: no chain to a
    assert found.summary.candidates == 2 and found.summary.rejected == 1


def _rejecting_search(hashes: list[int]) -> dict:
    rng = np.random.default_rng(2)
    items = [Item(str(k), Path(str(k)), str(k), f"{h:016x}", [], 1, 1) for k, h in enumerate(hashes)]
    found = find_duplicates(
        items, load_many=lambda paths: [rng.normal(size=(64, 64)).astype(np.float32) for _ in paths]
    )
    return vars(found.summary)


def test_a_set_of_look_alike_hashes_is_called_homogeneous():
    rng = np.random.default_rng(3)
    base = int(rng.integers(0, 2**63))
    close = [base ^ sum(1 << int(b) for b in rng.choice(64, 8, replace=False)) for _ in range(200)]
    spread = [int(h) for h in rng.integers(0, 2**63, 200, dtype=np.uint64)]
    homogeneous, varied = _rejecting_search(close), _rejecting_search(spread)
    assert homogeneous["homogeneous"] and homogeneous["median_nn_distance"] <= 12 and homogeneous["verified"] == 0
    assert not varied["homogeneous"] and varied["median_nn_distance"] > 12


def test_a_copy_found_through_a_member_joins_the_representatives_star():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(64, 64)).astype(np.float32)
    thumbs = {Path(n): a + 0.1 * rng.normal(size=a.shape).astype(np.float32) for n in "bc"} | {Path("a"): a}
    hashes = {"a": 0, "b": 0b111111, "c": 0b111111111111}  # c is a hash candidate of b (6 bits), not of a (12)
    items = [Item(n, Path(n), n, f"{hashes[n]:016x}", [], area, 1) for n, area in (("a", 300), ("b", 200), ("c", 100))]
    found = find_duplicates(items, load_many=lambda paths: [thumbs[p] for p in paths])
    assert found.group_members() == [[0, 1, 2]]
    assert found.rep[found.node[2]] == found.node[0]  # verified against a, not chained through b
    assert found.evidence(2, 0).startswith(
        "near copy (detail correlation 0.99"
    ) and "hash distance 12" in found.evidence(2, 0)
    assert found.evidence(1, 2) == "both verified near copies of a"


# --------------------------------------------------------------------------- the two corpora, small


def test_lookalike_distinct_images_get_no_flags(tmp_path):
    corpus.lookalike_corpus(tmp_path, n=64, side=96)
    table = assess(_records(tmp_path), root=tmp_path)
    summary = table.attrs["duplicates"]
    assert summary["candidates"] > 0  # hash matches exist: the pixel check is what rejects them
    assert summary["verified"] == 0
    assert (table["flags"] == "").all() and (table["dup_group"] == "").all()


def test_altered_copies_are_all_grouped_with_their_original_and_leaks_flagged(tmp_path):
    origin = corpus.copies_corpus(tmp_path, n=8)
    table = assess(_records(tmp_path), root=tmp_path)
    group = dict(zip(table["path"], table["dup_group"]))
    for k in set(origin.values()):
        family = {group[p] for p, o in origin.items() if o == k}
        assert len(family) == 1 and "" not in family, k
    assert len(set(group.values())) == 8  # no two families merged
    test_rows = table[table["split"] == "test"]
    assert len(test_rows) == 2 and test_rows["flags"].str.contains("train_test_leak").all()
    assert table.attrs["duplicates"]["rejected"] == 0


def test_wording_matches_the_evidence(tmp_path):
    source = corpus.photo(5)
    buf = io.BytesIO()
    source.save(buf, format="JPEG", quality=90)
    folder = tmp_path / "train" / "cat"
    folder.mkdir(parents=True)
    (folder / "a.jpg").write_bytes(buf.getvalue())
    (folder / "a_same_bytes.jpg").write_bytes(buf.getvalue())
    Image.open(folder / "a.jpg").save(folder / "a_as.png")  # decoded pixels, another format
    Image.open(folder / "a.jpg").convert("RGB").resize((96, 72)).save(folder / "a_half.jpg", quality=80)
    rows = {r["path"]: r["reasons"] for r in assess(_records(tmp_path), root=tmp_path).to_dict("records")}
    assert rows["train/cat/a_same_bytes.jpg"].startswith("exact duplicate of train/cat/a.jpg: identical file")
    assert "near duplicate of train/cat/a_as.png: same image, decoded pixels equal" in rows["train/cat/a.jpg"]
    half = rows["train/cat/a_half.jpg"]
    assert (
        half.startswith("near duplicate of train/cat/a_as.png: near copy (detail correlation 0.9")
        and "hash distance" in half
    )
    assert not any("same image as" in r for r in rows.values())


# --------------------------------------------------------------------------- defaults and the guard


def _save(path: Path, image: Image.Image, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kw)


def _default_corpus(root: Path) -> None:
    """Three classes of 24 distinct photos plus: one identical copy, near copies, a conflict, a leak, bad files."""
    for c, label in enumerate(("cat", "dog", "bird")):
        for i in range(24):
            _save(root / "train" / label / f"{i:02d}.jpg", corpus.photo(100 * c + i, (96, 72)), quality=90)
    (root / "train/cat/00_again.jpg").write_bytes((root / "train/cat/00.jpg").read_bytes())
    _save(root / "train/cat/01_small.jpg", Image.open(root / "train/cat/01.jpg").resize((72, 54)), quality=85)
    (root / "train/dog/02_is_cat.jpg").write_bytes((root / "train/cat/02.jpg").read_bytes())
    _save(root / "test/t_leak.jpg", Image.open(root / "train/bird/03.jpg").convert("RGB"), quality=60)
    _save(root / "test/t_ok.jpg", corpus.photo(999, (96, 72)), quality=90)
    (root / "train/dog/empty.jpg").write_bytes(b"")
    (root / "train/bird/page.jpg").write_bytes(b"<html>denied</html>")


def test_default_prepare_drops_only_unreadable_files_and_identical_copies(tmp_path, capsys):
    _default_corpus(tmp_path / "src")
    out = tmp_path / "out"
    code, _, err = cli(["prepare", tmp_path / "src", "--out", out, "--workers", "1"], capsys)
    assert code == 0, err
    table = read_manifest(out)
    assert set(table.loc[~table["keep"], "path"]) == {
        "train/cat/00_again.jpg",
        "train/dog/empty.jpg",
        "train/bird/page.jpg",
    }
    rows = {r["path"]: r for r in table.to_dict("records")}
    assert rows["train/cat/01_small.jpg"]["flags"] == "near_duplicate" and rows["train/cat/01_small.jpg"]["keep"]
    assert rows["train/cat/01.jpg"]["dup_group"] == rows["train/cat/01_small.jpg"]["dup_group"] != ""
    proposed = load_blocklist(out / "blocklist.proposed.csv")
    assert {"train/cat/02.jpg", "train/dog/02_is_cat.jpg", "train/bird/03.jpg"} <= set(proposed.by_path)
    assert rows["test/t_leak.jpg"]["flags"] == "train_test_leak"
    # the split sees near copies as one group: they never straddle train and validation
    samples = load_training_set(out)
    group = dict(zip((samples.rel(p) for p in samples.paths), samples.groups))
    assert group["train/cat/01.jpg"] == group["train/cat/01_small.jpg"]
    assert "train/cat/00_again.jpg" not in group and "train/cat/02.jpg" in group


def test_guard_stops_with_one_line_and_writes_nothing(tmp_path, capsys):
    for i in range(10):
        _save(tmp_path / "src/train/cat" / f"{i}.jpg", corpus.photo(i, (64, 48)), quality=90)
        _save(tmp_path / "src/train/dog" / f"{i}.jpg", corpus.photo(50 + i, (64, 48)), quality=90)
    (tmp_path / "src/train/cat/0_again.jpg").write_bytes((tmp_path / "src/train/cat/0.jpg").read_bytes())
    out = tmp_path / "out"
    code, _, err = cli(["prepare", tmp_path / "src", "--out", out, "--workers", "1"], capsys)
    assert code == 2
    message = err.strip()
    assert "\n" not in message and len(message) < 300
    assert (
        "1 of 11" in message
        and "'cat'" in message
        and "exact_duplicate=keep_one" in message
        and "--max-drop 1.0" in message
    )
    assert not out.exists()
    code, _, err = cli(["prepare", tmp_path / "src", "--out", out, "--workers", "1", "--max-drop", "1.0"], capsys)
    assert code == 0, err
    assert not read_manifest(out).set_index("path").loc["train/cat/0_again.jpg", "keep"]


def test_apply_proposed_is_guarded_too(tmp_path, capsys):
    _default_corpus(tmp_path / "src")
    code, _, err = cli(
        ["prepare", tmp_path / "src", "--out", tmp_path / "out", "--workers", "1", "--apply-proposed"], capsys
    )
    assert code == 2 and "2 of 26 training images of class 'cat'" in err  # the identical copy and a label conflict
    assert not (tmp_path / "out").exists()


def test_progress_callback_reports_each_stage(tmp_path):
    _default_corpus(tmp_path / "src")
    seen: dict[str, tuple[int, int]] = {}
    prepare(tmp_path / "src", tmp_path / "out", PrepareOptions(workers=1, cache_image_size=32),
            progress=lambda stage, done, total: seen.__setitem__(stage, (done, total)))  # fmt: skip
    assert set(seen) == {"analysing", "checking near copies", "caching"}
    assert all(done == total for done, total in seen.values())


@pytest.mark.parametrize("kind", corpus.COPY_KINDS)
def test_each_kind_of_copy_is_verified(tmp_path, kind):
    source = corpus.photo(7)
    copy, suffix, kw = corpus.altered(source, kind, np.random.default_rng(0))
    _save(tmp_path / "train/a/orig.jpg", source, quality=90)
    _save(tmp_path / f"train/a/copy{suffix}", copy, **kw)
    table = assess(_records(tmp_path), root=tmp_path)
    assert table["dup_group"].nunique() == 1 and (table["dup_group"] != "").all(), kind
