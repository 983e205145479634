"""Build the embedded demo dataset: a seeded, stratified Fashion-MNIST subset.

Reads Debian's ``dataset-fashion-mnist`` idx files (MIT licence) and writes

    imgclf/data/demo_data/fashion_mnist_subset.npz   (x_train, y_train, x_test, y_test, class_names, ...)
    imgclf/data/demo_data/PROVENANCE.md

Run once by a maintainer; the output is committed so that ``make demo`` works offline::

    python scripts/build_demo_data.py            # defaults: 300/class train, 100/class test, seed 20240601

Needs only the standard library and numpy.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np

DEFAULT_SOURCE = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "imgclf" / "data" / "demo_data"
DEFAULT_SEED = 20240601
NPZ_NAME = "fashion_mnist_subset.npz"
DEBIAN_PACKAGE = "dataset-fashion-mnist"
UPSTREAM_URL = "https://github.com/zalandoresearch/fashion-mnist"

# Upstream label order (label 0..9). Names are made file-system safe ("/" and " " would
# break class folders); the same list is imgclf.data.demo.CLASS_NAMES.
UPSTREAM_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CLASS_NAMES = [n.replace("/", "_").replace(" ", "_") for n in UPSTREAM_NAMES]

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

MIT_LICENCE = """\
The MIT License (MIT) Copyright © 2017 Zalando SE, https://tech.zalando.com

Permission is hereby granted, free of charge, to any person obtaining a copy of this
software and associated documentation files (the "Software"), to deal in the Software
without restriction, including without limitation the rights to use, copy, modify, merge,
publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons
to whom the Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED,
INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR
PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE
FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR
OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
DEALINGS IN THE SOFTWARE.
"""


def read_idx(path: Path) -> np.ndarray:
    """Decode one gzip'd idx file (the MNIST format) into a uint8 array.

    Header: two zero bytes, a type code (0x08 = uint8), the number of dimensions, then one
    big-endian uint32 per dimension.
    """
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    if data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path}: not a uint8 idx file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape}, body has {body.size} bytes")
    return body.reshape(shape)


def stratified_indices(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Pick ``per_class`` indices of each label without replacement, returned in source order.

    Keeping source order (rather than grouping by class) leaves classes interleaved, so
    "the first N of each class" is still a fair sample of that class.

    >>> stratified_indices(np.array([0, 1, 0, 1, 0]), 1, np.random.default_rng(0)).size
    2
    """
    chosen = []
    for label in np.unique(labels):
        pool = np.flatnonzero(labels == label)
        if pool.size < per_class:
            raise ValueError(f"label {label} has only {pool.size} examples, need {per_class}")
        chosen.append(rng.choice(pool, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def package_version(name: str) -> str:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", name],
                             capture_output=True, text=True, check=True)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.CalledProcessError):
        return "unknown (dpkg-query unavailable)"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def provenance_text(*, version: str, source: Path, train_per_class: int, test_per_class: int,
                    seed: int, npz_sha: str, npz_bytes: int, file_shas: dict[str, str]) -> str:
    names = "\n".join(f"| {i} | {u} | `{s}` |" for i, (u, s) in enumerate(zip(UPSTREAM_NAMES, CLASS_NAMES)))
    sources = "\n".join(f"  - `{FILES[k]}` sha256 `{v}`" for k, v in file_shas.items())
    return f"""# Demo data provenance

`{NPZ_NAME}` is a small, stratified subset of **Fashion-MNIST** (Zalando Research),
embedded so that `make demo` runs offline.

## Source

- Upstream: {UPSTREAM_URL} (Xiao, Rasul & Vollgraf, 2017, arXiv:1708.07747)
- Taken from the Debian package `{DEBIAN_PACKAGE}`, version `{version}`, files in `{source}`:
{sources}
- Licence: MIT (Debian's copyright file calls it "Expat"); the full text is below.

## How the subset was drawn

- Train: {train_per_class} images per class ({train_per_class * 10} in all) from the official
  60,000-image **train** split.
- Test: {test_per_class} images per class ({test_per_class * 10} in all) from the official
  10,000-image **test** split.
- For each class, indices were drawn without replacement with
  `numpy.random.default_rng({seed}).choice(...)` (classes in label order 0..9, train split
  first, then test), and the chosen indices kept in source order.
- Images are unchanged 28×28 uint8 greyscale.

Arrays in the `.npz` (`np.load(path)`, no pickle needed):

| key | shape / dtype | meaning |
|---|---|---|
| `x_train`, `x_test` | (N, 28, 28) uint8 | images |
| `y_train`, `y_test` | (N,) uint8 | upstream label 0..9 |
| `class_names` | (10,) str | file-system-safe name of each upstream label |
| `train_source_index`, `test_source_index` | (N,) int64 | row in the upstream split |

File: {npz_bytes:,} bytes, sha256 `{npz_sha}`.

| label | upstream name | class name here |
|---|---|---|
{names}

## Rebuild

```
sudo apt-get install {DEBIAN_PACKAGE}
python scripts/build_demo_data.py --train-per-class {train_per_class} --test-per-class {test_per_class} --seed {seed}
```

The arrays are identical on every rebuild with the same seed (numpy's `default_rng` stream
is stable); the `.npz` bytes, and so its sha256, differ by the zip entries' timestamps.

## Licence

{MIT_LICENCE}"""


def build(source: Path, out_dir: Path, train_per_class: int, test_per_class: int, seed: int) -> Path:
    missing = [name for name in FILES.values() if not (source / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST not found in {source} (missing {', '.join(missing)}). "
            f"Install it with: sudo apt-get install {DEBIAN_PACKAGE}  (or pass --source DIR)")
    arrays = {key: read_idx(source / name) for key, name in FILES.items()}

    rng = np.random.default_rng(seed)
    train_idx = stratified_indices(arrays["train_labels"], train_per_class, rng)
    test_idx = stratified_indices(arrays["test_labels"], test_per_class, rng)

    out_dir.mkdir(parents=True, exist_ok=True)
    npz_path = out_dir / NPZ_NAME
    tmp = out_dir / f".{NPZ_NAME}.tmp.npz"
    np.savez_compressed(
        tmp,
        x_train=arrays["train_images"][train_idx],
        y_train=arrays["train_labels"][train_idx],
        x_test=arrays["test_images"][test_idx],
        y_test=arrays["test_labels"][test_idx],
        class_names=np.array(CLASS_NAMES),
        train_source_index=train_idx.astype(np.int64),
        test_source_index=test_idx.astype(np.int64),
    )
    tmp.replace(npz_path)

    text = provenance_text(
        version=package_version(DEBIAN_PACKAGE), source=source,
        train_per_class=train_per_class, test_per_class=test_per_class, seed=seed,
        npz_sha=sha256(npz_path), npz_bytes=npz_path.stat().st_size,
        file_shas={k: sha256(source / v) for k, v in FILES.items()},
    )
    (out_dir / "PROVENANCE.md").write_text(text, encoding="utf-8")
    return npz_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--train-per-class", type=int, default=300)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    try:
        path = build(args.source, args.out, args.train_per_class, args.test_per_class, args.seed)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size:,} bytes) and {path.parent / 'PROVENANCE.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
