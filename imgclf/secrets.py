"""Credentials and redaction: secrets are read from the places the official clients use, and never written.

- :func:`kaggle_credentials` reads ``KAGGLE_USERNAME``/``KAGGLE_KEY``, else ``kaggle.json`` in
  ``KAGGLE_CONFIG_DIR`` (default ``~/.kaggle``), in the official ``kaggle`` client's order, and warns
  when that file is readable by group or others.
- :func:`redact` masks every known secret value in a piece of text: the Kaggle key (environment
  and ``kaggle.json``), the value of any environment variable named ``*_KEY``, ``*_TOKEN``,
  ``*_PASSWORD``, ``*_SECRET`` (and a few more), passwords inside URL-valued environment variables
  (``MLFLOW_TRACKING_URI``, database URLs), values added with :func:`register_secret`, and the
  password and secret query values (``?token=``) of any ``scheme://user:password@host`` URL it
  finds, known or not.
- :func:`mask_url` writes a URL with its password (and secret-looking query values) as ``***``.
  It is the one URL masker: the userinfo ends at the last ``@`` before the host, so passwords
  holding unencoded ``/``, ``@``, ``#`` or ``:`` are masked whole.
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
from urllib.parse import quote, unquote

from imgclf.errors import ImgclfError

log = logging.getLogger("imgclf")

MASK = "***"
# Shorter values are not masked on their own: an env var FOO_KEY=1 must not turn every "1" into ***.
# Passwords inside URLs are masked in place whatever their length.
MIN_SECRET_LENGTH = 6
SECRET_NAME = re.compile(r"(^|_)(KEY|TOKEN|PASSWORD|PASSWD|PASS|PWD|SECRET|CREDENTIALS?|AUTH)$", re.IGNORECASE)
# Names that match the pattern but hold no secret: the working directory, a public key fingerprint.
NOT_SECRET_NAMES = frozenset({"PWD", "OLDPWD", "GPG_KEY"})
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
# A URL inside free text runs to the next space or quote (a password with a space is only masked
# when its value is known: registered, from argv, or from the environment).
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]*")
_QUERY_PAIR = re.compile(r"(?P<sep>[?&;#])(?P<key>[^=&;#?/]+)=(?P<value>[^&;#]*)")
_SECRET_QUERY = re.compile(
    r"(password|passwd|pwd|pass|token|secret|key|api_key|access_token|auth|credentials?|sig|signature)$", re.IGNORECASE
)


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
    """Register the password of the URL inside each of ``texts`` (e.g. argv: one argument is one
    URL to its end, spaces included), so the bare password is masked too when a driver error or a
    library log repeats it."""
    for text in texts:
        match = _SCHEME.search(text)
        if match:
            for value in url_passwords(text[match.start() :]):
                register_secret(value)


def url_passwords(url: str) -> set[str]:
    """The password inside ``url`` as written, percent-decoded and percent-encoded, with every part
    of it between the characters a URL parser may wrongly split at (``/@#?:``): a driver that reads
    ``p/ss@w`` as a password ``p`` and a path ``/ss@w`` quotes the rest in its error (empty when none).

    >>> sorted(url_passwords("postgresql://me:pw/1x@db/x"))
    ['1x', 'pw', 'pw%2F1x', 'pw/1x']
    """
    span = _password_span(url)
    if span is None:
        return set()
    password = url[span[0] : span[1]]
    return _pieces(password) | _pieces(unquote(password)) | {quote(unquote(password), safe="")}


def _pieces(password: str) -> set[str]:
    cuts = [-1, *(i for i, c in enumerate(password) if c in "/@#?:"), len(password)]
    cuts = cuts if len(cuts) <= 18 else cuts[:9] + cuts[-9:]  # a bound for pathological passwords
    return {password[a + 1 : b] for n, a in enumerate(cuts) for b in cuts[n + 1 :]} - {""}


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


def redact(text: Any, *urls: str | None, env: Mapping[str, str] | None = None) -> str:
    """``text`` (made a string) with every known secret, the passwords of ``urls`` and every URL
    password or secret query value it holds replaced by ``***``.

    >>> redact("login failed for me:pw/1@x at postgresql://me:pw/1@x@db/optuna", "postgresql://me:pw/1@x@db/optuna")
    'login failed for me:*** at postgresql://me:***@db/optuna'
    """
    text = str(text)
    values = secret_values(env)
    for url in urls:
        # A password the caller names is masked whatever its length (a one-line error message).
        values |= {v for v in url_passwords(url or "") if len(v) >= 3}
    # Longest first, so a secret that contains another is masked whole; known values before the
    # URL pattern, which cannot see a password holding a space.
    for value in sorted(values, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    return _URL_IN_TEXT.sub(lambda m: _mask_one_url(m.group()), text)


def keys_holding_secrets(params: Mapping[str, Any], env: Mapping[str, str] | None = None) -> list[str]:
    """The keys of ``params`` (a flat config) whose value holds a known secret anywhere but in a URL's
    password or secret query value (which :func:`mask_url` hides wherever the value is written).

    >>> env = {"MY_TOKEN": "hunter2-token"}
    >>> keys_holding_secrets({"tracking.experiment": "exp-hunter2-token", "tracking.uri": "http://me:hunter2-token@host"}, env)
    ['tracking.experiment']
    """
    known = secret_values(env)
    found = []
    for key, value in params.items():
        texts = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(t, str) and any(v in (mask_url(t) or "") for v in known) for t in texts):
            found.append(key)
    return found


def redact_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``params`` (e.g. MLflow params, a flat config) with every string value redacted,
    and the whole value masked where the key names a secret (``*.password``, ``*_token`` ...)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is not None and is_secret_name(str(key).replace(".", "_")):
            out[key] = MASK
        elif isinstance(value, str):
            out[key] = redact(mask_url(value))
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
        return redact(mask_url(tree))
    return tree


def mask_url(url: str | None) -> str | None:
    """``url`` with its password, and query or fragment values named like secrets, replaced by ``***``.

    A string that starts with ``scheme://`` is one URL to its end; in any other string each URL
    found is masked. The userinfo ends at the **last** ``@`` (RFC 3986 ends it at the first ``/?#``,
    but then a password holding them unencoded would be shown in part), so a password may hold
    ``/``, ``@``, ``#``, ``?`` and ``:``. When a path or query holds an ``@`` too, more than the
    password is masked: never less.

    >>> mask_url("postgresql://optuna:s3cret@db.local:5432/study?sslmode=require&token=abc")
    'postgresql://optuna:***@db.local:5432/study?sslmode=require&token=***'
    >>> mask_url("postgresql://user:p/ss@w@host:5432/db")
    'postgresql://user:***@host:5432/db'
    """
    if not url or "://" not in url:
        return url
    if _SCHEME.match(url):
        return _mask_one_url(url)
    return _URL_IN_TEXT.sub(lambda m: _mask_one_url(m.group()), url)


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """``(url without its userinfo, user, password)``, split by the same rule as :func:`mask_url`
    (user and password percent-decoded; None where absent).

    >>> split_userinfo("http://ana:p/ss@w@host:5000/x")
    ('http://host:5000/x', 'ana', 'p/ss@w')
    """
    if not _SCHEME.match(url):
        return url, None, None
    begin, at = _userinfo_end(url)
    if at < 0:
        return url, None, None
    user, sep, password = url[begin:at].partition(":")
    if any(c in user for c in "/?#"):  # the '@' is in a path or query: there is no userinfo
        return url, None, None
    return url[:begin] + url[at + 1 :], unquote(user), unquote(password) if sep else None


def _userinfo_end(url: str) -> tuple[int, int]:
    """(start of the authority, index of the '@' ending the userinfo or -1) in a ``scheme://`` URL.

    The userinfo ends at the last '@': a password may hold '/', '?', '#' and '@' unencoded, and
    ending it earlier would show the rest of it. An '@' in a path or query masks more, never less.
    """
    begin = _SCHEME.match(url).end()
    return begin, url.rfind("@", begin)


def _password_span(url: str) -> tuple[int, int] | None:
    """Where the password is in ``url`` (start, end), or None when it has none."""
    if not _SCHEME.match(url):
        return None
    begin, at = _userinfo_end(url)
    colon = url.find(":", begin, at) if at >= 0 else -1
    # The user name holds none of '/?#' (else the ':' is in a path: file:///C:/x@y).
    if colon < 0 or any(c in url[begin:colon] for c in "/?#") or colon + 1 == at:
        return None
    return colon + 1, at


def _mask_one_url(url: str) -> str:
    span = _password_span(url)
    if span is not None:
        url = url[: span[0]] + MASK + url[span[1] :]
    begin, at = _userinfo_end(url)
    tail = min((i for i in (url.find("?", max(at, begin)), url.find("#", max(at, begin))) if i >= 0), default=-1)
    if tail < 0:
        return url
    return url[:tail] + _QUERY_PAIR.sub(_mask_query_pair, url[tail:])


def _mask_query_pair(match: re.Match[str]) -> str:
    if match["value"] and _SECRET_QUERY.search(unquote(match["key"])):
        return f"{match['sep']}{match['key']}={MASK}"
    return match.group()


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
