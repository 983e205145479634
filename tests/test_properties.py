"""Property-based tests: random configurations and random bytes-as-images either work or fail with the
tool's own error (or, for images, the documented decode errors the datasets turn into skips)."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from imgclf.config import Config, build_config, known_keys, load_config, set_in
from imgclf.data.datasets import ImageDataset
from imgclf.data.images import load_rgb
from imgclf.errors import ConfigError

# What ImageDataset catches and turns into a skipped item; anything else would stop a run.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
# Small by default (seconds); IMGCLF_FUZZ_SCALE=50 for a long fuzzing session. No example database:
# a failure prints its example, and the repository stays clean.
SCALE = int(os.environ.get("IMGCLF_FUZZ_SCALE", "1"))
FAST = settings(max_examples=40 * SCALE, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

KEYS = known_keys()
SECTIONS = sorted({k.split(".")[0] for k in KEYS})
LEAVES = sorted({k.split(".")[-1] for k in KEYS})

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["none", "hub", "embedded:lite0", "test_efficientnet", "full", "bn_only", "1e-3", "nan", "auto"])
)
values = scalars | st.lists(scalars, max_size=3) | st.dictionaries(st.text(max_size=4), scalars, max_size=2)
any_key = st.sampled_from(LEAVES) | st.text(max_size=8) | st.integers(0, 3)
random_trees = st.dictionaries(
    st.sampled_from(SECTIONS) | st.text(max_size=8) | st.integers(0, 3),
    values | st.dictionaries(any_key, values, max_size=4),
    max_size=5,
)


@st.composite
def plausible_trees(draw):
    """Known dotted keys with random values: reaches the field validators and cross-field checks."""
    tree: dict = {}
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=6, unique=True)):
        set_in(tree, key, draw(values))
    return tree


@FAST
@given(random_trees)
def test_random_config_trees_validate_or_raise_config_error(tree):
    try:
        assert isinstance(build_config(tree), Config)
    except ConfigError as exc:
        assert str(exc).strip()


@FAST
@given(plausible_trees())
def test_plausible_config_trees_validate_or_raise_config_error(tree):
    try:
        cfg = build_config(tree)
    except ConfigError as exc:
        assert str(exc).strip()
    else:
        # what validates must survive a save/load round trip (config.yaml of a run)
        assert build_config(cfg.to_dict()) == cfg


@FAST
@given(st.lists(st.text(max_size=30), max_size=4))
def test_random_set_overrides_validate_or_raise_config_error(overrides):
    try:
        load_config(None, overrides)
    except ConfigError as exc:
        assert str(exc).strip()


@FAST
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_random_yaml_files_load_or_raise_config_error(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            load_config(path)
        except ConfigError as exc:
            assert str(exc).strip()


def _seed_images() -> list[bytes]:
    """Small valid files in the formats and modes photos come in: mutations of these reach deep into decoders."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (9, 7, 3), dtype=np.uint8))
    out = []
    for image, fmt, kw in [
        (rgb, "PNG", {}),
        (rgb, "JPEG", {"quality": 80}),
        (rgb, "WEBP", {}),
        (rgb, "BMP", {}),
        (rgb, "GIF", {}),
        (rgb.convert("RGBA"), "PNG", {}),
        (rgb.convert("L"), "JPEG", {}),
        (rgb.convert("P"), "PNG", {"transparency": 0}),
        (rgb.convert("CMYK"), "JPEG", {}),
        (rgb, "TIFF", {}),
    ]:
        buf = io.BytesIO()
        image.save(buf, format=fmt, **kw)
        out.append(buf.getvalue())
    exif = rgb.getexif()
    exif[0x0112] = 6  # orientation: rotate — exercises exif_transpose
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", exif=exif.tobytes())
    out.append(buf.getvalue())
    return out


SEEDS = _seed_images()


@st.composite
def image_like_bytes(draw):
    """Random bytes, or a valid small image with some bytes overwritten and/or its tail cut off."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=300))
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


@pytest.mark.filterwarnings("ignore::UserWarning")  # PIL warns about the corrupt EXIF we feed it
@settings(max_examples=80 * SCALE, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(image_like_bytes(), st.sampled_from([".jpg", ".png", ".webp", ".bmp"]))
def test_random_bytes_decode_or_raise_a_documented_error(data, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"x{suffix}"
        path.write_bytes(data)
        try:
            image = load_rgb(path)
        except DECODE_ERRORS:
            return
        assert image.mode == "RGB" and min(image.size) >= 1


@pytest.mark.filterwarnings("ignore::UserWarning")
@FAST
@given(st.lists(image_like_bytes(), min_size=1, max_size=3))
def test_dataset_turns_any_bytes_into_an_item_or_a_skip(blobs):
    from imgclf.data.transforms import Preprocessing, eval_transform

    pre = Preprocessing(image_size=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, blob in enumerate(blobs):
            paths.append(Path(tmp) / f"{i}.jpg")
            paths[-1].write_bytes(blob)
        dataset = ImageDataset(paths, [0] * len(paths), eval_transform(pre))
        for index in range(len(dataset)):
            tensor, label, idx, ok = dataset[index]
            assert idx == index and label == 0
            assert (tuple(tensor.shape) == (3, 16, 16)) if ok else not ok
