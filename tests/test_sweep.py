"""`imgclf sweep` / `sweep-transfer` / `train --from-sweep`: Optuna on a proxy, one-line errors, and a real
PostgreSQL study shared by two worker processes."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from imgclf.cli.main import run
from imgclf.config import load_config
from imgclf.errors import ConfigError
from imgclf.experiments.space import check_space, parse_space, read_space
from imgclf.experiments.sweep import PruningCallback
from imgclf.experiments.transfer import TARGET_KEYS, apply_sweep_params, config_from_sweep

SPACE = """\
space:
  train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
  data.augment: {type: categorical, choices: [none, light]}
proxy:
  train.epochs: 1
  train.max_steps_per_epoch: 1
"""


def _sets(overrides: list[str]) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def _cli(args: list[str]) -> int:
    try:
        run(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture
def space_file(tmp_path: Path) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    return path


def test_two_trial_sqlite_sweep_makes_run_dirs_and_feeds_train_from_sweep_and_transfer(
    tiny_dataset, tiny_overrides, space_file, tmp_path, capsys
):
    import optuna

    out = tmp_path / "sweep"
    code = _cli(
        [
            "sweep",
            str(tiny_dataset),
            "--space",
            str(space_file),
            "--trials",
            "2",
            "--study",
            "s1",
            "--out",
            str(out),
            "--seed",
            "3",
            *_sets(tiny_overrides),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert "best trial" in capsys.readouterr().out
    assert (out / "optuna.db").is_file()
    study = optuna.load_study(study_name="s1", storage=f"sqlite:///{out / 'optuna.db'}")
    assert len(study.trials) == 2 and all(t.state.name == "COMPLETE" for t in study.trials)
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["0000", "0001"]
    assert all((out / "trials" / n / "summary.json").is_file() for n in ("0000", "0001"))
    assert load_config(out / "trials" / "0000" / "config.yaml").train.epochs == 1  # the proxy applied
    assert set(study.trials[0].params) == {"train.lr", "data.augment"}

    # --from-sweep: the best values land in the target config; target-specific keys stay.
    target = load_config(None, tiny_overrides + ["train.epochs=3"])
    cfg, applied, _ = config_from_sweep(target, "s1", f"sqlite:///{out / 'optuna.db'}")
    assert cfg.train.lr == pytest.approx(study.best_params["train.lr"]) and cfg.train.epochs == 3
    assert applied == study.best_params

    # sweep-transfer: both trials retrained on the target; Markdown + CSV written.
    target_yaml = tmp_path / "target.yaml"
    target_yaml.write_text("train:\n  epochs: 1\n  max_steps_per_epoch: 1\n")
    code = _cli(
        [
            "sweep-transfer",
            "s1",
            "--target",
            str(target_yaml),
            "--top",
            "1",
            "--bottom",
            "1",
            "--storage",
            f"sqlite:///{out / 'optuna.db'}",
            *_sets(tiny_overrides),
        ]
    )
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "Spearman" in printed.out and "Compute ratio" in printed.out and "in CPU seconds" in printed.out
    assert (out / "transfer" / "transfer.csv").read_text().count("\n") == 3
    assert (out / "transfer" / "transfer.md").is_file()
    rows = list(csv.DictReader(open(out / "transfer" / "transfer.csv")))
    assert all(float(r["proxy_cpu_seconds"]) > 0 and float(r["target_cpu_seconds"]) > 0 for r in rows)


def test_sweep_transfer_without_its_target_exits_2(capsys):
    assert _cli(["sweep-transfer", "s1"]) == 2
    assert "--target" in capsys.readouterr().err


def test_from_sweep_does_not_overwrite_target_specific_keys():
    target = load_config(
        None, ["model.weights=none", "model.backbone=test_efficientnet", "data.image_size=64", "train.epochs=30"]
    )
    params = {"train.lr": 0.005, "data.image_size": 32, "train.epochs": 2, "model.dropout": 0.3, "data.subset": 0.3}
    cfg, applied, kept = apply_sweep_params(target, params)
    assert (cfg.train.lr, cfg.model.dropout) == (0.005, 0.3)
    assert (cfg.data.image_size, cfg.train.epochs, cfg.data.subset) == (64, 30, 1.0)
    assert set(kept) == {"data.image_size", "train.epochs", "data.subset"} <= set(TARGET_KEYS)


@pytest.mark.parametrize(
    "text, message",
    [
        ("train.lrr: {type: float, low: 0.1, high: 0.2}", "unknown config key 'train.lrr' (did you mean 'train.lr'?)"),
        ("train.lr: {type: float, low: 0.2, high: 0.1}", "low (0.2) must be below high (0.1)"),
        ("train.lr: {type: float, low: 0.0, high: 0.1, log: true}", "log scale needs low > 0"),
        ("train.lr: {type: gaussian, low: 0.0, high: 0.1}", "type must be one of float, int, categorical"),
        ("data.augment: {type: categorical, choices: []}", "choices must be a non-empty list"),
        ("train.lr: 0.1", "must be a mapping like"),
    ],
)
def test_invalid_space_files_raise_one_config_error(tmp_path, text, message):
    path = tmp_path / "space.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as exc:
        read_space(path)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_space_values_the_config_rejects_are_found_before_any_trial():
    params = parse_space({"train.lr": {"type": "float", "low": 0.1, "high": 50.0}})
    with pytest.raises(ConfigError, match="train.lr=50.0 is not a valid config value"):
        check_space(params, load_config(None, ["model.weights=none", "model.backbone=test_efficientnet"]))


def test_invalid_space_file_exits_2_with_one_line(tiny_dataset, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train.lr: {type: float, low: 1, high: 0.5}\n")
    assert _cli(["sweep", str(tiny_dataset), "--space", str(bad), "--trials", "1", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "must be below high" in err and "Traceback" not in err and err.strip().count("\n") == 0


def test_unreachable_storage_exits_2_with_one_line_and_no_password(
    tiny_dataset, tiny_overrides, space_file, tmp_path, capsys, closing_port
):
    url = f"postgresql://imgclf:Sup3rSecretPw@127.0.0.1:{closing_port}/nowhere"
    code = _cli(
        [
            "sweep",
            str(tiny_dataset),
            "--space",
            str(space_file),
            "--trials",
            "1",
            "--out",
            str(tmp_path / "s"),
            "--storage",
            url,
            *_sets(tiny_overrides),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert f"cannot open sweep storage postgresql://imgclf:***@127.0.0.1:{closing_port}/nowhere" in err
    assert "Sup3rSecretPw" not in err and "Traceback" not in err and err.strip().count("\n") == 0
    assert (
        _cli(["train", str(tiny_dataset), "--from-sweep", "nope", "--storage", f"sqlite:///{tmp_path / 'none.db'}"])
        == 2
    )
    assert "no sweep storage" in capsys.readouterr().err


class _FakeTrial:
    def __init__(self, prune_at: int):
        self.prune_at, self.reports, self.user_attrs = prune_at, [], {}

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return self.reports[-1][0] >= self.prune_at

    def set_user_attr(self, key, value):
        self.user_attrs[key] = value


def test_pruning_callback_reports_every_epoch_and_raises_trial_pruned():
    import optuna

    trial = _FakeTrial(prune_at=2)
    callback = PruningCallback(trial, "val_accuracy")
    callback.on_epoch_end({"epoch": 1, "val_accuracy": 0.4, "epoch_seconds": 2.0})
    with pytest.raises(optuna.TrialPruned):
        callback.on_epoch_end({"epoch": 2, "val_accuracy": 0.3, "epoch_seconds": 2.0})
    assert trial.reports == [(1, 0.4), (2, 0.3)]
    assert trial.user_attrs["train_seconds"] == 4.0


def test_two_workers_share_one_postgresql_study(tiny_dataset, tiny_overrides, space_file, tmp_path):
    url = os.environ.get("IMGCLF_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail('IMGCLF_TEST_POSTGRES_URL is not set in CI: run `eval "$(.ci/postgres.sh)"` before the tests')
        pytest.skip("IMGCLF_TEST_POSTGRES_URL not set (see .ci/postgres.sh)")
    import optuna

    from imgclf.experiments.sweep import open_storage

    study = f"two-workers-{uuid.uuid4().hex[:8]}"
    imgclf = Path(sys.executable).with_name("imgclf")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    asked = (2, 2)
    workers = [
        subprocess.Popen(
            [
                str(imgclf),
                "sweep",
                str(tiny_dataset),
                "--space",
                str(space_file),
                "--trials",
                str(n),
                "--study",
                study,
                "--storage",
                url,
                "--seed",
                str(seed),
                "--out",
                str(tmp_path / f"worker{seed}"),
                *_sets(tiny_overrides),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for seed, n in enumerate(asked, start=1)
    ]
    try:
        results = [w.communicate(timeout=1800) for w in workers]  # a guard against a hang, never the signal
        for w, (_, err) in zip(workers, results):
            assert w.returncode == 0, err
        trials = optuna.load_study(study_name=study, storage=open_storage(url)).trials
        finished = [t for t in trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
        assert len(finished) == sum(asked)
        numbers = [t.number for t in trials]
        assert len(numbers) == len(set(numbers)) == sum(asked)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
        try:
            optuna.delete_study(study_name=study, storage=open_storage(url))
        except Exception:
            pass
