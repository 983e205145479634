"""Credentials are read like the official clients read them; secrets are masked everywhere they could show."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys

import pytest

from conftest import TINY, cli
from imgclf.cli.main import run
from imgclf.competition import download_competition, submit_file
from imgclf.config import load_config, save_config
from imgclf.secrets import (
    CredentialsError,
    RedactingStream,
    install_log_redaction,
    kaggle_credentials,
    mask_url,
    redact,
    redact_params,
    redact_tree,
    register_secret,
    register_url_passwords,
    split_userinfo,
)
from imgclf.run.rundir import write_environment

KEY = "k3y-0123456789abcdef-unique"


@pytest.fixture
def kaggle_dir(tmp_path, monkeypatch):
    folder = tmp_path / "kaggle-config"
    folder.mkdir()
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(folder))
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    return folder


def _write_kaggle_json(folder, mode=0o600, key=KEY):
    path = folder / "kaggle.json"
    path.write_text(json.dumps({"username": "ana", "key": key}))
    path.chmod(mode)
    return path


def test_credentials_come_from_the_environment_first(kaggle_dir, monkeypatch):
    _write_kaggle_json(kaggle_dir, key="file-key-000000")
    monkeypatch.setenv("KAGGLE_USERNAME", "env-user")
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    creds = kaggle_credentials()
    assert (creds.username, creds.key, creds.source) == ("env-user", KEY, "environment")
    assert KEY not in repr(creds)


def test_credentials_from_kaggle_json_in_kaggle_config_dir(kaggle_dir, caplog):
    path = _write_kaggle_json(kaggle_dir)
    creds = kaggle_credentials()
    assert (creds.username, creds.key, creds.source) == ("ana", KEY, str(path))
    assert "chmod 600" not in caplog.text


def test_group_readable_kaggle_json_warns_with_the_fix(kaggle_dir, caplog):
    path = _write_kaggle_json(kaggle_dir, mode=0o644)
    with caplog.at_level(logging.WARNING, logger="imgclf"):
        kaggle_credentials()
    assert f"chmod 600 {path}" in caplog.text
    assert KEY not in caplog.text


def test_missing_credentials_say_where_to_put_them(kaggle_dir):
    with pytest.raises(CredentialsError, match="KAGGLE_USERNAME and KAGGLE_KEY.*chmod 600"):
        kaggle_credentials()


def test_unreadable_kaggle_json_is_not_quoted(kaggle_dir):
    (kaggle_dir / "kaggle.json").write_text('{"username": "ana", "key": "' + KEY + '"')  # truncated JSON
    with pytest.raises(CredentialsError) as exc:
        kaggle_credentials()
    assert KEY not in str(exc.value)


def test_redact_masks_every_kind_of_secret(kaggle_dir, monkeypatch):
    _write_kaggle_json(kaggle_dir, key="json-key-abcdef123")
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    monkeypatch.setenv("HF_TOKEN", "hf_tokenvalue42")
    monkeypatch.setenv("IMGCLF_DB_PASSWORD", "db-pass-9876")
    monkeypatch.setenv("SOME_SECRET", "shh-its-secret")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://me:uri-pw-4321@db:5432/mlflow")
    text = f"{KEY} json-key-abcdef123 hf_tokenvalue42 db-pass-9876 shh-its-secret uri-pw-4321 mysql://x:unknownpw@h/db"
    out = redact(text)
    for secret in ("k3y", "json-key", "hf_token", "db-pass", "shh", "uri-pw", "unknownpw"):
        assert secret not in out
    assert out.count("***") == 7
    assert "mysql://x:***@h/db" in out


def test_redact_leaves_ordinary_text_and_short_values_alone(monkeypatch):
    monkeypatch.setenv("TINY_KEY", "1")
    monkeypatch.setenv("PWD", "/work/main")
    assert redact("epoch 1 of 10 in /work/main") == "epoch 1 of 10 in /work/main"


def test_registered_secret_and_the_password_inside_a_registered_url():
    register_secret("registered-value-77")
    register_secret("postgresql://u:url-pass-55@h/db")
    assert redact("a registered-value-77 b url-pass-55 c postgresql h/db") == "a *** b *** c postgresql h/db"


@pytest.mark.parametrize(
    "url, masked",
    [
        ("postgresql://optuna:s3cret@db.local:5432/study", "postgresql://optuna:***@db.local:5432/study"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("sqlite:///runs/mlflow.db", "sqlite:///runs/mlflow.db"),
        ("https://host/api?token=abc&x=1", "https://host/api?token=***&x=1"),
        ("mysql://user@host/db", "mysql://user@host/db"),
        ("postgresql://user:p/ss@host:5432/db", "postgresql://user:***@host:5432/db"),
        ("postgresql://user:p/ss@w@host:5432/db", "postgresql://user:***@host:5432/db"),
        ("postgresql://user:p@ss@host/db", "postgresql://user:***@host/db"),
        ("postgresql://user:p#ss@host/db", "postgresql://user:***@host/db"),
        ("postgresql://user:p%2Fss@host/db", "postgresql://user:***@host/db"),
        ("postgresql://user:p:ss@host/db", "postgresql://user:***@host/db"),
        ("http://user:p?ss@[::1]:5000/", "http://user:***@[::1]:5000/"),
        ("mysql://user:pa/s#s@w:or:d@host/db?token=abc", "mysql://user:***@host/db?token=***"),
        ("https://host/api?x=1&API_KEY=abc#frag", "https://host/api?x=1&API_KEY=***#frag"),
        ("https://host/callback#access_token=abc", "https://host/callback#access_token=***"),
        ("sqlite:////tmp/a@b/mlflow.db", "sqlite:////tmp/a@b/mlflow.db"),
        ("file:///C:/x@y", "file:///C:/x@y"),
        ("see http://u:p/w@h/x?token=t and mysql://v:q#r@k", "see http://u:***@h/x?token=*** and mysql://v:***@k"),
        (None, None),
    ],
)
def test_mask_url(url, masked):
    assert mask_url(url) == masked


# Passwords with every character that ended the old maskers' password early; each ends in a marker
# that must never appear anywhere once masked.
URL_PASSWORDS = {
    "slash": "Zq/slash9x",
    "at": "Zq@atsign9x",
    "hash": "Zq#hash9x",
    "encoded": "Zq%2Fencoded9x",
    "colon": "Zq:colon9x",
    "all": "Pw/qux1@quux2#corge3:grault4%2Fgarply5",
}
MARKERS = ("slash9x", "atsign9x", "hash9x", "encoded9x", "colon9x", "qux1", "quux2", "corge3", "grault4", "garply5")


def _assert_no_marker(text: str) -> None:
    assert not [m for m in MARKERS if m in text], text


@pytest.mark.parametrize("password", list(URL_PASSWORDS.values()), ids=list(URL_PASSWORDS))
@pytest.mark.parametrize(
    "template",
    ["postgresql://ana:{}@db.local:5432/optuna", "http://ana:{}@127.0.0.1:5000", "https://ana:{}@host/x?y=1"],
)
def test_no_url_password_shape_is_shown_in_clear(password, template, monkeypatch):
    url = template.format(password)
    assert mask_url(url) == template.format("***")
    _assert_no_marker(redact(f"cannot reach {url}: refused"))
    _assert_no_marker(redact(f"login failed for {password}", url))
    _assert_no_marker(str(redact_tree({"tracking": {"uri": url}})))
    _assert_no_marker(str(redact_params({"tracking.uri": url})))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    _assert_no_marker(redact(f"driver said: bad password {password}"))


def test_url_password_from_argv_is_masked_bare(capsys):
    register_url_passwords(["--set", "tracking.uri=postgresql://u:Ar/gv@pw9 spaced@h/db"])
    assert redact("auth failed: Ar/gv@pw9 spaced") == "auth failed: ***"


def test_params_and_config_trees_are_redacted(monkeypatch):
    monkeypatch.setenv("IMGCLF_DB_PASSWORD", "tree-pass-1234")
    params = {
        "tracking.uri": "postgresql://u:p4ssword@h/db",
        "db.password": "tree-pass-1234",
        "train.lr": 0.1,
        "note": "x tree-pass-1234",
    }
    assert redact_params(params) == {
        "tracking.uri": "postgresql://u:***@h/db",
        "db.password": "***",
        "train.lr": 0.1,
        "note": "x ***",
    }
    assert redact_tree({"a": ["tree-pass-1234", {"b": "http://u:pw1@h"}], "c": 3}) == {
        "a": ["***", {"b": "http://u:***@h"}],
        "c": 3,
    }


def test_saved_config_holds_no_tracking_password(tmp_path):
    cfg = load_config(None, [*TINY, "tracking.uri=postgresql://u:cfg-pass-31337@127.0.0.1:1/x"])
    save_config(cfg, tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text()
    assert "cfg-pass-31337" not in text and "postgresql://u:***@127.0.0.1:1/x" in text
    assert load_config(tmp_path / "config.yaml").tracking.uri == "postgresql://u:***@127.0.0.1:1/x"


def test_environment_json_records_no_environment_values(tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    monkeypatch.setenv("IMGCLF_DB_PASSWORD", "env-json-pass-1")
    write_environment(tmp_path / "environment.json", "cpu")
    text = (tmp_path / "environment.json").read_text()
    assert KEY not in text and "env-json-pass-1" not in text


def test_log_records_are_redacted_even_from_libraries_with_their_own_handlers(monkeypatch, capsys):
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    install_log_redaction()
    lib = logging.getLogger("somelib.sub")
    handler = logging.StreamHandler(sys.stderr)
    lib.addHandler(handler)
    lib.propagate = False
    try:
        lib.warning("connecting with %s to %s", KEY, "http://u:libpass99@host/")
        try:
            raise RuntimeError(f"failed with key {KEY}")
        except RuntimeError:
            lib.exception("boom")
    finally:
        lib.removeHandler(handler)
    err = capsys.readouterr().err
    assert KEY not in err and "libpass99" not in err
    assert "connecting with *** to http://u:***@host/" in err
    assert "RuntimeError: failed with key ***" in err


def test_redacting_stream_masks_bare_prints(monkeypatch, capsys):
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    stream = RedactingStream(sys.stdout)
    print("the key is", KEY, file=stream)
    assert capsys.readouterr().out == "the key is ***\n"


def test_cli_error_lines_are_redacted(monkeypatch, capsys):
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    with pytest.raises(SystemExit) as exc:
        run(["evaluate", f"/nowhere/{KEY}"])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert KEY not in err and "run directory not found: /nowhere/***" in err


def test_cli_usage_error_echoing_a_url_password_is_masked(capsys):
    with pytest.raises(SystemExit) as exc:
        run(["train", "--no-such-option", "postgresql://u:usage-pass-8@h/db"])
    captured = capsys.readouterr()
    assert exc.value.code == 2
    assert "usage-pass-8" not in captured.err + captured.out


@pytest.mark.skipif(importlib.util.find_spec("kaggle") is not None, reason="the kaggle client is installed here")
@pytest.mark.parametrize(
    "args", [["kaggle", "download", "titanic"], ["kaggle", "submit", "{run}", "--competition", "titanic"]]
)
def test_kaggle_commands_without_the_client_say_how_to_install_it(tmp_path, capsys, args):
    (tmp_path / "submission.csv").write_text("Id,Category\n1,0\n")
    with pytest.raises(SystemExit) as exc:
        run([a.format(run=tmp_path) for a in args])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert (
        err.strip()
        == "error: the kaggle client is not installed; install it with: pip install -e '.[kaggle]' in the imgclf checkout (or pip install kaggle)"
    )


def test_kaggle_submit_needs_the_submission_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        run(["kaggle", "submit", str(tmp_path), "--competition", "titanic"])
    assert exc.value.code == 2
    assert "submission file not found" in capsys.readouterr().err


class FakeKaggleApi:
    def __init__(self):
        self.calls = []

    def competition_download_files(self, competition, path, quiet):
        self.calls.append(("download", competition))
        (os.path.join(path, f"{competition}.zip") and open(os.path.join(path, f"{competition}.zip"), "wb")).close()

    def competition_submit(self, file_name, message, competition):
        self.calls.append(("submit", file_name, message, competition))


def test_download_and_submit_call_the_official_client(tmp_path):
    api = FakeKaggleApi()
    archive = download_competition("dogs-vs-cats", tmp_path / "dl", api=api)
    assert archive == tmp_path / "dl" / "dogs-vs-cats.zip" and archive.is_file()
    sub = tmp_path / "submission.csv"
    sub.write_text("Id,Category\n")
    submit_file(sub, "dogs-vs-cats", "first try", api=api)
    assert api.calls == [("download", "dogs-vs-cats"), ("submit", str(sub), "first try", "dogs-vs-cats")]


def test_cli_learns_url_passwords_from_its_arguments(capsys):
    with pytest.raises(SystemExit):
        run(["evaluate", "/nowhere", "--device", "postgresql://u:argv-pass-777@h/db"])
    assert redact("the driver said: bad password argv-pass-777") == "the driver said: bad password ***"
    assert "argv-pass-777" not in capsys.readouterr().err


def _run_files_text(folder) -> str:
    """Every file of a run directory as text (checkpoints too: a pickled string is stored as is)."""
    return "\n".join(p.read_bytes().decode("latin-1") for p in sorted(folder.rglob("*")) if p.is_file())


def _cli(args, capsys) -> tuple[int, str, str]:
    """(exit code, stdout + stderr, stderr)."""
    code, out, err = cli(args, capsys)
    return code, out + err, err


TRAIN_FAST = [*TINY, "train.epochs=1", "train.max_steps_per_epoch=1", "tracking.enabled=true"]


def test_tracking_uri_password_from_set_is_in_no_run_file_or_output(
    tiny_dataset, tmp_path, capsys, monkeypatch, closing_port
):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    url = f"postgresql://ana:{URL_PASSWORDS['all']}@127.0.0.1:{closing_port}/mlflow"
    out = tmp_path / "runs" / "a"
    sets = [a for o in [*TRAIN_FAST, f"tracking.uri={url}"] for a in ("--set", o)]
    code, text, _ = _cli(["train", tiny_dataset, *sets, "--out", out], capsys)
    assert code == 0 and (out / "checkpoints" / "last.pt").is_file() and (out / "config.yaml").is_file()
    assert f"postgresql://ana:***@127.0.0.1:{closing_port}/mlflow" in (out / "config.yaml").read_text()
    _assert_no_marker(text)
    _assert_no_marker(_run_files_text(tmp_path))


def test_tracking_uri_password_from_the_environment_is_in_no_run_file_or_output(
    tiny_dataset, tmp_path, capsys, monkeypatch, closing_port
):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    # The server closes every connection: tracking turns itself off with one masked warning.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://ana:{URL_PASSWORDS['all']}@127.0.0.1:{closing_port}/")
    out = tmp_path / "runs" / "a"
    code, text, _ = _cli(["train", tiny_dataset, *[a for o in TRAIN_FAST for a in ("--set", o)], "--out", out], capsys)
    assert code == 0 and text.count("tracking disabled") == 1
    assert f"http://ana:***@127.0.0.1:{closing_port}" in text
    _assert_no_marker(text)
    _assert_no_marker(_run_files_text(tmp_path))


@pytest.mark.parametrize("password", list(URL_PASSWORDS.values()), ids=list(URL_PASSWORDS))
def test_sweep_storage_password_is_never_shown(password, tiny_dataset, tmp_path, capsys, closing_port):
    space = tmp_path / "space.yaml"
    space.write_text("space:\n  train.lr: {type: float, low: 1.0e-4, high: 1.0e-2}\n")
    url = f"postgresql://imgclf:{password}@127.0.0.1:{closing_port}/nowhere"
    code, text, err = _cli(
        [
            "sweep",
            tiny_dataset,
            "--space",
            space,
            "--trials",
            "1",
            "--out",
            tmp_path / "s",
            "--storage",
            url,
            *[a for o in TINY for a in ("--set", o)],
        ],
        capsys,
    )
    assert code == 2
    lines = err.strip().splitlines()
    assert (
        len(lines) == 1
        and len(lines[0]) < 300
        and f"postgresql://imgclf:***@127.0.0.1:{closing_port}/nowhere" in lines[0]
    )
    _assert_no_marker(text)
    _assert_no_marker(_run_files_text(tmp_path / "s") if (tmp_path / "s").exists() else "")


def test_split_userinfo_uses_the_same_rule():
    assert split_userinfo("http://ana:p%2F/s@w@h:5000/x") == ("http://h:5000/x", "ana", "p//s@w")
    assert split_userinfo("sqlite:///x.db") == ("sqlite:///x.db", None, None)
    assert split_userinfo("http://host/users/@me") == ("http://host/users/@me", None, None)
    assert split_userinfo("https://tok3n@host/x") == ("https://host/x", "tok3n", None)
