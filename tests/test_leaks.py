"""The leak test: secrets planted in the environment, in kaggle.json, in a config value and in storage URLs
never reach a file, the MLflow store or the terminal, through a whole prepare → train → evaluate →
predict → compare → sweep session run by the real CLI in a separate process."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from conftest import TINY, make_dataset

# Runs each command through the CLI entry point in one process (one import of torch instead of
# nine), exactly as the console script does, and reports every exit code.
DRIVER = """
import json, sys
from imgclf.cli.main import run
codes = {}
for name, argv in json.loads(sys.argv[1]):
    for stream in (sys.stdout, sys.stderr):
        print(f"=== step {name}", file=stream, flush=True)
    try:
        run(argv)
        codes[name] = 0
    except SystemExit as exc:
        codes[name] = int(exc.code or 0)
print("CODES " + json.dumps(codes), flush=True)
"""

SPACE = """\
space:
  train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
proxy:
  train.epochs: 1
  train.max_steps_per_epoch: 1
"""


def _sets(values: list[str]) -> list[str]:
    return [arg for value in values for arg in ("--set", value)]


def _written_files(root: Path, skip: set[Path]) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and p not in skip]


def test_no_secret_is_written_or_shown_anywhere(tmp_path):
    env_key, json_key, db_password = (f"leak{kind}{uuid.uuid4().hex}" for kind in ("env", "json", "db"))
    secrets = [env_key, json_key, db_password]

    work, home, kaggle_dir = tmp_path / "work", tmp_path / "home", tmp_path / "kaggle-config"
    for folder in (work, home, kaggle_dir):
        folder.mkdir()
    kaggle_json = kaggle_dir / "kaggle.json"
    kaggle_json.write_text(json.dumps({"username": "leaktest", "key": json_key}))
    kaggle_json.chmod(0o600)
    make_dataset(work / "raw", per_class=6, test=4)
    (work / "space.yaml").write_text(SPACE)

    db_url = f"postgresql://leak:{db_password}@127.0.0.1:1"
    env = {
        **os.environ,
        "HOME": str(home),  # whatever a library writes into ~ is searched too
        "KAGGLE_USERNAME": "leaktest",
        "KAGGLE_KEY": env_key,
        "KAGGLE_CONFIG_DIR": str(kaggle_dir),
        "IMGCLF_DB_PASSWORD": db_password,
        # Unreachable: tracking warns (masked) and training goes on without it.
        "MLFLOW_TRACKING_URI": f"postgresql://leak:{db_password}@127.0.0.1:1/mlflow",
        "OMP_NUM_THREADS": "1",
        "COLUMNS": "200",
    }
    tiny = [*TINY, "train.epochs=1"]
    tracked = [*tiny, "tracking.enabled=true", f"tracking.uri={db_url}/from-config"]
    steps = [
        ("prepare", ["prepare", "raw", "--out", "data", "--workers", "1"]),
        (
            "train-tracked",
            ["train", "data", "--out", "runs/a", "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}", *_sets(tracked)],
        ),
        (
            "train-unreachable-tracking",
            ["train", "data", "--out", "runs/b", *_sets([*tiny, "tracking.enabled=true", "train.seed=1"])],
        ),
        ("evaluate", ["evaluate", "runs/a"]),
        ("predict", ["predict", "runs/a", "data/test", "--out", "runs/a/submission.csv"]),
        ("compare", ["compare", "runs/a", "runs/b", "--out", "comparison"]),
        (
            "sweep",
            [
                "sweep",
                "data",
                "--space",
                "space.yaml",
                "--trials",
                "1",
                "--study",
                "leak",
                "--out",
                "sweeps/leak",
                *_sets(tiny),
            ],
        ),
        (
            "sweep-unreachable-storage",
            [
                "sweep",
                "data",
                "--space",
                "space.yaml",
                "--trials",
                "1",
                "--out",
                "sweeps/pg",
                "--storage",
                f"{db_url}/optuna",
                *_sets(tiny),
            ],
        ),
    ]
    expected = {name: 0 for name, _ in steps} | {"sweep-unreachable-storage": 2}
    if importlib.util.find_spec("kaggle") is None:  # with the client installed this would go online
        steps.append(("kaggle-submit", ["kaggle", "submit", "runs/a", "--competition", "leak-test"]))
        expected["kaggle-submit"] = 2

    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(steps)],
        cwd=work,
        env=env,
        capture_output=True,
        timeout=600,
    )
    out, err = proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    codes_line = [line for line in out.splitlines() if line.startswith("CODES ")]
    assert proc.returncode == 0 and codes_line, err[-3000:]
    assert json.loads(codes_line[0].removeprefix("CODES ")) == expected, err[-3000:]

    # The session really met the secrets: the masked forms were shown.
    assert "postgresql://leak:***@127.0.0.1:1" in err and "postgresql://leak:***@127.0.0.1:1/mlflow" in err
    assert (work / "mlflow.db").is_file() and (work / "sweeps" / "leak" / "optuna.db").is_file()
    assert (work / "runs" / "a" / "submission.csv").is_file() and (work / "comparison").exists()

    leaks = []
    files = _written_files(tmp_path, skip={kaggle_json})
    assert len(files) > 50
    for path in files:
        data = path.read_bytes()
        leaks += [f"{path.relative_to(tmp_path)} holds {s[:8]}…" for s in secrets if s.encode() in data]
    for name, text in (("stdout", out), ("stderr", err)):
        leaks += [f"{name} shows {s[:8]}…" for s in secrets if s in text]
    assert leaks == []
