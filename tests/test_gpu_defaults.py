"""Issue 34: every command that runs a model defaults to --device auto, and data.batch_size=auto (tested with a
fake memory probe in place of a GPU)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import yaml

from conftest import TINY, cli, make_dataset, one_epoch_run
from imgclf.config import load_config
from imgclf.errors import ConfigError
from imgclf.runtime import resolve_device
from imgclf.training.auto_batch import MAX_BATCH, fitted_batch, resolve_batch_size
from imgclf.training.distributed import DistContext

GB = 1e9


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return one_epoch_run(tmp_path_factory.mktemp("gpu"))[1]


class _Moved(Exception):
    """Raised by a patched ``Module.to``: the device a model was sent to, before anything runs on it."""


@pytest.fixture
def cuda_present(monkeypatch):
    """``torch.cuda.is_available()`` is True and moving a model anywhere raises :class:`_Moved` with the device."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def to(self, *args, **kwargs):
        device = args[0] if args else kwargs.get("device")
        if device is None:
            return self  # memory_format only
        raise _Moved(torch.device(device))

    monkeypatch.setattr(torch.nn.Module, "to", to)


# ---------------------------------------------------------------- --device auto


def test_auto_is_the_cpu_without_cuda_and_cuda_with_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_explicit_cuda_without_a_gpu_is_one_line_and_exit_2(command, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = [command, tmp_path, *([tmp_path] if command == "predict" else []), "--device", "cuda"]
    code, _, err = cli(args, capsys)
    assert code == 2
    assert err.strip() == "error: --device=cuda but no CUDA device is available; use --device=auto or cpu"


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_help_says_the_device_defaults_to_auto(command, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = cli([command, "--help"], capsys)
    assert code == 0 and "auto (CUDA when there is one, else the CPU)" in out and "[default: auto]" in out


def _device_of(job) -> torch.device:
    with pytest.raises(_Moved) as moved:
        job()
    return moved.value.args[0]


def test_every_inference_entry_point_takes_cuda_by_default_when_there_is_one(run_dir, cuda_present, tmp_path):
    import imgclf
    from imgclf.infer.jobs import evaluate_run
    from imgclf.infer.tta_compare import compare_run

    data = run_dir.parent / "data"
    jobs = {
        "imgclf.load_run": lambda: imgclf.load_run(run_dir),
        "imgclf.predict": lambda: imgclf.predict(run_dir, data / "test", tmp_path / "s.csv", progress=False),
        "evaluate": lambda: evaluate_run(run_dir, out=tmp_path / "eval"),
        "evaluate --tta-compare": lambda: compare_run(run_dir, out=tmp_path / "cmp"),
    }
    assert {name: _device_of(job) for name, job in jobs.items()} == {name: torch.device("cuda") for name in jobs}


def test_predict_runs_on_the_cpu_by_default_without_cuda(run_dir, monkeypatch, tmp_path):
    import imgclf

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = imgclf.predict(run_dir, run_dir.parent / "data" / "test", tmp_path / "s.csv", progress=False)
    assert result["images"] == 3
    assert next(imgclf.load_run(run_dir).model.parameters()).device == torch.device("cpu")


# ---------------------------------------------------------------- data.batch_size=auto: the search


def test_a_linear_memory_model_gives_the_largest_multiple_of_8_within_the_share():
    # 1 GB fixed + 50 MB per image on a 16 GB card: (0.6 * 16 GB - 1 GB) / 50 MB = 172 -> 168
    assert fitted_batch(lambda b: 1 * GB + 0.05 * GB * b, total=16 * GB, images=10_000) == 168


def test_the_share_is_of_the_card_not_of_the_fit():
    probe = lambda b: 1 * GB + 0.05 * GB * b  # noqa: E731
    assert fitted_batch(probe, 16 * GB, 10_000, share=0.3) == 72  # (4.8 - 1) / 0.05 = 76 -> 72


def test_out_of_memory_in_the_probe_keeps_the_batch_below_that_size():
    def probe(batch: int) -> float:
        if batch >= 16:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return 1 * GB + 0.001 * GB * batch  # the line alone would allow hundreds

    assert fitted_batch(probe, 16 * GB, 10_000) == 8


def test_out_of_memory_at_the_smallest_probe_gives_batch_1():
    def probe(batch: int) -> float:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    assert fitted_batch(probe, 16 * GB, 10_000) == 1


def test_a_tiny_dataset_caps_the_batch_at_its_size():
    assert fitted_batch(lambda b: 1 * GB + 0.001 * GB * b, 80 * GB, images=20) == 20


def test_memory_that_does_not_grow_with_the_batch_gives_the_maximum():
    assert fitted_batch(lambda b: 2 * GB, 80 * GB, images=100_000) == MAX_BATCH


def test_a_small_card_gives_a_batch_below_8_as_it_is():
    assert fitted_batch(lambda b: 1 * GB + 1 * GB * b, total=10 * GB, images=1_000) == 5  # (6 - 1) / 1


# ---------------------------------------------------------------- data.batch_size=auto: in a run


def test_auto_resolves_with_the_probe_and_leaves_the_learning_rate_as_set():
    cfg = load_config(None, ["data.batch_size=auto", "train.lr=3e-4"])
    resolved = resolve_batch_size(
        cfg, torch.nn.Identity(), 224, 5_000, DistContext(), probe=lambda b: 1 * GB + 0.05 * GB * b, total=16 * GB
    )
    assert resolved.data.batch_size == 168 and resolved.train.lr == 3e-4
    assert resolved.model_copy(update={"data": cfg.data}) == cfg  # nothing else changed


def test_a_number_is_kept_without_probing():
    cfg = load_config(None, ["data.batch_size=48"])

    def probe(batch: int) -> float:
        raise AssertionError("no probe for a fixed batch")

    assert resolve_batch_size(cfg, torch.nn.Identity(), 224, 5_000, DistContext(), probe=probe, total=GB) is cfg


def test_on_the_cpu_auto_is_the_default_batch_with_one_log_line(caplog):
    cfg = load_config(None, ["data.batch_size=auto"])
    with caplog.at_level(logging.INFO, logger="imgclf"):
        resolved = resolve_batch_size(cfg, torch.nn.Identity(), 224, 5_000, DistContext())
    assert resolved.data.batch_size == 32
    assert [r.getMessage() for r in caplog.records] == [
        "data.batch_size=auto: no GPU, so the batch is the default, 32 (train.lr 0.001 as set)"
    ]


def test_a_cpu_run_with_auto_saves_the_resolved_batch_in_its_config(tmp_path):
    from imgclf.training.loop import fit

    dataset = make_dataset(tmp_path / "data", per_class=4, test=0)
    fit(load_config(None, [*TINY, "train.epochs=1", "data.batch_size=auto"]), dataset, tmp_path / "run")
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]["batch_size"] == 32


@pytest.mark.parametrize("value", ["0", "auto2", "8.5"])
def test_a_bad_batch_size_is_one_line(value):
    with pytest.raises(ConfigError) as exc:
        load_config(None, [f"data.batch_size={value}"])
    assert str(exc.value).startswith("data.batch_size: must be a number from 1 to 4096, or auto") and "\n" not in str(
        exc.value
    )


def test_budget_with_auto_is_refused_in_one_line(tmp_path):
    import imgclf

    with pytest.raises(ConfigError, match="--budget times its runs at a fixed batch"):
        imgclf.train(
            make_dataset(tmp_path / "data", test=0),
            tmp_path / "run",
            overrides=[*TINY, "data.batch_size=auto"],
            budget="1m",
            progress=False,
        )
    assert not (tmp_path / "run").exists()


def test_a_whole_float_batch_size_is_the_number_as_before():
    assert load_config(None, ["data.batch_size=8.0"]).data.batch_size == 8
