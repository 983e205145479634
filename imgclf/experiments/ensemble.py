"""Blend runs and CV folders into one ensemble, weighted on their out-of-fold predictions.

``blend_weights`` is a pure function: non-negative weights summing to 1 that minimise the
log-loss of the weighted mean of the members' probabilities (scipy SLSQP from equal weights;
the result is never worse than equal weights). ``build_ensemble`` checks that the members agree
on classes and were scored on the same images, then writes ``ENS_DIR``:
``ensemble.json`` (members, weights; what ``predict ENS_DIR`` reads), ``classes.json``,
``oof.csv`` (the blended OOF predictions) and ``summary.json`` (each member's OOF scores beside
the ensemble's, and the equal-weight blend's for reference).

Example::

    weights = blend_weights([p_a, p_b], labels)                  # e.g. array([0.7, 0.3])
    summary = build_ensemble([Path("cv/lite0"), Path("cv/lite1")], Path("ens"))
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.optimize import minimize

from imgclf.errors import ImgclfError
from imgclf.eval.metrics import Metric, get_metric, metric_of
from imgclf.experiments.oof import Oof, read_oof, scores, write_oof
from imgclf.infer.model_set import relative_member, resolve_model_set
from imgclf.io import atomic_write_json
from imgclf.run.claim import claim_folder
from imgclf.run.rundir import BlendDir, RunDir
from imgclf.task import Task

log = logging.getLogger("imgclf")


class EnsembleError(ImgclfError):
    """Members that cannot be blended (different classes or different OOF images)."""


def blend(probs: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    return np.tensordot(np.asarray(weights, dtype=float), np.stack([np.asarray(p, dtype=float) for p in probs]), axes=1)


def blend_log_loss(probs: Sequence[np.ndarray], labels: np.ndarray, weights: np.ndarray) -> float:
    """Mean negative log of the blended probability of the true class."""
    picked = np.stack([np.asarray(p, dtype=float)[np.arange(len(labels)), labels] for p in probs])  # (members, n)
    return float(-np.mean(np.log(np.clip(np.asarray(weights) @ picked, 1e-15, None))))


def target_weights(outputs: Sequence[np.ndarray], targets: np.ndarray, task: Task, method: str) -> np.ndarray:
    """Blend weights (>= 0, sum 1) for label sets and values: ``optimize`` minimises the blend's mean binary
    cross-entropy (label probabilities) or mean squared error (values), both convex in the weights, with SLSQP from
    equal weights; a solve that does not beat equal weights keeps them."""
    m = len(outputs)
    equal = np.full(m, 1.0 / m)
    if method == "equal" or m == 1:
        return equal
    stack, y = np.stack([np.asarray(o, dtype=float) for o in outputs]), np.asarray(targets, dtype=float)

    def loss(w: np.ndarray) -> float:
        blended = np.tensordot(w, stack, axes=1)
        if task.kind == "regression":
            return float(np.mean((blended - y) ** 2))
        p = np.clip(blended, 1e-7, 1 - 1e-7)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    result = minimize(
        loss,
        equal,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * m,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
        options={"ftol": 1e-10, "maxiter": 500},
    )
    weights = np.clip(result.x, 0.0, None)
    weights = weights / weights.sum() if weights.sum() > 0 else equal
    return weights if loss(weights) <= loss(equal) else equal


def blend_weights(probs: Sequence[np.ndarray], labels: np.ndarray, method: str = "optimize") -> np.ndarray:
    """Weights (>= 0, sum 1) for the members' probability matrices.

    ``method="equal"`` gives 1/M each; ``"optimize"`` minimises the blend's log-loss with SLSQP
    (the problem is convex in the weights, so equal weights are a safe start).

    >>> p = np.array([[0.9, 0.1], [0.2, 0.8]]); q = np.array([[0.5, 0.5], [0.5, 0.5]])
    >>> blend_weights([p, q], np.array([0, 1])).round(3).tolist()
    [1.0, 0.0]
    """
    m = len(probs)
    if m == 0:
        raise ValueError("blend_weights needs at least one member")
    equal = np.full(m, 1.0 / m)
    if method == "equal" or m == 1:
        return equal
    if method != "optimize":
        raise ValueError(f"unknown blending method {method!r}; use optimize or equal")
    labels = np.asarray(labels, dtype=int)
    picked = np.stack([np.asarray(p, dtype=float)[np.arange(len(labels)), labels] for p in probs])

    def loss(w: np.ndarray) -> float:
        return float(-np.mean(np.log(np.clip(w @ picked, 1e-15, None))))

    def grad(w: np.ndarray) -> np.ndarray:
        return -(picked / np.clip(w @ picked, 1e-15, None)).mean(axis=1)

    result = minimize(
        loss,
        equal,
        jac=grad,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * m,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}],
        options={"ftol": 1e-10, "maxiter": 500},
    )
    weights = np.clip(result.x, 0.0, None)
    weights = weights / weights.sum() if weights.sum() > 0 else equal
    if loss(weights) > loss(equal):  # a failed solve must never make the blend worse than the plain mean
        log.warning(
            "blend weight optimisation did not improve on equal weights (%s); using equal weights", result.message
        )
        return equal
    return weights


def aligned_oofs(members: Sequence[Path]) -> list[Oof]:
    """The members' OOF predictions, rows in one order; EnsembleError if classes or images differ."""
    oofs = [read_oof(m).sorted() for m in members]
    for member, oof in zip(members, oofs):
        if not oof.paths:
            raise EnsembleError(
                f"{member} has no out-of-fold predictions (a refit run has no validation images); use its CV folder instead"
            )
    first = oofs[0]
    for member, oof in zip(members[1:], oofs[1:]):
        if oof.classes != first.classes:
            raise EnsembleError(
                f"members disagree on classes: {members[0]} has {len(first.classes)} ({', '.join(first.classes[:4])}…), "
                f"{member} has {len(oof.classes)} ({', '.join(oof.classes[:4])}…)"
            )
        if oof.paths != first.paths:
            only = sorted(set(first.paths) ^ set(oof.paths))
            raise EnsembleError(
                f"members have OOF predictions on different images: {members[0]} ({len(first.paths)}) vs {member} "
                f"({len(oof.paths)}), e.g. {only[0] if only else 'labels differ'}; blend runs or CV folders of the same dataset"
            )
        if not np.array_equal(oof.labels, first.labels):
            raise EnsembleError(f"members {members[0]} and {member} give different labels to the same images")
    return oofs


