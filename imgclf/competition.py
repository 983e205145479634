"""Download a Kaggle competition's data and submit a file to it, through the official ``kaggle`` client.

The client is an optional extra (``pip install -e '.[kaggle]'`` in a checkout, or ``pip install kaggle``). Credentials come from
:func:`imgclf.secrets.kaggle_credentials` (environment first, then ``kaggle.json``), checked before
the client is imported, because importing ``kaggle`` authenticates at once and fails with a
message of its own.

Example::

    zip_path = download_competition("dogs-vs-cats", Path("downloads"))   # then: imgclf prepare zip_path
    submit_file(Path("runs/r1/submission.csv"), "dogs-vs-cats", "efficientnet-lite0, 5 epochs")
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from imgclf.errors import DataError, ImgclfError
from imgclf.secrets import kaggle_credentials, redact

log = logging.getLogger("imgclf")

# imgclf is installed from a checkout: 'imgclf[kaggle]' names a package no index has.
INSTALL_HINT = "pip install -e '.[kaggle]' in the imgclf checkout (or pip install kaggle)"


class KaggleError(ImgclfError):
    """The kaggle client is missing, or Kaggle refused a request."""


def kaggle_installed() -> bool:
    # find_spec does not run kaggle/__init__.py, which authenticates on import.
    return importlib.util.find_spec("kaggle") is not None


def kaggle_api() -> Any:
    """An authenticated ``KaggleApi``; raises KaggleError / CredentialsError as one line."""
    if not kaggle_installed():
        raise KaggleError(f"the kaggle client is not installed; install it with: {INSTALL_HINT}")
    creds = kaggle_credentials()
    log.debug("Kaggle credentials of %s from %s", creds.username, creds.source)
    try:
        from kaggle.api.kaggle_api_extended import KaggleApi

        api = KaggleApi()
        api.authenticate()
    except (Exception, SystemExit) as exc:  # the client exits or raises its own types on bad credentials
        raise KaggleError(f"kaggle authentication failed: {_first_line(exc)}") from None
    return api


def download_competition(competition: str, out: Path, api: Any = None) -> Path:
    """Download ``competition``'s files into ``out`` as one zip (``imgclf prepare`` reads it as is)."""
    _check_slug(competition)
    api = api or kaggle_api()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        api.competition_download_files(competition, path=str(out), quiet=True)
    except Exception as exc:  # network, 403 (rules not accepted), 404: all become one line
        raise KaggleError(f"kaggle download of {competition!r} failed: {_first_line(exc)}") from None
    archive = out / f"{competition}.zip"
    if not archive.is_file():
        found = sorted(out.glob("*.zip"))
        if not found:
            raise KaggleError(f"kaggle download of {competition!r} wrote no zip file into {out}")
        archive = found[-1]
    return archive


def submit_file(file: Path, competition: str, message: str, api: Any = None) -> None:
    """Submit ``file`` (a CSV) to ``competition`` with ``message``."""
    _check_slug(competition)
    file = Path(file)
    if not file.is_file():
        raise DataError(f"submission file not found: {file}")
    api = api or kaggle_api()
    try:
        api.competition_submit(file_name=str(file), message=message, competition=competition)
    except Exception as exc:
        raise KaggleError(f"kaggle submission to {competition!r} failed: {_first_line(exc)}") from None


def _check_slug(competition: str) -> None:
    if not competition or "/" in competition or competition.strip() != competition:
        raise KaggleError(f"{competition!r} is not a competition name (the slug in kaggle.com/competitions/<name>)")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return redact(lines[0][:300] if lines else type(exc).__name__)
