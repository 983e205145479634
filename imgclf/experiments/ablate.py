"""Ablation grids: a base config × axes of settings, every cell trained for several seeds.

A grid file (YAML)::

    description: Which classifier head?        # optional, shown in the table caption
    base:                                      # a config tree, like a config YAML
      model: {weights: "embedded:lite0"}
    axes:                                      # dotted config keys → the values to try
      model.head: [linear, mlp, mlp_bn]
    baseline: {model.head: linear}             # optional; default the first cell

Every cell × seed is a normal run directory (``<out>/runs/<cell-slug>/seed<k>``), trained by
:func:`imgclf.training.loop.fit` on one shared validation split (``<out>/split.csv``, passed to
every run as ``data.split_file``), so the paired tests compare the same images. A run whose
``summary.json`` exists is skipped; a half-finished one resumes from ``checkpoints/last.pt`` or
restarts cleanly — an interrupted ablation is continued by running the same command again.

Example::

    plan = plan_ablation(load_grid("heads"), Path("data/cars"), seeds=3, out=Path("ablations/heads"))
    run_ablation(plan)                       # trains what is not finished yet
    write_results(plan)                      # results.md/.csv/.html, learning_curves.png
"""

from __future__ import annotations

import difflib
import logging
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ContextManager

from imgclf.config import Config, build_config, flatten, load_config, read_yaml, with_overrides
from imgclf.run.claim import ABLATION_MARK, check_folder
from imgclf.run.rundir import RunDir
from imgclf.errors import ConfigError, ImgclfError
from imgclf.io import atomic_write_json, read_json
from imgclf.safe_yaml import read_yaml_file

log = logging.getLogger("imgclf")

GRID_KEYS = ("description", "base", "axes", "baseline")
# Cells must share the validation images and the seeds come from --seeds, so these cannot vary.
FIXED_KEYS = {
    "train.seed": "use --seeds for seeds",
    "data.split_seed": "every cell must use the same validation split",
    "data.val_fraction": "every cell must use the same validation split",
    "data.split_file": "every cell must use the same validation split",
}
MANIFEST = ABLATION_MARK


@dataclass(frozen=True)
class Grid:
    name: str
    base: dict[str, Any]
    axes: dict[str, list[Any]]
    baseline: dict[str, Any] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class Cell:
    """One combination of axis values; ``slug`` names its folder under ``runs/``."""

    settings: dict[str, Any]
    slug: str

    def label(self, short: dict[str, str] | None = None) -> str:
        return ", ".join(f"{(short or {}).get(k, k)}={v}" for k, v in self.settings.items())


@dataclass
class Plan:
    """A validated ablation: what runs where, with which config."""

    grid: Grid
    dataset: Path
    out: Path
    cells: list[Cell]
    seeds: list[int]
    baseline: int
    split_file: Path
    configs: dict[tuple[str, int], Config]
    short_names: dict[str, str]

    def run_dir(self, cell: Cell, seed: int) -> Path:
        return self.out / "runs" / cell.slug / f"seed{seed}"


def shipped_grids() -> list[str]:
    folder = resources.files("imgclf") / "experiments" / "grids"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_grid(spec: str | Path) -> Grid:
    """A grid from a YAML file, or a shipped grid by bare name (``heads``, ``strategies``, ``data_size``)."""
    path = Path(spec)
    if not path.is_file():
        name = str(spec)
        if name in shipped_grids():
            path = Path(str(resources.files("imgclf") / "experiments" / "grids" / f"{name}.yaml"))
        else:
            raise ConfigError(f"grid not found: {spec} (a YAML file, or a shipped grid: {', '.join(shipped_grids())})")
    data = read_yaml_file(path, what="grid file")
    return parse_grid(data, name=path.stem, where=f"grid file {path}")


