"""Search spaces and proxy settings for sweeps, read from YAML and checked against the config.

A space file maps config keys to a distribution (dotted keys or nested sections)::

    train.lr: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
    train.weight_decay: {type: float, low: 0.0, high: 0.1}
    train.label_smoothing: {type: float, low: 0.0, high: 0.2, step: 0.05}
    model.dropout: {type: float, low: 0.0, high: 0.5}
    data.augment: {type: categorical, choices: [light, medium, strong]}
    finetune.strategy: {type: categorical, choices: [full, bn_only]}
    data.batch_size: {type: int, low: 16, high: 64, log: true}

It may instead hold ``space:`` (that mapping) and ``proxy:`` (config overrides that make the cheap
proxy job, e.g. ``{model.weights: embedded:lite0, data.image_size: 48, data.subset: 0.3,
train.epochs: 3}``). Every problem is one ConfigError line naming the file and the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgclf.config import Config, _suggest, flatten, known_keys, read_yaml, with_overrides
from imgclf.errors import ConfigError

TYPES = ("float", "int", "categorical")
_FIELDS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}


@dataclass(frozen=True)
class SearchParam:
    key: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial) -> Any:
        """Draw this parameter from an Optuna trial."""
        if self.type == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(self.key, self.low, self.high, log=self.log, step=self.step or 1)
        return trial.suggest_categorical(self.key, list(self.choices))

    def describe(self) -> str:
        if self.type == "categorical":
            return f"{self.key} ∈ {{{', '.join(map(str, self.choices))}}}"
        scale = " (log)" if self.log else ""
        return f"{self.key} ∈ [{self.low}, {self.high}]{scale}"


def read_space(path: str | Path) -> tuple[list[SearchParam], dict[str, Any]]:
    """``(params, proxy overrides)`` from a space file; proxy is ``{}`` when the file has none."""
    tree = read_yaml(path)
    proxy: dict[str, Any] = {}
    if "space" in tree:
        extra = set(tree) - {"space", "proxy"}
        if extra:
            raise ConfigError(
                f"space file {path}: unknown top-level key {sorted(extra)[0]!r} (expected space: and proxy:)"
            )
        if not isinstance(tree["space"], dict):
            raise ConfigError(f"space file {path}: space: must be a mapping of config keys")
        proxy = read_proxy_tree(tree.get("proxy") or {}, path)
        tree = tree["space"]
    params = parse_space(tree, str(path))
    return params, proxy


def parse_space(tree: dict[str, Any], source: str = "space") -> list[SearchParam]:
    specs = _flatten_specs(tree, source)
    if not specs:
        raise ConfigError(
            f"space file {source} names no parameters (e.g. train.lr: {{type: float, low: 1.0e-4, high: 1.0e-2, log: true}})"
        )
    keys = set(known_keys())
    params = []
    for key, spec in specs.items():
        if key not in keys:
            raise ConfigError(f"space file {source}: unknown config key {key!r}{_suggest(key)}")
        params.append(_parse_param(key, spec, source))
    return params


def _flatten_specs(tree: dict[str, Any], source: str, prefix: str = "") -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and "type" in value:
            out[name] = value
        elif isinstance(value, dict):
            out.update(_flatten_specs(value, source, name + "."))
        else:
            raise ConfigError(
                f"space file {source}: {name} must be a mapping like {{type: float, low: ..., high: ...}} "
                f"or {{type: categorical, choices: [...]}}, got {value!r}"
            )
    return out


def _parse_param(key: str, spec: dict[str, Any], source: str) -> SearchParam:
    where = f"space file {source}: {key}"
    kind = spec.get("type")
    if kind not in TYPES:
        raise ConfigError(f"{where}: type must be one of {', '.join(TYPES)} (got {kind!r})")
    unknown = set(spec) - _FIELDS[kind]
    if unknown:
        raise ConfigError(
            f"{where}: unknown field {sorted(unknown)[0]!r} for type {kind} (allowed: {', '.join(sorted(_FIELDS[kind]))})"
        )
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: choices must be a non-empty list")
        if any(isinstance(c, (dict, list)) for c in choices):
            raise ConfigError(f"{where}: choices must be plain values (numbers, strings, true/false, null)")
        return SearchParam(key, kind, choices=tuple(_number_or_value(c) for c in choices))
    low, high = _number(spec.get("low"), f"{where}: low"), _number(spec.get("high"), f"{where}: high")
    step = None if spec.get("step") is None else _number(spec["step"], f"{where}: step")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log must be true or false (got {log!r})")
    if kind == "int":
        if not (float(low).is_integer() and float(high).is_integer()) or (
            step is not None and not float(step).is_integer()
        ):
            raise ConfigError(f"{where}: type int needs whole-number low/high/step")
        low, high, step = int(low), int(high), None if step is None else int(step)
    if low >= high:
        raise ConfigError(f"{where}: low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise ConfigError(f"{where}: log scale needs low > 0 (got {low})")
    if log and step is not None and step != 1:
        raise ConfigError(f"{where}: step and log cannot be combined")
    if step is not None and step <= 0:
        raise ConfigError(f"{where}: step must be positive (got {step})")
    return SearchParam(key, kind, low=low, high=high, log=log, step=step)


def _number(value: Any, where: str) -> float:
    value = _number_or_value(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where} must be a number (got {value!r})")
    return value


def _number_or_value(value: Any) -> Any:
    if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            return value
    return value


def read_proxy(path: str | Path) -> dict[str, Any]:
    """Proxy overrides from a config-style YAML file (nested sections or dotted keys)."""
    return read_proxy_tree(read_yaml(path), path)


def read_proxy_tree(tree: dict[str, Any], source: str | Path) -> dict[str, Any]:
    if not isinstance(tree, dict):
        raise ConfigError(f"proxy in {source} must be a mapping of config keys")
    flat = {k: _number_or_value(v) for k, v in flatten(tree).items()}
    keys = set(known_keys())
    for key in flat:
        if key not in keys:
            raise ConfigError(f"proxy in {source}: unknown config key {key!r}{_suggest(key)}")
    return flat


def check_space(params: list[SearchParam], cfg: Config) -> None:
    """Every bound and choice must make a valid config on top of ``cfg`` — found now, not at trial 17."""
    for p in params:
        values = list(p.choices) if p.type == "categorical" else [p.low, p.high]
        for value in values:
            try:
                with_overrides(cfg, {p.key: value})
            except ConfigError as exc:
                raise ConfigError(f"search space: {p.key}={value!r} is not a valid config value: {exc}") from None
