"""``prepare``: source → a clean, documented imgclf dataset folder. The one function ``imgclf prepare`` calls.

Output (``out``)::

    train/<class>/<files>        hard links (or copies) of the source files
    train/<files>, train.csv     instead, for label sets or values: the files flat, their targets in one CSV
    targets.json                 with them: the task (see imgclf.data.target_file)
    holdout/train/<class>/       with ``holdout``: a labelled share kept out of train/ (see imgclf.data.holdout)
    test/<files>                 when the source has a test set
    sample_submission.csv        when the source has one
    manifest.csv                 one row per file (see imgclf.data.manifest)
    blocklist.proposed.csv       proposals (label conflicts, leaks) and drops, for review (see imgclf.data.blocklist)
    cleaning_report.md / .html   written by the ``write_report`` the caller passes (imgclf.report.cleaning)
    .imgclf-work/                extracted archives and the per-file analysis cache

Files are analysed where they are (the source folder, or archives extracted into .imgclf-work), and
the verdicts are checked against ``max_drop`` *before* anything is placed in ``out``: a policy that
would remove more than that fraction of a class stops with a DataError and writes nothing.

Re-running on the same input does no work twice: archives are extracted once per version, files are
linked only when changed, and each file is analysed once per content hash.

Example::

    result = prepare(Path("downloads/cars"), Path("data/cars"), PrepareOptions(workers=4),
                     progress=lambda stage, done, total: None, write_report=write_cleaning_report)
    result.n_dropped, result.flag_counts
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from imgclf.data.blocklist import write_proposed
from imgclf.data.cache import CacheStats, ResizeCache, cache_short_side, default_workers
from imgclf.data.clean import CleanOptions, FileAnalysis, analyze_file, sha256_file
from imgclf.data.holdout import HOLDOUT_DIR, HOLDOUT_SPLIT, hold_out
from imgclf.data.ingest import ExtractLimits, PlannedFile, SourcePlan, discover
from imgclf.data.manifest import read_manifest, write_manifest
from imgclf.data.outdir import check_targets, claim_out_dir, contained, mark_preparing
from imgclf.data.target_file import remove_target_file, write_target_file
from imgclf.data.verdicts import assess, check_max_drop
from imgclf.data.verify import thumbnail
from imgclf.errors import DataError
from imgclf.io import atomic_write_text

WORK_DIR = ".imgclf-work"
CACHE_DIR = ".imgclf-cache"
_ANALYSIS_FILE = "analysis.json"
_ANALYSIS_VERSION = 3  # 2: crop hashes for near-copy candidates; 3: crops down to 0.8 (10 % a side)

#: ``progress(stage, done, total)``: stage is "analysing", "checking near copies" or "caching".
Progress = Callable[[str, int, int], None]
ReportWriter = Callable[[Path, pd.DataFrame], tuple[Path, Path]]


class PrepareOptions(BaseModel):
    # inf or nan would switch a safety cap off without saying so (--max-archive-ratio inf): refused.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    clean: CleanOptions = CleanOptions()
    max_archive_bytes: int | None = Field(
        None, ge=1, description="Cap on the bytes extracted from all archives; None = ratio and free disk only."
    )
    max_archive_files: int = Field(
        2_000_000, ge=1, description="Cap on the number of files extracted from all archives."
    )
    max_archive_ratio: float = Field(
        20.0, gt=0, description="Cap on bytes extracted per byte of the source's archives."
    )
    allow_outside: bool = Field(False, description="Let CSV rows and file links point outside the source.")
    workers: int | None = Field(None, ge=1, description="Processes for analysis and caching; None = CPU count.")
    cache_image_size: int | None = Field(None, ge=16, description="Also fill the resize cache for this training size.")
    cache_dir: Path | None = Field(None, description="Resize cache location; None = <out>/.imgclf-cache.")
    link: bool = Field(True, description="Hard-link source files into the dataset when possible instead of copying.")
    max_drop: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="Largest fraction of a class's readable training images the policy may remove.",
    )
    apply_proposed: bool = Field(
        False, description="Drop what the policy only proposes (label conflicts, leaked train copies)."
    )
    holdout: float = Field(
        0.0, ge=0.0, lt=1.0, description="Share of the kept training images set aside in holdout/ (0 = none)."
    )
    holdout_seed: int = Field(0, description="Seed of the holdout's draw.")
    task: Literal["auto", "multiclass", "multilabel", "regression"] = Field(
        "auto", description="How to read a labels CSV (auto: found from its cells, as `imgclf train` does)."
    )
    target_column: str | None = Field(None, description="The labels CSV's target column, when it has several.")


@dataclass
class PrepareResult:
    out: Path
    n_train: int
    n_test: int
    n_classes: int
    n_kept_train: int
    n_dropped: int
    n_proposed: int  # kept, listed in blocklist.proposed.csv for review
    flag_counts: dict[str, int]
    analysed: int  # files decoded this run (0 on an unchanged re-run)
    copied: int  # files linked/copied into ``out`` this run
    removed: int  # stale files from a previous run removed
    ignored: int  # non-image files skipped in the source
    seconds: float
    cache: CacheStats | None = None
    files: dict[str, Path] = field(default_factory=dict)  # manifest, blocklist, report_md, report_html
    table: pd.DataFrame | None = None  # the manifest table, with ``attrs["duplicates"]``
    n_holdout: int = 0  # training images set aside in holdout/
    task: str = "multiclass"  # or "multilabel" | "regression": train/ is flat, the targets in train.csv

    @property
    def images_per_second(self) -> float:
        return (self.n_train + self.n_test) / self.seconds if self.seconds > 0 else 0.0


def prepare(
    src: Path,
    out: Path,
    options: PrepareOptions = PrepareOptions(),
    progress: Progress | None = None,
    write_report: ReportWriter | None = None,
) -> PrepareResult:
    """Prepare ``src`` into ``out`` (a new or empty folder, or an earlier imgclf dataset: see
    imgclf.data.outdir): analyse, assess, guard, then write the dataset folder (see the module docstring).

    A failure removes a new ``out`` again, and marks an existing one incomplete.
    """
    with claim_out_dir(Path(out).resolve()):
        return _prepare(src, out, options, progress, write_report)


def _prepare(
    src: Path, out: Path, options: PrepareOptions, progress: Progress | None, write_report: ReportWriter | None
) -> PrepareResult:
    start = time.perf_counter()
    src, out = Path(src).resolve(), Path(out).resolve()
    if out == src or src in out.parents:
        raise DataError(f"--out {out} must not be inside the source {src}; choose a separate folder")
    work = out / WORK_DIR
    limits = ExtractLimits(options.max_archive_bytes, options.max_archive_files, options.max_archive_ratio)
    plan = discover(src, work, limits, options.allow_outside, options.task, options.target_column)
    if plan.task is not None and options.holdout > 0:
        raise DataError(
            f"--holdout sets a share of each class aside; {src} holds {plan.task.kind} targets: "
            "keep a share out with `imgclf train --set data.val_fraction=...` instead"
        )
    check_targets(out, [f.rel for f in plan.files])
    clean = options.clean.with_proposals_applied() if options.apply_proposed else options.clean
    workers = options.workers or default_workers()

    facts, state, analysed = _analyse(work, plan.files, clean.max_pixels, workers, _stage(progress, "analysing"))
    records = [
        {
            "path": f.rel,
            "label": f.label,
            "split": f.split,
            "source": str(f.src),
            "file": str(f.src),
            **facts[f.rel].to_dict(),
        }
        for f in plan.files
    ]
    loader = partial(_thumbnails, workers=workers)
    table = assess(records, clean, load_many=loader, progress=_stage(progress, "checking near copies"))
    if plan.task is not None:
        table.attrs["task"] = plan.task.kind
    check_max_drop(table, options.max_drop, clean.policy, by_class=plan.task is None)  # before anything is written
    if options.holdout > 0:
        table, plan = hold_out(table, plan, options.holdout, options.holdout_seed)
        check_targets(out, [f.rel for f in plan.train])

    mark_preparing(out)
    copied, removed = _materialise(plan, out, options.link)
    atomic_write_text(work / _ANALYSIS_FILE, json.dumps(state))
    files = {"manifest": write_manifest(out, table), "blocklist": write_proposed(out, table)}
    if plan.task is not None:
        files["targets"] = write_target_file(out, plan.task, plan.targets)
    else:
        remove_target_file(out)
    if write_report is not None:
        files["report_md"], files["report_html"] = write_report(out, table)

    cache_stats = None
    if options.cache_image_size:
        cache = ResizeCache(options.cache_dir or out / CACHE_DIR, cache_short_side(options.cache_image_size))
        cache_stats = cache.build(
            [out / p for p in table.loc[table["keep"], "path"]], workers=workers, progress=_stage(progress, "caching")
        )

    return _result(out, table, plan, (analysed, copied, removed), time.perf_counter() - start, cache_stats, files)


def _result(
    out: Path,
    table: pd.DataFrame,
    plan: SourcePlan,
    counts: tuple[int, int, int],
    seconds: float,
    cache: Any,
    files: dict[str, Any],
) -> PrepareResult:
    """What ``prepare`` did, from its table; ``counts``: images analysed, copied and removed."""
    analysed, copied, removed = counts
    train = table[table["split"] == "train"]
    flag_counts = Counter(f for flags in table["flags"] for f in flags.split(";") if f)
    return PrepareResult(
        out=out,
        n_train=len(train),
        n_test=int((table["split"] == "test").sum()),
        n_classes=train["label"].nunique() if plan.task is None else len(plan.task.names),
        n_kept_train=int(train["keep"].sum()),
        n_dropped=int((~table["keep"]).sum()),
        n_proposed=int(table["proposed"].sum()),
        flag_counts=dict(sorted(flag_counts.items())),
        analysed=analysed,
        copied=copied,
        removed=removed,
        ignored=len(plan.ignored),
        seconds=seconds,
        cache=cache,
        files=files,
        table=table,
        n_holdout=int((table["split"] == HOLDOUT_SPLIT).sum()),
        task="multiclass" if plan.task is None else plan.task.kind,
    )


def _stage(progress: Progress | None, name: str) -> Callable[[int, int], None] | None:
    return None if progress is None else partial(progress, name)


def _thumbnails(paths: list[Path], workers: int) -> list[np.ndarray]:
    """Pixel-check thumbnails for near-copy candidates, decoded across processes when there are many."""
    if workers <= 1 or len(paths) < 64:
        return [thumbnail(p) for p in paths]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(thumbnail, paths, chunksize=32))


# --------------------------------------------------------------------------- files into place


def _same_file(src: Path, dest: Path) -> bool:
    if not dest.is_file():
        return False
    a, b = src.stat(), dest.stat()
    return (a.st_ino == b.st_ino and a.st_dev == b.st_dev) or (
        a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns
    )


def _place(src: Path, dest: Path, link: bool) -> bool:
    """Link or copy ``src`` to ``dest`` unless it is already there; True when something was written."""
    if _same_file(src, dest):
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    if link:
        try:
            os.link(src, dest)
            return True
        except OSError:  # another filesystem, or links not allowed: fall back to a copy
            pass
    shutil.copy2(src, dest)
    return True


def _materialise(plan: SourcePlan, out: Path, link: bool) -> tuple[int, int]:
    wanted = {f.rel for f in plan.files}
    removed = 0
    emptied: set[Path] = set()
    previous = read_manifest(out)
    if previous is not None:  # only ever delete what an earlier prepare put there
        for rel in previous["path"]:
            target = contained(out, rel)  # a manifest row such as ../../x.txt is never acted on
            if (
                rel not in wanted
                and rel.startswith(("train/", "test/", f"{HOLDOUT_DIR}/"))
                and target is not None
                and target.is_file()
            ):
                target.unlink()
                emptied.add(target.parent)
                removed += 1
    for folder in sorted(emptied, key=lambda p: len(p.parts), reverse=True):  # a class folder that lost every file
        while folder != out and folder.is_relative_to(out) and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
    copied = sum(_place(f.src, out / f.rel, link) for f in plan.files)
    if plan.sample_submission is not None:
        copied += _place(plan.sample_submission, out / "sample_submission.csv", link=False)
    return copied, removed


# --------------------------------------------------------------------------- analysis, cached by content


def _load_state(path: Path, max_pixels: int) -> dict:
    try:
        state = json.loads(path.read_text())
        if state.get("version") == _ANALYSIS_VERSION and state.get("max_pixels") == max_pixels:
            return state
    except (OSError, ValueError):
        pass
    return {"version": _ANALYSIS_VERSION, "max_pixels": max_pixels, "stat": {}, "facts": {}}


def _analyse(
    work: Path, files: list[PlannedFile], max_pixels: int, workers: int, progress: Callable[[int, int], None] | None
) -> tuple[dict[str, FileAnalysis], dict, int]:
    """Facts for every planned file (read at its source) and the cache state to save; only new content is decoded.

    Nothing is written here: the caller saves the state once the guard has passed.
    """
    state = _load_state(work / _ANALYSIS_FILE, max_pixels)
    results: dict[str, FileAnalysis] = {}
    todo: list[PlannedFile] = []
    for f in files:
        st = f.src.stat()
        cached = state["stat"].get(f.rel)
        sha = cached[2] if cached and cached[:2] == [st.st_size, st.st_mtime_ns] else sha256_file(f.src)
        if sha in state["facts"]:  # same bytes seen before (maybe under another name): no decode
            results[f.rel] = FileAnalysis.from_dict(state["facts"][sha])
            state["stat"][f.rel] = [st.st_size, st.st_mtime_ns, sha]
        else:
            todo.append(f)

    if workers > 1 and len(todo) > 16:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            found = pool.map(analyze_file, [f.src for f in todo], [max_pixels] * len(todo), chunksize=16)
            _collect(todo, found, results, progress)
    else:
        _collect(todo, (analyze_file(f.src, max_pixels) for f in todo), results, progress)

    for f in todo:
        st = f.src.stat()
        state["stat"][f.rel] = [st.st_size, st.st_mtime_ns, results[f.rel].sha256]
        state["facts"][results[f.rel].sha256] = results[f.rel].to_dict()
    live = {f.rel for f in files}
    state["stat"] = {k: v for k, v in state["stat"].items() if k in live}
    live_sha = {v[2] for v in state["stat"].values()}
    state["facts"] = {k: v for k, v in state["facts"].items() if k in live_sha}
    return results, state, len(todo)


def _collect(todo: list[PlannedFile], found, results: dict[str, FileAnalysis], progress) -> None:
    for n, (f, facts) in enumerate(zip(todo, found), start=1):
        results[f.rel] = facts
        if progress:
            progress(n, len(todo))