def parse_grid(data: Any, name: str = "grid", where: str = "grid") -> Grid:
    """Check a grid's structure (not yet the configs it makes — see :func:`plan_ablation`)."""
    if not isinstance(data, dict) or "axes" not in data:
        raise ConfigError(f"{where} must be a mapping with axes: (and optionally base:, baseline:, description:)")
    for key in data:
        if key not in GRID_KEYS:
            close = difflib.get_close_matches(str(key), GRID_KEYS, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}{hint}; a grid has {', '.join(GRID_KEYS)}")
    base = data.get("base") or {}
    if not isinstance(base, dict):
        raise ConfigError(f"{where}: base: must be a config tree (data:, model:, finetune:, train:, ...)")
    axes = data["axes"]
    if not isinstance(axes, dict) or not axes:
        raise ConfigError(f"{where}: axes: must map config keys to lists of values, e.g. model.head: [linear, mlp_bn]")
    for key, values in axes.items():
        if key in FIXED_KEYS:
            raise ConfigError(f"{where}: {key} cannot be an axis ({FIXED_KEYS[key]})")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: axis {key} must be a non-empty list of values (got {values!r})")
        if len({repr(v) for v in values}) != len(values):
            raise ConfigError(f"{where}: axis {key} lists a value twice")
    baseline = data.get("baseline") or {}
    if not isinstance(baseline, dict):
        raise ConfigError(f"{where}: baseline: must map axis keys to values, e.g. model.head: linear")
    for key, value in baseline.items():
        if key not in axes:
            raise ConfigError(f"{where}: baseline key {key} is not an axis ({', '.join(axes)})")
        if value not in axes[key]:
            raise ConfigError(f"{where}: baseline {key}={value!r} is not one of the axis values {axes[key]}")
    description = data.get("description") or ""
    return Grid(
        name=name,
        base=base,
        axes={k: list(v) for k, v in axes.items()},
        baseline=dict(baseline),
        description=str(description).strip(),
    )


def short_names(keys: list[str]) -> dict[str, str]:
    """``finetune.strategy`` → ``strategy``, unless two axes end the same way."""
    last = [k.split(".")[-1] for k in keys]
    if len(set(last)) != len(last):
        return {k: k for k in keys}
    return dict(zip(keys, last))


def grid_cells(grid: Grid) -> list[Cell]:
    """Every combination of axis values, first axis slowest."""
    short = short_names(list(grid.axes))
    combos: list[dict[str, Any]] = [{}]
    for key, values in grid.axes.items():
        combos = [{**c, key: v} for c in combos for v in values]
    return [Cell(settings=c, slug="__".join(f"{short[k]}-{_slug(v)}" for k, v in c.items())) for c in combos]


def _slug(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9.+_-]+", "-", str(value)).strip("-") or "none"


def baseline_index(grid: Grid, cells: list[Cell]) -> int:
    """The cell matching ``grid.baseline``; axes it leaves out take their first value."""
    wanted = {k: grid.baseline.get(k, values[0]) for k, values in grid.axes.items()}
    return next(i for i, c in enumerate(cells) if c.settings == wanted)


def plan_ablation(grid: Grid, dataset: Path, seeds: int, out: Path, overrides: list[str] | None = None) -> Plan:
    """Validate every cell × seed config and any earlier runs in ``out``; nothing is trained or written.

    Config order: defaults → ``grid.base`` → ``overrides`` (``key=value``) → the cell's axis values.
    """
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1 (got {seeds})")
    try:
        base = load_config(None, overrides, base=grid.base)
    except ConfigError as exc:
        raise ConfigError(f"grid {grid.name}, base config: {exc}") from None
    out = Path(out).resolve()
    split_file = Path(base.data.split_file).resolve() if base.data.split_file else RunDir(out).split
    if base.data.split_file and not split_file.is_file():
        raise ConfigError(f"data.split_file not found: {base.data.split_file}")
    cells = grid_cells(grid)
    short = short_names(list(grid.axes))
    seed_values = [base.train.seed + k for k in range(seeds)]
    configs: dict[tuple[str, int], Config] = {}
    for cell in cells:
        try:
            cell_cfg = with_overrides(base, cell.settings)
        except ConfigError as exc:
            raise ConfigError(f"grid {grid.name}, cell {cell.label(short)}: {exc}") from None
        for seed in seed_values:
            configs[(cell.slug, seed)] = with_overrides(
                cell_cfg, {"train.seed": seed, "data.split_file": str(split_file)}
            )
    plan = Plan(
        grid, Path(dataset).resolve(), out, cells, seed_values, baseline_index(grid, cells), split_file, configs, short
    )
    _check_existing(plan)
    return plan


def _check_existing(plan: Plan) -> None:
    """Refuse a folder of other files, and runs of another dataset or config in ``out`` (a resume must be the same
    ablation)."""
    check_folder(plan.out, "ablate")
    manifest = plan.out / MANIFEST
    if manifest.is_file():
        earlier = read_json(manifest).get("dataset")
        if earlier and Path(earlier) != plan.dataset:
            raise ConfigError(f"{plan.out} holds an ablation of {earlier}, not {plan.dataset}; choose another --out")
    for cell in plan.cells:
        for seed in plan.seeds:
            saved = RunDir(plan.run_dir(cell, seed)).config
            if not saved.is_file():
                continue
            theirs = flatten(build_config(read_yaml(saved)).to_dict())
            ours = plan.configs[(cell.slug, seed)].flat()
            diff = next((k for k in ours if ours[k] != theirs.get(k)), None)
            if diff is not None:
                raise ConfigError(
                    f"{saved.parent} was trained with {diff}={theirs.get(diff)!r}, this ablation wants {ours[diff]!r}; "
                    "choose another --out (or delete that run)"
                )


