"""Credentials and redaction: secrets are read from the places the official clients use, and never written.

- :func:`kaggle_credentials` reads ``KAGGLE_USERNAME``/``KAGGLE_KEY``, else ``kaggle.json`` in
  ``KAGGLE_CONFIG_DIR`` (default ``~/.kaggle``), in the official ``kaggle`` client's order, and warns
  when that file is readable by group or others.
- :func:`redact` masks every known secret value in a piece of text: the Kaggle key (environment
  and ``kaggle.json``), the value of any environment variable named ``*_KEY``, ``*_TOKEN``,
  ``*_PASSWORD``, ``*_SECRET`` (and a few more), passwords inside URL-valued environment variables
  (``MLFLOW_TRACKING_URI``, database URLs), values added with :func:`register_secret`, and the
  password of any ``scheme://user:password@host`` URL it finds, known or not.
- :func:`mask_url` writes a URL with its password (and secret-looking query values) as ``***``.
- :func:`install_log_redaction` makes every log record pass through :func:`redact`.

Example::

    mask_url("postgresql://me:hunter22@db:5432/optuna")   # 'postgresql://me:***@db:5432/optuna'
    redact(f"key is {os.environ['KAGGLE_KEY']}")          # 'key is ***'
    redact_params({"tracking.uri": "http://u:pw@host"})   # {'tracking.uri': 'http://u:***@host'}
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from imgclf.errors import ImgclfError

log = logging.getLogger("imgclf")

MASK = "***"
# Shorter values are not masked on their own: an env var FOO_KEY=1 must not turn every "1" into ***.
# Passwords inside URLs are masked in place whatever their length.
MIN_SECRET_LENGTH = 6
SECRET_NAME = re.compile(r"(^|_)(KEY|TOKEN|PASSWORD|PASSWD|PASS|PWD|SECRET|CREDENTIALS?|AUTH)$", re.IGNORECASE)
# Names that match the pattern but hold no secret: the working directory, a public key fingerprint.
NOT_SECRET_NAMES = frozenset({"PWD", "OLDPWD", "GPG_KEY"})
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s/:@'\"]*:)(?P<pw>[^\s@/'\"]+)(?P<at>@)")
_SECRET_QUERY = re.compile(r"(password|passwd|pwd|token|secret|key|api_key|access_token|sig|signature)$", re.IGNORECASE)


class CredentialsError(ImgclfError):
    """Credentials are missing or unreadable."""


@dataclass(frozen=True)
class KaggleCredentials:
    username: str
    key: str = field(repr=False)
    source: str  # "environment" or the kaggle.json path

    def __repr__(self) -> str:
        return f"KaggleCredentials(username={self.username!r}, key={MASK!r}, source={self.source!r})"


def kaggle_config_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the official client looks for ``kaggle.json``: ``KAGGLE_CONFIG_DIR``, else ``~/.kaggle``."""
    env = os.environ if env is None else env
    return Path(env["KAGGLE_CONFIG_DIR"]).expanduser() if env.get("KAGGLE_CONFIG_DIR") else Path.home() / ".kaggle"


def permission_problem(path: Path) -> str | None:
    """A one-line warning when ``path`` is readable by group or others (None when it is private)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        return f"{path} is readable by other users (mode {stat.S_IMODE(mode):o}); fix it with: chmod 600 {path}"
    return None


def _read_kaggle_json(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        # The message must not quote the file: it holds the key.
        raise CredentialsError(f"cannot read {path} as JSON with 'username' and 'key'") from None
    if not isinstance(data, dict):
        raise CredentialsError(f"{path} must hold a JSON object with 'username' and 'key'")
    return {k: str(v) for k, v in data.items() if isinstance(v, (str, int))}


def kaggle_credentials(env: Mapping[str, str] | None = None) -> KaggleCredentials:
    """The Kaggle username and key, from the environment first, then ``kaggle.json``.

    Raises :class:`CredentialsError` (one line, no secret in it) when neither is set.
    """
    env = os.environ if env is None else env
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return KaggleCredentials(env["KAGGLE_USERNAME"], env["KAGGLE_KEY"], "environment")
    path = kaggle_config_dir(env) / "kaggle.json"
    if not path.is_file():
        raise CredentialsError(
            f"no Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY, or save your API token as {path} "
            f"(then chmod 600 {path})"
        )
    problem = permission_problem(path)
    if problem:
        log.warning(problem)
    data = _read_kaggle_json(path)
    if not data.get("username") or not data.get("key"):
        raise CredentialsError(f"{path} must hold both 'username' and 'key'")
    return KaggleCredentials(data["username"], data["key"], str(path))


# --------------------------------------------------------------------------- collecting secret values

# Values handed over explicitly (a password from a config file, a storage URL given on the command
# line). Process-wide on purpose: the log filter has no other way to learn them.
_REGISTERED: set[str] = set()
_KAGGLE_JSON_CACHE: dict[tuple[str, int, int], tuple[str, ...]] = {}


def register_secret(value: str | None) -> None:
    """Mask ``value`` from now on (only the password inside it, when it is a URL)."""
    if value:
        _REGISTERED.add(value)


def register_url_passwords(texts: list[str]) -> None:
    """Register the password of every ``scheme://user:password@`` URL inside ``texts`` (e.g. argv),
    so the bare password is masked too when a driver error or a library log repeats it."""
    for text in texts:
        for match in _URL_PASSWORD.finditer(text):
            register_secret(unquote(match["pw"]))
            register_secret(match["pw"])


def url_passwords(url: str) -> set[str]:
    """The password inside ``url`` as written and percent-decoded (empty when there is none)."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return set()
    return {password, unquote(password)} if password else set()


