"""Coarse, picklable units of work that executors run anywhere: a fold's fit, a sweep trial.

A job receives the spec as a dict and the loaded table as ``shared`` (shipped to each
worker once), and returns fingerprints, metrics and, when asked, the serialized model: it
never touches the store or the project folder, so the same job runs in this process, on
local processes, or on a Dask worker of another machine. The project-local modules the
spec's classes come from travel in ``shared`` as sources checked against their hashes
(:class:`~seedline.execution.localcode.LocalCode`). Every seed a job uses comes from the
plan under the job's stable key.
"""

from __future__ import annotations

import io
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seedline.core.fingerprint import fingerprint_array, fingerprint_value
from seedline.core.seeding import SeedPlan, fill_random_states
from seedline.core.spec import Spec
from seedline.execution.compile import compile_pipeline
from seedline.execution.data import sample_weights, select_columns
from seedline.execution.localcode import LocalCode
from seedline.execution.persist import dump_model
from seedline.records.manifest import StepRecord


@dataclass
class Shared:
    """What every job of one run or sweep needs: shipped to each worker once."""

    spec: dict[str, Any]
    frame: Any
    root: str
    code: LocalCode = field(default_factory=LocalCode)
    """The project-local modules the spec's classes need, for workers without the project folder."""
    frozen: dict[str, Any] = field(default_factory=dict)
    """The fitted estimators of the steps taken ``from`` a model, by step name (workers have no store)."""


@dataclass
class JobResult:
    """A job's outcome, small enough to send back (the model only when asked for)."""

    steps: list[StepRecord]
    metrics: dict[str, float]
    predictions: str
    proba: str | None
    seeds: dict[str, Any]
    seconds: float
    model: bytes | None = None
    probe: bytes | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def probe_bytes(pred: Any, proba: Any | None) -> bytes:
    """Probe predictions as a NumPy .npz (no pickle: object labels are stored as text)."""
    buf = io.BytesIO()
    arrays = {"predictions": np.asarray(pred)}
    if arrays["predictions"].dtype == object:
        arrays["predictions"] = arrays["predictions"].astype(str)
    if proba is not None:
        arrays["proba"] = np.asarray(proba)
    np.savez(buf, allow_pickle=False, **arrays)
    return buf.getvalue()


def fit_and_score(
    spec: Spec,
    frame: Any,
    root: str,
    *,
    train: np.ndarray,
    test: np.ndarray,
    plan: SeedPlan,
    keep_model: bool = False,
    plots_seed: int | None = None,
    frozen: dict[str, Any] | None = None,
) -> JobResult:
    """Compile, seed from ``plan``, fit on ``train`` rows, score on ``test`` rows.

    With ``plots_seed``, the test rows' predictions and permutation importances come back in
    ``extra`` (the out-of-fold plot data of a k-fold run), computed after every fingerprint.
    """
    from seedline.execution.runner import fit_steps, score

    if root not in sys.path:
        sys.path.insert(0, root)
    t0 = time.perf_counter()
    X, y, _ = select_columns(frame, spec.data)
    pipeline, resolved = compile_pipeline(spec, X, frozen)
    random_states = fill_random_states(pipeline, plan)
    seeded = plan.seed_globals()
    X_train, y_train, X_test, y_test = X.iloc[train], y.iloc[train], X.iloc[test], y.iloc[test]
    w = sample_weights(frame, spec.data)
    steps = fit_steps(
        pipeline,
        X_train,
        y_train,
        resolved=resolved,
        seed_plan=plan,
        sample_weight=None if w is None else w.iloc[train],
    )
    metrics, pred, proba = score(
        pipeline, X_test, y_test, spec.metrics, sample_weight=None if w is None else w.iloc[test]
    )
    extra: dict[str, Any] = {}
    if plots_seed is not None:
        extra = plot_parts(pipeline, X_test, y_test, pred, proba, test, plots_seed)
    return JobResult(
        steps=steps,
        metrics=metrics,
        predictions=fingerprint_array(pred, kind="predictions"),
        proba=fingerprint_array(proba, kind="proba") if proba is not None else None,
        seeds={
            "master": plan.master,
            "random_states": random_states,
            "globals": seeded,
            "derived": dict(plan.derived),
        },
        seconds=time.perf_counter() - t0,
        model=dump_model(pipeline) if keep_model else None,
        probe=probe_bytes(pred, proba) if keep_model else None,
        extra=extra,
    )


def plot_parts(
    pipeline: Any, X_test: Any, y_test: Any, pred: Any, proba: Any, rows: Any, seed: int
) -> dict[str, Any]:
    """A fold's share of the run's plots; a failure is reported, never raised (plots are extras)."""
    from sklearn.base import is_classifier

    from seedline.execution.plots import permutation_importance

    try:
        importance = permutation_importance(
            pipeline,
            X_test,
            y_test,
            seed=seed,
            is_classifier=is_classifier(pipeline.steps[-1][1]),
            pred=pred,
        )
    except Exception as exc:
        importance = {"error": f"{type(exc).__name__}: {exc}"}
    return {
        "rows": np.asarray(rows),
        "pred": np.asarray(pred),
        "proba": None if proba is None else np.asarray(proba),
        "importance": importance,
    }


def fold_job(key: str, item: dict[str, Any], shared: Shared) -> JobResult:
    """One cross-validation fold: its own sub-plan, seeded from (master seed, 'fold/i')."""
    shared.code.install()
    spec = Spec.from_dict(shared.spec)
    plan = SeedPlan(SeedPlan(spec.seed).derive(f"cv/{item['fold']}"))
    return fit_and_score(
        spec,
        shared.frame,
        shared.root,
        train=item["train"],
        test=item["test"],
        plan=plan,
        plots_seed=item.get("plots_seed"),
        frozen=shared.frozen,
    )


def summarise_folds(results: dict[str, JobResult], folds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-fold metrics and fingerprints, then the mean and standard deviation of each metric."""
    names = list(next(iter(results.values())).metrics) if results else []
    per_fold = []
    for info, (key, r) in zip(folds, sorted(results.items()), strict=True):
        per_fold.append(
            {
                **info,
                "key": key,
                "metrics": r.metrics,
                "model": fingerprint_value([(s.name, s.fitted) for s in r.steps], kind="model"),
                "steps": [
                    {"name": s.name, "fitted": s.fitted, "output": s.output} for s in r.steps
                ],
                "predictions": r.predictions,
                "seconds": round(r.seconds, 6),
                "seed": r.seeds["master"],
            }
        )
    values = {n: np.array([r.metrics[n] for _, r in sorted(results.items())]) for n in names}
    return {
        "folds": per_fold,
        "mean": {n: float(v.mean()) for n, v in values.items()},
        "std": {n: float(v.std(ddof=0)) for n, v in values.items()},
    }