def write_manifest(plan: Plan) -> Path:
    """``ablation.json``: enough to rebuild the table from ``out`` alone."""
    path = plan.out / MANIFEST
    atomic_write_json(
        path,
        {
            "grid": plan.grid.name,
            "description": plan.grid.description,
            "dataset": str(plan.dataset),
            "axes": plan.grid.axes,
            "base": plan.grid.base,
            "cells": [{"slug": c.slug, "settings": c.settings} for c in plan.cells],
            "baseline": plan.cells[plan.baseline].slug,
            "seeds": plan.seeds,
            "split_file": str(plan.split_file),
        },
    )
    return path


def ensure_split(plan: Plan) -> Path:
    """Draw the shared validation split once (``<out>/split.csv``); later runs and resumes reuse it."""
    if plan.split_file.is_file():
        return plan.split_file
    from imgclf.data.samples import load_training_set
    from imgclf.data.split import save_split, stratified_group_split

    cfg = plan.configs[(plan.cells[0].slug, plan.seeds[0])].data
    samples = load_training_set(plan.dataset, Path(cfg.blocklist) if cfg.blocklist else None)
    is_val = stratified_group_split(samples.labels, samples.groups, cfg.val_fraction, cfg.split_seed)
    save_split(
        plan.split_file, [samples.rel(p) for p in samples.paths], [samples.classes[i] for i in samples.labels], is_val
    )
    return plan.split_file


def run_state(run_dir: Path) -> str:
    """``done`` (summary.json), ``resume`` (checkpoints/last.pt), ``restart`` (a stub) or ``new``."""
    run = RunDir(Path(run_dir))
    if run.summary.is_file():
        return "done"
    if run.last.is_file():
        return "resume"
    return "restart" if run_dir.exists() else "new"


def run_ablation(
    plan: Plan,
    *,
    progress: Callable[[], Any] | None = None,
    callbacks: list[Any] | None = None,
    on_run: Callable[[Cell, int, str], None] | None = None,
    session: Callable[[Config, Path, str], ContextManager[list[Any]]] | None = None,
) -> dict[str, int]:
    """Train every unfinished cell × seed; return how many runs were ``done`` (skipped), ``new``, ``resume``, ``restart``.

    ``progress`` makes a fresh progress display per run; ``callbacks`` go to every run;
    ``on_run(cell, seed, state)`` is told before each run (``state`` as in :func:`run_state`);
    ``session(cfg, run_dir, name)`` wraps each run and yields more callbacks (e.g. MLflow tracking).
    """
    from imgclf.training.loop import TrainingInterrupted, fit

    plan.out.mkdir(parents=True, exist_ok=True)
    write_manifest(plan)
    ensure_split(plan)
    counts = {"done": 0, "new": 0, "resume": 0, "restart": 0}
    for cell in plan.cells:
        for seed in plan.seeds:
            run_dir = plan.run_dir(cell, seed)
            state = run_state(run_dir)
            counts[state] += 1
            if on_run is not None:
                on_run(cell, seed, state)
            if state == "done":
                continue
            if state == "restart":
                # died before its first checkpoint: nothing worth keeping
                shutil.rmtree(run_dir)
            cfg = plan.configs[(cell.slug, seed)]
            try:
                with (session or _no_session)(cfg, run_dir, f"{plan.grid.name}/{cell.slug}/seed{seed}") as extra:
                    shown = [progress()] if progress else []
                    fit(
                        cfg,
                        plan.dataset,
                        run_dir,
                        resume=state == "resume",
                        callbacks=[*shown, *(callbacks or []), *extra],
                    )
            except TrainingInterrupted:
                raise TrainingInterrupted(
                    f"ablation interrupted in cell {cell.label(plan.short_names)}, seed {seed}; finished runs are kept — "
                    "run the same imgclf ablate command again to resume"
                ) from None
            except ImgclfError as exc:
                raise ImgclfError(f"cell {cell.label(plan.short_names)}, seed {seed}: {exc}") from None
    return counts


@contextmanager
def _no_session(cfg: Config, run_dir: Path, name: str) -> Iterator[list[Any]]:
    yield []