def member_metric(member: Path, task: str = "multiclass") -> Metric:
    """The ``train.metric`` a run, CV folder (``cv_config.yaml``) or ensemble folder (its summary) was scored with.
    For label sets and values, the metric the member's summary names (its config may leave it to the task)."""
    from imgclf.config import build_config, read_yaml

    member = Path(member)
    summary = BlendDir(member).summary
    saved = BlendDir(member).read_summary() if summary.is_file() else {}
    if task != "multiclass" and saved.get("metric"):
        return get_metric(saved["metric"], saved.get("metric_k", 5), task=task)
    for config in (BlendDir(member).cv_config, RunDir(member).config):
        if config.is_file():
            return metric_of(build_config(read_yaml(config)).train, task)
    return get_metric(saved.get("metric", "accuracy"), saved.get("metric_k", 5), task=task)


def choose_weights(
    probs: Sequence[np.ndarray],
    labels: np.ndarray,
    method: str,
    metric: Metric,
    quiet: bool = False,
    task: Task | None = None,
) -> tuple[np.ndarray, str]:
    """The blend weights and how they were chosen. ``optimize`` minimises OOF log-loss (smooth, convex: a
    stand-in that every metric rewards; for label sets the mean binary cross-entropy, for values the squared
    error: :func:`target_weights`); for another metric the equal-weight blend is kept when it scores better on
    that metric."""
    if task is not None and not task.multiclass:
        weights = target_weights(probs, labels, task, method)
        proxy = "squared-error optimal" if task.kind == "regression" else "cross-entropy optimal"
    else:
        weights, proxy = blend_weights(probs, labels, method), "log-loss optimal"
    if method != "optimize" or metric.name == "log_loss" or len(probs) == 1:
        return weights, "equal" if method == "equal" or len(probs) == 1 else proxy
    equal = blend_weights(probs, labels, "equal")
    if metric.better(metric.score(labels, blend(probs, equal)), metric.score(labels, blend(probs, weights))):
        if not quiet:
            log.info(
                "equal weights score better on %s than the log-loss-optimal ones; using equal weights", metric.label
            )
        return equal, f"equal (better {metric.name} than {proxy})"
    return weights, proxy


#: Parts of the OOF images for the nested estimate when the members share no CV folds.
NESTED_PARTS = 5
NESTED_NOTE = (
    "ensemble: weights fitted and scored on the same OOF predictions (optimistic); "
    "ensemble_nested: each fold scored with weights fitted on the other folds (honest)"
)


