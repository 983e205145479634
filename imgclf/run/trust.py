"""What a run folder may decide when it is read back, and what only the user decides.

A run folder may come from someone else. Its ``config.yaml`` says how the model was built and trained, which a
resume continues. It does not say where tracking data goes — and so which of the user's credentials
(``MLFLOW_TRACKING_PASSWORD``, ``MLFLOW_TRACKING_TOKEN``) go with it — nor where files are written outside
the run: those come from the user's own command line and environment. :data:`USER_KEYS` are those keys;
the run's values for them are replaced by the user's (one log line each when they differed).

Example::

    cfg = run_config(RunDir(Path("runs/theirs")))   # tracking.uri and data.cache_dir: None (the user's defaults)
"""

from __future__ import annotations

import logging

from imgclf.config import Config, build_config, load_config, read_yaml, with_overrides
from imgclf.run.rundir import RunDir
from imgclf.secrets import mask_url

log = logging.getLogger("imgclf")

# key → what it would decide, for the log line
USER_KEYS = {
    "tracking.uri": "where tracking data and the user's MLflow credentials go",
    "data.cache_dir": "where the resize cache is written",
}


def run_config(run: RunDir, user: Config | None = None) -> Config:
    """``run``'s config.yaml, with :data:`USER_KEYS` taken from ``user`` (default: the defaults, so that
    ``--tracking-uri`` and ``$MLFLOW_TRACKING_URI`` decide)."""
    saved = build_config(read_yaml(run.config))
    ours, theirs = (user or load_config(None, [])).flat(), saved.flat()
    changed = {key: ours[key] for key in USER_KEYS if theirs[key] != ours[key]}
    for key in changed:
        if theirs[key] is not None:
            log.info(
                "ignoring %s=%s from %s: a run folder does not decide %s; pass --set %s=... to use it",
                key,
                (mask_url(str(theirs[key])) or "")[:120],
                run.config,
                USER_KEYS[key],
                key,
            )
    return with_overrides(saved, changed) if changed else saved
