"""MLflow tracking: train runs are logged (read back through MlflowClient), and a broken store never stops training."""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import contextmanager

import pytest

from imgclf.cli.main import run
from imgclf.config import load_config
from imgclf.tracking.session import (
    MlflowTracker,
    dataset_fingerprint,
    default_tracking_uri,
    resolve_tracking_uri,
    tracking_uri_in,
)
from imgclf.secrets import mask_url, redact

FAST = ["train.epochs=2", "train.max_steps_per_epoch=1", "tracking.enabled=true"]


def _sets(overrides: list[str]) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def _train(args: list[str]) -> int:
    try:
        run(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    """One tracked training into the default store (creating an MLflow SQLite store costs seconds: do it once)."""
    from conftest import TINY, make_dataset

    root = tmp_path_factory.mktemp("tracked")
    dataset = make_dataset(root / "data")
    out = root / "runs" / "a"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        assert _train(["train", str(dataset), *_sets(TINY + FAST + ["train.lr=0.002"]), "--out", str(out)]) == 0
    return root, dataset, out


def test_train_run_is_logged_to_default_sqlite_store_with_params_metrics_and_artifacts(tracked_run):
    from mlflow.tracking import MlflowClient

    root, dataset, out = tracked_run
    db = root / "runs" / "mlflow.db"
    assert db.is_file()  # the default store sits beside the runs
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("imgclf")
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.status == "FINISHED"
    assert logged.info.run_id == json.loads((out / "mlflow_run.json").read_text())["run_id"]

    params = logged.data.params
    assert params["train.lr"] == "0.002" and params["model.backbone"] == "test_efficientnet"
    assert params["data.image_size"] == "32"

    for metric in ("val_accuracy", "val_loss", "train_loss", "epoch_seconds", "images_per_second", "lr"):
        assert [m.step for m in client.get_metric_history(logged.info.run_id, metric)] == [1, 2], metric
    summary = json.loads((out / "summary.json").read_text())
    assert logged.data.metrics["final_val_accuracy"] == pytest.approx(summary["val_accuracy"])
    assert logged.data.metrics["epochs_run"] == 2

    tags = logged.data.tags
    assert tags["imgclf.backbone"] == "test_efficientnet"
    assert tags["imgclf.strategy"] == "full"
    assert tags["imgclf.dataset_fingerprint"] == dataset_fingerprint(out / "split.csv", dataset)
    assert tags["imgclf.run_dir"] == str(out.resolve())

    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {"config.yaml", "summary.json", "metrics.csv", "learning_curves.png"} <= artifacts
    assert (root / "runs" / "mlartifacts").is_dir()  # not ./mlruns of the working directory


def test_compare_reads_the_runs_of_an_mlflow_experiment(tracked_run, tmp_path, capsys):
    root, _, out = tracked_run
    report = tmp_path / "exp.html"
    code = _train(
        [
            "compare",
            "--experiment",
            "imgclf",
            "--tracking-uri",
            f"sqlite:///{root / 'runs' / 'mlflow.db'}",
            "--out",
            str(report),
        ]
    )
    assert code == 0
    assert "| a |" in capsys.readouterr().out
    assert report.is_file() and report.with_suffix(".csv").read_text().splitlines()[1].startswith("a,")


@contextmanager
def _server(answer_health: bool = False):
    """A TCP server on 127.0.0.1 that accepts every connection and never answers (optionally
    answering ``GET /health``). The OS picks the port; the socket stays bound while in use."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            if answer_health:
                conn.settimeout(5)
                try:
                    if conn.recv(65536).startswith(b"GET /health"):
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")
                        conn.close()
                        continue
                except OSError:
                    pass
            held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()


def test_unreachable_tracking_store_warns_once_and_training_completes(
    tiny_dataset, tiny_overrides, tmp_path, capsys, closing_port
):
    out = tmp_path / "run"
    code = _train(
        [  # the server closes every connection at once: no MLflow there
            "train",
            str(tiny_dataset),
            *_sets(tiny_overrides + FAST),
            "--out",
            str(out),
            "--tracking-uri",
            f"http://someone:hunter22pw@127.0.0.1:{closing_port}/",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0
    assert (out / "summary.json").is_file()
    assert err.count("tracking disabled") == 1
    assert "hunter22pw" not in err
    assert "Traceback" not in err


def test_tracking_disabled_in_config_writes_no_store(tiny_dataset, tiny_overrides, tmp_path):
    out = tmp_path / "runs" / "a"
    assert (
        _train(
            [
                "train",
                str(tiny_dataset),
                *_sets(tiny_overrides + ["train.epochs=1", "train.max_steps_per_epoch=1"]),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert not (tmp_path / "runs" / "mlflow.db").exists()
    assert not (out / "mlflow_run.json").exists()


def test_tracking_uri_precedence_is_cli_then_config_then_env_then_default(tmp_path, monkeypatch):
    run_dir = tmp_path / "runs" / "x"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert (
        resolve_tracking_uri(run_dir)
        == default_tracking_uri(run_dir)
        == f"sqlite:///{(tmp_path / 'runs').resolve()}/mlflow.db"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert resolve_tracking_uri(run_dir) == "http://env:5000"
    assert resolve_tracking_uri(run_dir, cfg_uri="http://cfg:5000") == "http://cfg:5000"
    assert resolve_tracking_uri(run_dir, cli_uri="http://cli:5000", cfg_uri="http://cfg:5000") == "http://cli:5000"


def test_dataset_fingerprint_ignores_the_split_but_sees_changed_files(tmp_path):
    data = tmp_path / "data"
    (data / "a").mkdir(parents=True)
    (data / "a" / "1.png").write_bytes(b"x" * 10)
    (data / "a" / "2.png").write_bytes(b"y" * 10)
    split = tmp_path / "split.csv"
    split.write_text("path,label,split\na/1.png,a,train\na/2.png,a,val\n")
    first = dataset_fingerprint(split, data)
    split.write_text("path,label,split\na/2.png,a,train\na/1.png,a,val\n")
    assert dataset_fingerprint(split, data) == first
    (data / "a" / "2.png").write_bytes(b"y" * 11)
    assert dataset_fingerprint(split, data) != first
    assert dataset_fingerprint(tmp_path / "missing.csv", data) is None


@pytest.mark.parametrize("answer_health", [False, True], ids=["silent", "health-only"])
def test_a_tracking_server_that_never_answers_gives_up_within_the_timeout(answer_health, tmp_path, monkeypatch, caplog):
    # MLflow's defaults (120 s a request, 7 retries) held training for minutes before the first epoch.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    with _server(answer_health=answer_health) as port:
        tracker = MlflowTracker(f"http://ana:hang-pass-42@127.0.0.1:{port}")
        started = time.monotonic()
        tracker.on_fit_start(load_config(None, ["tracking.enabled=true"]), tmp_path, {})
        elapsed = time.monotonic() - started
        tracker.on_epoch_end({"epoch": 1, "val_accuracy": 0.5})  # disabled: returns at once
    assert not tracker.enabled
    assert elapsed < 30  # 1 s per request, no retries; the unbounded client took over 400 s
    warnings = [r.getMessage() for r in caplog.records if "tracking disabled" in r.getMessage()]
    assert len(warnings) == 1 and len(warnings[0]) < 400
    assert "hang-pass-42" not in caplog.text


def test_training_goes_on_when_the_tracking_server_hangs(tiny_dataset, tiny_overrides, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    out = tmp_path / "run"
    with _server(answer_health=True) as port:
        code = _train(
            [
                "train",
                str(tiny_dataset),
                *_sets(tiny_overrides + FAST),
                "--out",
                str(out),
                "--tracking-uri",
                f"http://127.0.0.1:{port}",
            ]
        )
    err = capsys.readouterr().err
    assert code == 0 and (out / "summary.json").is_file()
    assert err.count("tracking disabled") == 1 and "Traceback" not in err
    assert len(err) < 10_000


def test_the_default_store_is_defined_once(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri_in(tmp_path / "sweep") == f"sqlite:///{(tmp_path / 'sweep').resolve()}/mlflow.db"
    assert resolve_tracking_uri(tmp_path / "runs" / "a") == tracking_uri_in(tmp_path / "runs")


def test_tracking_runs_only_in_the_main_process(tmp_path, monkeypatch):
    from imgclf.tracking.session import tracking_session

    cfg = load_config(None, ["tracking.enabled=true", "tracking.uri=sqlite:///" + str(tmp_path / "never.db")])
    monkeypatch.setenv("RANK", "1")
    with tracking_session(cfg, tmp_path / "run") as callbacks:
        assert callbacks == []
    monkeypatch.setenv("RANK", "0")
    with tracking_session(cfg, tmp_path / "run") as callbacks:
        assert len(callbacks) == 1


def test_passwords_in_urls_are_masked_in_messages():
    url = "postgresql://ana:s3cr%40t@db:5432/optuna"
    assert mask_url(url) == "postgresql://ana:***@db:5432/optuna"
    assert mask_url("sqlite:///tmp/x.db") == "sqlite:///tmp/x.db"
    assert "s3cr" not in redact(f"could not connect to {url} as ana with s3cr@t", url)


def test_health_check_sends_url_credentials_as_basic_auth_not_in_the_host():
    import base64

    from imgclf.tracking.session import _health_request

    request = _health_request("http://ana:p/ss@w@127.0.0.1:5000/")
    # urllib read 'ana:p' as part of the host name and failed with "Name or service not known".
    assert request.full_url == "http://127.0.0.1:5000/health"
    assert request.get_header("Authorization") == "Basic " + base64.b64encode(b"ana:p/ss@w").decode()
    assert _health_request("http://127.0.0.1:5000").get_header("Authorization") is None
