"""``prepare``: source → a clean, documented imgclf dataset folder. The one function ``imgclf prepare`` calls.

Output (``out``)::

    train/<class>/<files>        hard links (or copies) of the source files
    test/<files>                 when the source has a test set
    sample_submission.csv        when the source has one
    manifest.csv                 one row per file (see imgclf.data.manifest)
    blocklist.proposed.csv       what the policy dropped, for review (see imgclf.data.blocklist)
    cleaning_report.md / .html   counts per class, every flagged file, duplicate groups
    .imgclf-work/                extracted archives and the per-file analysis cache

Re-running on the same input does no work twice: archives are extracted once per version, files are
linked only when changed, and each file is analysed once per content hash.

Example::

    result = prepare(Path("downloads/cars"), Path("data/cars"), PrepareOptions(workers=4))
    result.n_dropped, result.flag_counts
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from imgclf.data.blocklist import write_proposed
from imgclf.data.cache import CacheStats, ResizeCache, cache_short_side, default_workers, progress_bar
from imgclf.data.clean import CleanOptions, FileAnalysis, analyze_file, assess, sha256_file
from imgclf.data.ingest import ExtractLimits, PlannedFile, SourcePlan, discover
from imgclf.data.manifest import read_manifest, write_manifest
from imgclf.data.outdir import check_targets, claim_out_dir, contained, mark_preparing
from imgclf.errors import DataError
from imgclf.io import atomic_write_text
from imgclf.data.cleaning_report import write_cleaning_report

WORK_DIR = ".imgclf-work"
CACHE_DIR = ".imgclf-cache"
_ANALYSIS_FILE = "analysis.json"
_ANALYSIS_VERSION = 1


class PrepareOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    clean: CleanOptions = CleanOptions()
    max_archive_bytes: int | None = Field(None, ge=1, description="Cap on the bytes extracted from all archives; None = ratio and free disk only.")
    max_archive_files: int = Field(2_000_000, ge=1, description="Cap on the number of files extracted from all archives.")
    max_archive_ratio: float = Field(20.0, gt=0, description="Cap on bytes extracted per byte of the source's archives.")
    allow_outside: bool = Field(False, description="Let CSV rows and file links point outside the source.")
    workers: int | None = Field(None, ge=1, description="Processes for analysis and caching; None = CPU count.")
    cache_image_size: int | None = Field(None, ge=16, description="Also fill the resize cache for this training size.")
    cache_dir: Path | None = Field(None, description="Resize cache location; None = <out>/.imgclf-cache.")
    link: bool = Field(True, description="Hard-link source files into the dataset when possible instead of copying.")
    progress: bool = False


@dataclass
class PrepareResult:
    out: Path
    n_train: int
    n_test: int
    n_classes: int
    n_kept_train: int
    n_dropped: int
    flag_counts: dict[str, int]
    analysed: int  # files decoded this run (0 on an unchanged re-run)
    copied: int  # files linked/copied into ``out`` this run
    removed: int  # stale files from a previous run removed
    ignored: int  # non-image files skipped in the source
    seconds: float
    cache: CacheStats | None = None
    files: dict[str, Path] = field(default_factory=dict)  # manifest, blocklist, report_md, report_html

    @property
    def images_per_second(self) -> float:
        return (self.n_train + self.n_test) / self.seconds if self.seconds > 0 else 0.0


def prepare(src: Path, out: Path, options: PrepareOptions = PrepareOptions()) -> PrepareResult:
    """Prepare ``src`` into ``out``: a new or empty folder, or an earlier imgclf dataset (see imgclf.data.outdir).

    A failure removes a new ``out`` again, and marks an existing one incomplete.
    """
    with claim_out_dir(Path(out).resolve()):
        return _prepare(src, out, options)


def _prepare(src: Path, out: Path, options: PrepareOptions) -> PrepareResult:
    start = time.perf_counter()
    src, out = Path(src).resolve(), Path(out).resolve()
    if out == src or src in out.parents:
        raise DataError(f"--out {out} must not be inside the source {src}; choose a separate folder")
    work = out / WORK_DIR
    limits = ExtractLimits(options.max_archive_bytes, options.max_archive_files, options.max_archive_ratio)
    plan = discover(src, work, limits, allow_outside=options.allow_outside)
    check_targets(out, [f.rel for f in plan.files])
    mark_preparing(out)
    copied, removed = _materialise(plan, out, options.link)

    workers = options.workers or default_workers()
    facts, analysed = _analyse(out, plan.files, options.clean.max_pixels, workers, options.progress)
    records = [
        {"path": f.rel, "label": f.label, "split": f.split, "source": str(f.src), **facts[f.rel].to_dict()}
        for f in plan.files
    ]
    table = assess(records, options.clean)
    files = {
        "manifest": write_manifest(out, table),
        "blocklist": write_proposed(out, table),
    }
    files["report_md"], files["report_html"] = write_cleaning_report(out, table)

    cache_stats = None
    if options.cache_image_size:
        cache = ResizeCache(options.cache_dir or out / CACHE_DIR, cache_short_side(options.cache_image_size))
        keep = table[table["keep"]]
        cache_stats = cache.build([out / p for p in keep["path"]], workers=workers, progress=options.progress)

    train = table[table["split"] == "train"]
    flag_counts = Counter(f for flags in table["flags"] for f in flags.split(";") if f)
    return PrepareResult(
        out=out,
        n_train=len(train),
        n_test=int((table["split"] == "test").sum()),
        n_classes=train["label"].nunique(),
        n_kept_train=int(train["keep"].sum()),
        n_dropped=int((~table["keep"]).sum()),
        flag_counts=dict(sorted(flag_counts.items())),
        analysed=analysed,
        copied=copied,
        removed=removed,
        ignored=len(plan.ignored),
        seconds=time.perf_counter() - start,
        cache=cache_stats,
        files=files,
    )


# --------------------------------------------------------------------------- files into place


def _same_file(src: Path, dest: Path) -> bool:
    if not dest.is_file():
        return False
    a, b = src.stat(), dest.stat()
    return (a.st_ino == b.st_ino and a.st_dev == b.st_dev) or (a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns)


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
    previous = read_manifest(out)
    if previous is not None:  # only ever delete what an earlier prepare put there
        for rel in previous["path"]:
            target = contained(out, rel)  # a manifest row such as ../../x.txt is never acted on
            if rel not in wanted and rel.startswith(("train/", "test/")) and target is not None and target.is_file():
                target.unlink()
                removed += 1
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


def _analyse(out: Path, files: list[PlannedFile], max_pixels: int, workers: int, progress: bool) -> tuple[dict[str, FileAnalysis], int]:
    """Facts for every planned file; only files whose (size, mtime) and content hash are new get decoded."""
    state_path = out / WORK_DIR / _ANALYSIS_FILE
    state = _load_state(state_path, max_pixels)
    results: dict[str, FileAnalysis] = {}
    todo: list[str] = []
    for f in files:
        st = (out / f.rel).stat()
        cached = state["stat"].get(f.rel)
        sha = cached[2] if cached and cached[:2] == [st.st_size, st.st_mtime_ns] else sha256_file(out / f.rel)
        if sha in state["facts"]:  # same bytes seen before (maybe under another name): no decode
            results[f.rel] = FileAnalysis.from_dict(state["facts"][sha])
            state["stat"][f.rel] = [st.st_size, st.st_mtime_ns, sha]
        else:
            todo.append(f.rel)

    with progress_bar(progress, len(todo), "analysing") as advance:
        if workers > 1 and len(todo) > 16:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                paths = [out / r for r in todo]
                for rel, facts in zip(todo, pool.map(analyze_file, paths, [max_pixels] * len(todo), chunksize=16)):
                    results[rel] = facts
                    advance(1)
        else:
            for rel in todo:
                results[rel] = analyze_file(out / rel, max_pixels)
                advance(1)

    for rel in todo:
        st = (out / rel).stat()
        state["stat"][rel] = [st.st_size, st.st_mtime_ns, results[rel].sha256]
        state["facts"][results[rel].sha256] = results[rel].to_dict()
    live = {f.rel for f in files}
    state["stat"] = {k: v for k, v in state["stat"].items() if k in live}
    live_sha = {v[2] for v in state["stat"].values()}
    state["facts"] = {k: v for k, v in state["facts"].items() if k in live_sha}
    atomic_write_text(state_path, json.dumps(state))
    return results, len(todo)