def is_secret_name(name: str) -> bool:
    return name.upper() not in NOT_SECRET_NAMES and bool(SECRET_NAME.search(name))


def _kaggle_json_secrets(env: Mapping[str, str]) -> tuple[str, ...]:
    path = kaggle_config_dir(env) / "kaggle.json"
    try:
        st = path.stat()
    except OSError:
        return ()
    cache_key = (str(path), st.st_mtime_ns, st.st_size)
    if cache_key not in _KAGGLE_JSON_CACHE:
        try:
            data = _read_kaggle_json(path)
        except CredentialsError:
            data = {}
        _KAGGLE_JSON_CACHE.clear()
        _KAGGLE_JSON_CACHE[cache_key] = tuple(v for k, v in data.items() if k != "username")
    return _KAGGLE_JSON_CACHE[cache_key]


def secret_values(env: Mapping[str, str] | None = None) -> set[str]:
    """Every secret value known now (at least :data:`MIN_SECRET_LENGTH` characters long)."""
    env = os.environ if env is None else env
    found: set[str] = set(_kaggle_json_secrets(env))
    for name, value in env.items():
        if not value:
            continue
        if is_secret_name(name):
            found.add(value)
        if "://" in value:
            found |= url_passwords(value)
    for value in _REGISTERED:
        # A URL is registered for its password; the rest of it (host, database) may be shown.
        found |= url_passwords(value) if "://" in value else {value}
    return {v for v in found if len(v) >= MIN_SECRET_LENGTH}


def redact(text: Any, env: Mapping[str, str] | None = None) -> str:
    """``text`` (made a string) with every known secret and every URL password replaced by ``***``."""
    text = str(text)
    # Longest first, so a secret that contains another is masked whole; known values before the
    # URL pattern, which cannot see a password holding an unencoded '@'.
    for value in sorted(secret_values(env), key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    return _URL_PASSWORD.sub(lambda m: m["head"] + MASK + m["at"], text)


def redact_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``params`` (e.g. MLflow params, a flat config) with every string value redacted,
    and the whole value masked where the key names a secret (``*.password``, ``*_token`` ...)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is not None and is_secret_name(str(key).replace(".", "_")):
            out[key] = MASK
        elif isinstance(value, str):
            out[key] = redact(mask_url(value) if "://" in value else value)
        else:
            out[key] = value
    return out


def redact_tree(tree: Any) -> Any:
    """A copy of a nested dict/list (a config dump) with every string redacted and URL passwords masked."""
    if isinstance(tree, Mapping):
        return {k: redact_tree(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [redact_tree(v) for v in tree]
    if isinstance(tree, str):
        return redact(mask_url(tree) if "://" in tree else tree)
    return tree


def mask_url(url: str | None) -> str | None:
    """``url`` with its password, and query values named like secrets, replaced by ``***``.

    >>> mask_url("postgresql://optuna:s3cret@db.local:5432/study?sslmode=require&token=abc")
    'postgresql://optuna:***@db.local:5432/study?sslmode=require&token=***'
    """
    if not url or "://" not in url:
        return url
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return _URL_PASSWORD.sub(lambda m: m["head"] + MASK + m["at"], url)
    # Replace the parts in the text itself: urlunsplit would rewrite "sqlite:///x" as "sqlite:/x".
    if password is not None:
        userinfo, _, hostinfo = parts.netloc.rpartition("@")
        url = url.replace(parts.netloc, f"{userinfo.split(':', 1)[0]}:{MASK}@{hostinfo}", 1)
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if any(_SECRET_QUERY.search(k) for k, _ in pairs):
            query = urlencode([(k, MASK if _SECRET_QUERY.search(k) else v) for k, v in pairs], safe="*")
            url = url.replace("?" + parts.query, "?" + query, 1)
    return url


# --------------------------------------------------------------------------- logging


class RedactingFilter(logging.Filter):
    """Replaces a record's message (arguments merged in) and formatted traceback with redacted text."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_imgclf_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let logging report it as it always does
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record._imgclf_redacted = True
        return True


_FILTER = RedactingFilter()


def install_log_redaction(*loggers: logging.Logger) -> None:
    """Redact every log record before any handler sees it.

    The filter goes on the ``imgclf`` and root loggers and on their handlers (a logger's own
    filter never sees records that propagate up from its children). Libraries such as MLflow and
    Optuna configure their own loggers and handlers when they are imported, possibly later, so
    the record factory redacts too: that is the one place every record passes through.
    Calling it again is harmless.
    """
    for logger in (logging.getLogger("imgclf"), logging.getLogger(), *loggers):
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "_imgclf_redacting", False):
        def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = factory(*args, **kwargs)
            _FILTER.filter(record)
            return record

        redacting_factory._imgclf_redacting = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(redacting_factory)


# --------------------------------------------------------------------------- output streams


class RedactingStream:
    """A text stream that redacts what is written and passes it to ``target``.

    The CLI wraps ``sys.stdout``/``sys.stderr`` in it for the whole command, so even a library's
    bare ``print`` cannot show a secret. Everything but ``write`` is delegated to the target.
    """

    def __init__(self, target: Any):
        self._target = target

    def write(self, text: str) -> int:
        self._target.write(redact(text) if text else text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)
