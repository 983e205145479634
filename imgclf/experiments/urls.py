"""Database/tracking URLs: hide their passwords in every message, and pick an installed driver.

Example::

    mask_url("postgresql://ana:s3cret@db/optuna")     # 'postgresql://ana:***@db/optuna'
    redact("could not log in as ana:s3cret", url)      # 'could not log in as ana:***'
    sqlalchemy_url("postgresql://ana:s3cret@db/optuna")  # 'postgresql+psycopg2://...' when only psycopg2 is installed
"""

from __future__ import annotations

import importlib.util
import re
from urllib.parse import quote, unquote

_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@]*):(?P<password>[^@/]*)@")


def _password(url: str) -> str | None:
    match = _USERINFO.match(url or "")
    return match.group("password") if match and match.group("password") else None


def mask_url(url: str | None) -> str:
    """The URL with its password (if any) replaced by ``***``."""
    if not url:
        return str(url)
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:***@", url, count=1)


def redact(text: str, *urls: str | None) -> str:
    """``text`` with the passwords of ``urls`` (raw and percent-decoded/encoded forms) masked."""
    for url in urls:
        password = _password(url or "")
        if not password:
            continue
        text = text.replace(url, mask_url(url))
        for form in {password, unquote(password), quote(unquote(password), safe="")}:
            if form:
                text = text.replace(form, "***")
    return text


def sqlalchemy_url(url: str) -> str:
    """Plain ``postgresql://`` means psycopg (v3) to SQLAlchemy 2.1; use psycopg2 when only it is installed."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres"):
        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
            return f"postgresql+psycopg2://{rest}"
        return f"postgresql://{rest}"
    return url


def one_line(exc: BaseException, *urls: str | None) -> str:
    """The first line of an exception's message, passwords masked (driver errors span many lines)."""
    text = str(exc).strip().splitlines()
    first = text[0].strip() if text else type(exc).__name__
    # SQLAlchemy prefixes "(psycopg2.OperationalError) "; the useful part follows it.
    first = re.sub(r"^\([\w.]+\)\s*", "", first)
    return redact(first, *urls)
