"""Database/tracking URLs: pick an installed driver, and shorten a driver's error to one masked line.

Masking itself is :func:`imgclf.secrets.mask_url` / :func:`imgclf.secrets.redact` (one rule for all).

Example::

    sqlalchemy_url("postgresql://ana:s3cret@db/optuna")  # 'postgresql+psycopg2://...' when only psycopg2 is installed
    one_line(exc, url)                                   # 'connection refused (postgresql://ana:***@db/optuna)'
"""

from __future__ import annotations

import importlib.util
import re

from imgclf.secrets import redact

MAX_LINE = 200


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
    # Cut after masking: a cut password would no longer match its known value.
    first = redact(first, *urls)
    return first if len(first) <= MAX_LINE else first[: MAX_LINE - 3] + "..."
