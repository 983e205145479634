"""A TTAConfig from ``--tta``-style options, on top of the run's own ``tta`` config section (saved in ``config.yaml``):
what ``imgclf predict``/``evaluate`` and :func:`imgclf.api.predict` ask for. The result is validated like any config
(bad values → one-line ConfigError).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgclf.errors import ConfigError
from imgclf.run.rundir import RunDir

if TYPE_CHECKING:
    from imgclf.config import Config, TTAConfig


def saved_config(run_dir: Path) -> Config:
    """The run's saved config (defaults when it has none: loading the run reports that later).

    For a CV or ensemble folder: the config of its first member run.
    """
    from imgclf.config import Config, build_config, read_yaml  # pydantic: not on the path of --help

    path = RunDir(Path(run_dir)).config
    if not path.is_file() and Path(run_dir).is_dir():
        from imgclf.errors import RunDirError
        from imgclf.infer.model_set import resolve_model_set

        try:
            path = RunDir(resolve_model_set(Path(run_dir)).members[0][0]).config
        except RunDirError:
            pass  # not a model set either: loading it reports the problem
    return build_config(read_yaml(path)) if path.is_file() else Config()


def parse_tta(value: str | None) -> dict[str, Any]:
    """``"none"`` / ``"adaptive"`` / ``"4"`` → config overrides (``{}`` for None)."""
    if value is None:
        return {}
    text = value.strip().lower()
    if text in ("none", "adaptive"):
        return {"tta.mode": text}
    if text.isdigit() and int(text) >= 1:
        return {"tta.mode": "fixed", "tta.n": int(text)}
    raise ConfigError(f"--tta must be none, adaptive or a number of views (1, 2, ...), got {value!r}")


def tta_from_options(
    run_dir: Path,
    tta: str | None = None,
    threshold: float | None = None,
    max_views: int | None = None,
    budget: int | None = None,
    views: str | None = None,
) -> TTAConfig:
    """The TTAConfig the options ask for, on top of the run's ``tta`` config section."""
    from imgclf.config import with_overrides

    values = parse_tta(tta)
    adaptive_only = {"tta.threshold": threshold, "tta.max_views": max_views, "tta.budget": budget}
    values.update({k: v for k, v in adaptive_only.items() if v is not None})
    if views is not None:
        from imgclf.infer.views import parse_view  # torchvision: imported only when used

        names = [n.strip() for n in views.split(",") if n.strip()]
        for name in names:
            parse_view(name)  # unknown names fail here, with the list of valid ones
        values["tta.views"] = names
    cfg = with_overrides(saved_config(run_dir), values).tta
    given = [
        flag
        for flag, v in (("--tta-threshold", threshold), ("--tta-max-views", max_views), ("--tta-budget", budget))
        if v is not None
    ]
    if given and cfg.mode != "adaptive":
        raise ConfigError(
            f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only to adaptive TTA; add --tta adaptive"
        )
    if cfg.mode == "fixed" and cfg.n > len(cfg.views):
        raise ConfigError(
            f"--tta {cfg.n} asks for more views than the {len(cfg.views)} listed ({', '.join(cfg.views)})"
        )
    return cfg
