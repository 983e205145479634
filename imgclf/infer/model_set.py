"""What ``predict`` accepts: a run, a cross-validation folder or an ensemble folder.

Each is a *model set*: its member runs and their blending weights (summing to 1).

- a run directory (``config.yaml`` + ``checkpoints/best.safetensors``): itself, weight 1;
- a CV folder (``cv.json``, written by ``imgclf cv``): its fold runs, equal weights
  (the refit model, if any, is a run of its own: predict ``CV_DIR/refit`` to use it);
- an ensemble folder (``ensemble.json``, written by ``imgclf ensemble``): its members — runs or
  CV folders — with the weights chosen on their out-of-fold predictions;
- a ``train --budget`` run that trained several models: ``ensemble.json`` in the run lists the run itself
  (``"."``) and ``members/2``, ... with equal weights.

A CV folder's folds and a run's members must lie inside it (symlinks followed): a folder from someone else
cannot make ``predict`` blend a model from elsewhere. An ensemble folder names runs beside it by design
(``imgclf ensemble A B --out ENS`` writes ``../A``); what it names is what the user blended.

Example::

    models = resolve_model_set(Path("cv/lite0"))
    [(run.name, round(w, 3)) for run, w in models.members]   # [("fold_1", 0.2), ...]
    pred = predict_model_set(models, paths, root=test_dir.parent)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.errors import RunDirError
from imgclf.run.rundir import BlendDir, RunDir
from imgclf.run.specs import inside, read_cv_spec, read_ensemble_spec


@dataclass(frozen=True)
class ModelSet:
    kind: str  # "run", "cv" or "ensemble"
    root: Path
    members: tuple[tuple[Path, float], ...]  # (run directory, weight); weights sum to 1

    def classes(self) -> list[str]:
        """The members' common class list (they must all agree, in order)."""
        lists = [(run, RunDir(run).read_classes()) for run, _ in self.members]
        first_run, first = lists[0]
        for run, names in lists[1:]:
            if names != first:
                raise RunDirError(f"members of {self.root} disagree on classes: {first_run} and {run} differ")
        return first


def relative_member(path: Path, root: Path) -> str:
    """How ``root``'s manifest names a member: relative to ``root`` when possible, so folders can move together."""
    try:
        return os.path.relpath(Path(path).resolve(), Path(root).resolve())
    except ValueError:  # another drive on Windows
        return str(Path(path).resolve())


def resolve_model_set(path: Path) -> ModelSet:
    """The member runs and weights behind ``path`` (a run, a CV folder or an ensemble folder)."""
    root = Path(path)
    if not root.is_dir():
        raise RunDirError(f"run directory not found: {root}")
    if BlendDir(root).ensemble_spec.is_file():
        members = _ensemble_members(root, depth=0)
        total = sum(w for _, w in members)  # a hand-written ensemble.json need not sum to 1
        return ModelSet("ensemble", root, tuple((run, w / total) for run, w in members))
    if BlendDir(root).cv_spec.is_file():
        return ModelSet("cv", root, tuple(_cv_members(root)))
    if RunDir(root).config.is_file():
        return ModelSet("run", root, ((root, 1.0),))
    raise RunDirError(
        f"{root} is not a run directory, a CV folder ({BlendDir(root).cv_spec.name}) or an ensemble folder "
        f"({BlendDir(root).ensemble_spec.name})"
    )


def _cv_members(root: Path) -> list[tuple[Path, float]]:
    folds = read_cv_spec(BlendDir(root)).fold_dirs
    unfinished = [f.name for f in folds if not RunDir(f).is_finished()]
    if unfinished:
        raise RunDirError(
            f"CV folder {root} is not finished ({', '.join(unfinished)} not trained); run imgclf cv again to finish it"
        )
    return [(f, 1.0 / len(folds)) for f in folds]


def _ensemble_members(root: Path, depth: int) -> list[tuple[Path, float]]:
    if depth > 8:
        raise RunDirError(f"ensemble {root} nests too deeply (a member refers back to itself?)")
    spec = BlendDir(root).ensemble_spec
    in_run = RunDir(root).config.is_file()  # train --budget's members: the run itself and members/N, all inside it
    members: list[tuple[Path, float]] = []
    for name, weight in read_ensemble_spec(spec):
        member = inside(root, name, spec) if in_run else _beside(root, name, spec)
        if weight <= 0:
            continue
        if member.resolve() == root.resolve():  # "." in train --budget's ensemble: the run the manifest sits in
            if not in_run:
                raise RunDirError(f"{spec} lists the folder itself, which is not a run (no config.yaml)")
            inner: tuple[tuple[Path, float], ...] = ((root, 1.0),)
        elif BlendDir(member).ensemble_spec.is_file():
            inner = tuple(_ensemble_members(member, depth + 1))
        else:
            inner = resolve_model_set(member).members
        members.extend((run, weight * w) for run, w in inner)
    return members


def _beside(root: Path, name: str, spec: Path) -> Path:
    """An ensemble folder's member: a path relative to the folder (``imgclf ensemble`` writes those)."""
    if not name.strip() or "\0" in name:
        raise RunDirError(f"{spec} names a member that is not a path: {name[:60]!r}")
    member = Path(name)
    return member if member.is_absolute() else root / member


def predict_model_set(models: ModelSet, paths: list[Path], **kwargs: Any):
    """Weighted mean of the members' (calibrated, optionally TTA) probabilities for ``paths``.

    ``kwargs`` go to :func:`imgclf.infer.predict.predict_paths` (root, batch_size, device, tta, ...).
    Members are loaded one at a time, so a 5-fold CV needs the memory of one model.
    """
    from imgclf.infer.predict import predict_paths
    from imgclf.run.load import load_run

    device = kwargs.get("device", "auto")
    if models.kind == "run":
        return predict_paths(load_run(models.root, device), paths, **kwargs)
    models.classes()  # disagreeing members fail before any model is loaded
    blended, kinds = None, set()
    for run_dir, weight in models.members:
        loaded = load_run(run_dir, device)
        kinds.add(loaded.task.kind)
        pred = predict_paths(loaded, paths, **kwargs)
        if blended is None:
            blended = pred
            blended.probs = weight * pred.probs
            blended.logits = None  # a blend has no single set of logits
            continue
        if pred.paths != blended.paths:
            raise RunDirError(
                f"member {run_dir} could not read the same images as the others (e.g. {(set(blended.paths) ^ set(pred.paths)).pop()})"
            )
        blended.probs = blended.probs + weight * pred.probs
        blended.passes = blended.passes + pred.passes
        blended.seconds += pred.seconds
    if len(kinds) > 1:
        raise RunDirError(f"the members of {models.root} were trained for different tasks: {', '.join(sorted(kinds))}")
    if kinds == {"multiclass"}:
        blended.probs = blended.probs / np.clip(blended.probs.sum(1, keepdims=True), 1e-12, None)
    else:  # label probabilities or values: the weighted mean
        blended.probs = blended.probs / max(sum(w for _, w in models.members), 1e-12)
    return blended
