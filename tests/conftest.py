"""Shared fixtures: tiny generated image datasets and a tiny-model config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import settings
from PIL import Image

torch.set_num_threads(1)
# Property tests draw the same examples on every run: a run of CI never meets a case the previous
# one did not (a flaky test is a defect); widen the search locally with IMGCLF_FUZZ_SCALE.
settings.register_profile("imgclf", derandomize=True, database=None)
settings.load_profile("imgclf")

TINY = [
    "model.weights=none",
    "model.backbone=test_efficientnet",
    "data.image_size=32",
    "data.batch_size=8",
    "data.num_workers=0",
    "data.augment=light",
    "data.cache=false",
    "train.epochs=2",
    "train.warmup_epochs=0",
    "tracking.enabled=false",
]


def make_image(rng: np.random.Generator, cls: int, size: int = 40) -> Image.Image:
    """A small colour image whose class is visible (a dominant channel), with noise."""
    arr = rng.integers(0, 90, size=(size, size, 3), dtype=np.uint8)
    arr[..., cls % 3] += 150
    if cls >= 3:
        arr[: size // 2] = 255 - arr[: size // 2]
    return Image.fromarray(arr)


def make_dataset(
    root: Path, classes=("alpha", "beta", "gamma"), per_class: int = 8, test: int = 5, seed: int = 0
) -> Path:
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / "train" / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            make_image(rng, c).save(root / "train" / name / f"{name}_{i:03d}.png")
    if test:
        (root / "test").mkdir(parents=True, exist_ok=True)
        ids = []
        for i in range(test):
            make_image(rng, i % len(classes)).save(root / "test" / f"img_{i:03d}.jpg", quality=95)
            ids.append(f"img_{i:03d}.jpg")
        (root / "sample_submission.csv").write_text("Id,Category\n" + "".join(f"{i},0\n" for i in ids))
    return root


def one_epoch_run(root: Path) -> tuple[Path, Path]:
    """``(dataset, run)``: a tiny dataset under ``root/data`` and a finished one-epoch run of it in ``root/run``."""
    from imgclf.config import load_config
    from imgclf.training.loop import fit

    dataset = make_dataset(root / "data", per_class=5, test=3)
    fit(load_config(None, [*TINY, "train.epochs=1"]), dataset, root / "run")
    return dataset, root / "run"


def cli(args: list, capsys) -> tuple[int, str, str]:
    """Run the real ``imgclf`` entry point in-process; return (exit code, stdout, stderr)."""
    from imgclf.cli.main import run

    try:
        run([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data")


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)


@pytest.fixture
def closing_port():
    """A port on 127.0.0.1 whose server accepts each connection and closes it at once: a "down"
    store or database without assuming that some port number is free (the OS picks the port, and
    the socket stays bound for the whole test)."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                listener.accept()[0].close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    listener.close()


def bench_module(name: str):
    """``bench/<name>.py`` imported as a module (the bench scripts are not a package)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(
        f"bench_{name}", Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module