def nested_blend(oofs: Sequence[Oof], method: str, metric: Metric) -> np.ndarray | None:
    """The blend's OOF probabilities with each fold's weights fitted on the other folds only, so the score on them
    is not measured on the predictions the weights were fitted to. Folds: the members' CV folds when they share
    them, else :data:`NESTED_PARTS` seeded parts. None when there are too few images to hold one out."""
    labels, probs = oofs[0].labels, [o.probs for o in oofs]
    folds = oofs[0].folds
    if folds is None or any(o.folds is None or not np.array_equal(o.folds, folds) for o in oofs):
        folds = np.random.default_rng(0).permutation(len(labels)) % NESTED_PARTS
    if len(labels) < 2 or len(np.unique(folds)) < 2:
        return None
    nested = np.zeros_like(probs[0])
    for fold in np.unique(folds):
        held = folds == fold
        weights, _ = choose_weights(
            [p[~held] for p in probs], labels[~held], method, metric, quiet=True, task=oofs[0].task
        )
        nested[held] = blend([p[held] for p in probs], weights)
    return nested


def build_ensemble(
    members: Sequence[Path], out: Path, *, method: str = "optimize", metric: Metric | str | None = None
) -> dict[str, Any]:
    """Weight ``members`` (runs, CV folders or ensembles) on their OOF predictions and write ``out``.

    ``out`` is a new or empty folder, or an earlier ensemble (:func:`imgclf.run.claim.claim_folder`), never a member
    or a folder inside one. ``metric``: what the members and the blend are scored with (default: the first member's
    ``train.metric``)."""
    out = Path(out)
    for member in members:
        if out.resolve().is_relative_to(Path(member).resolve()):
            raise EnsembleError(
                f"--out {out} is {'' if out.resolve() == Path(member).resolve() else 'inside '}the member "
                f"{member}; an ensemble never writes into its members: choose another --out"
            )
    with claim_folder(out, "ensemble"):
        return _build_ensemble(members, out, method, metric)


def _build_ensemble(members: Sequence[Path], out: Path, method: str, metric: Metric | str | None) -> dict[str, Any]:
    members = [Path(m) for m in members]
    if len(members) < 1:
        raise EnsembleError("an ensemble needs at least one member")
    if method not in ("optimize", "equal"):
        raise EnsembleError(f"--weights must be optimize or equal (got {method!r})")
    if len({m.resolve() for m in members}) < len(members):
        raise EnsembleError("a member is listed twice; list each run or CV folder once")
    for member in members:
        resolve_model_set(member)  # every member must be predictable too, not only scored
    oofs = aligned_oofs(members)
    labels, probs, task = oofs[0].labels, [o.probs for o in oofs], oofs[0].task
    if any(o.task.kind != task.kind for o in oofs):
        raise EnsembleError(
            f"members were trained for different tasks: {', '.join(sorted({o.task.kind for o in oofs}))}"
        )
    metric = (
        get_metric(metric, task=task.kind)
        if isinstance(metric, str)
        else metric or member_metric(members[0], task.kind)
    )
    weights, chosen_by = choose_weights(probs, labels, method, metric, task=task)
    equal = np.full(len(probs), 1.0 / len(probs))
    blended = Oof(oofs[0].paths, labels, blend(probs, weights), oofs[0].classes, task=task)
    scored = task if not task.multiclass else None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        {"member": str(m), "weight": float(w), **scores(labels, p, metric, scored)}
        for m, w, p in zip(members, weights, probs)
    ]
    summary = {
        "members": rows,
        "weights": "optimize" if method == "optimize" else "equal",
        "weights_chosen_by": chosen_by,
        "metric": metric.name,
        **({"metric_k": metric.k} if metric.name == "top_k" else {}),
        "ensemble": scores(labels, blended.probs, metric, scored),
        "equal_weights": scores(labels, blend(probs, equal), metric, scored),
        **_nested_scores(oofs, labels, method, metric),
        **({"task": task.kind} if scored else {}),
        "oof_images": len(labels),
        "classes": len(oofs[0].classes),
    }
    write_oof(BlendDir(out).oof, blended)
    atomic_write_json(BlendDir(out).classes, oofs[0].classes)
    if scored:
        atomic_write_json(BlendDir(out).task, task.to_dict())
    atomic_write_json(
        BlendDir(out).ensemble_spec,
        {
            "members": [{"path": relative_member(m, out), "weight": float(w)} for m, w in zip(members, weights)],
            "weights": summary["weights"],
        },
    )
    atomic_write_json(BlendDir(out).summary, summary)
    return summary


def _nested_scores(oofs: Sequence[Oof], labels: np.ndarray, method: str, metric: Metric) -> dict[str, Any]:
    nested = nested_blend(oofs, method, metric)
    scored = oofs[0].task if not oofs[0].task.multiclass else None
    if nested is None:
        return {}
    return {"ensemble_nested": scores(labels, nested, metric, scored), "ensemble_note": NESTED_NOTE}
