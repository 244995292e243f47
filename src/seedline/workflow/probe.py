"""One fit of a spec's pipeline on the check subsample, under chosen settings.

``seedline check`` compares such fits made under different conditions (a refit, another
thread count, other ``n_jobs``, another ``PYTHONHASHSEED``). The fit itself is
``fit_steps`` of the runner, so the fingerprints compared are the ones a run records.

Started as ``python -m seedline.workflow.probe '<json>'`` (or with the JSON on stdin) it is
the fresh interpreter that ``check`` starts with a chosen ``PYTHONHASHSEED``. It reads
``{"spec": <spec dict>, "root": <project root>, "sample": <rows>, "threads": <n>}`` and
prints ``{"hash_seed": ..., "steps": [{"name", "class", "fitted", "output", "globals_touched"}]}``
on stdout; on failure it prints ``{"error": {"type", "message", "hint"}}`` and exits 1, or 2
for a spec or data error. Anything the pipeline prints goes to stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from seedline.core.deeplearning import nondeterministic_op
from seedline.core.errors import DataError, PipelineError, SeedlineError, SpecError
from seedline.core.fingerprint import fingerprint_estimator, fingerprint_value
from seedline.core.seeding import SeedPlan
from seedline.core.spec import Spec
from seedline.execution.runner import Prepared, fit_steps, prepare

SAMPLE_SEED_PATH = "check/sample"


@dataclass
class StepResult:
    """One step of one fit: its fingerprints, and the global generators its fit drew from."""

    name: str
    cls: str
    fitted: str
    output: str | None
    globals_touched: list[str] = field(default_factory=list)
    # the fitted state with every *n_jobs parameter blanked (taken when asked for)
    fitted_sans_n_jobs: str | None = None
    # torch operations without a deterministic implementation that the fit ran
    nondeterministic_ops: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepResult:
        return cls(
            name=str(data["name"]),
            cls=str(data["cls"]),
            fitted=str(data["fitted"]),
            output=data.get("output"),
            globals_touched=list(data.get("globals_touched", [])),
            fitted_sans_n_jobs=data.get("fitted_sans_n_jobs"),
            nondeterministic_ops=list(data.get("nondeterministic_ops", [])),
        )


def sample_training_rows(p: Prepared, rows: int) -> tuple[Any, Any]:
    """A seeded random subset of ``rows`` training rows (all of them when there are fewer), in data order."""
    n = len(p.X_train)
    if rows >= n:
        return p.X_train, p.y_train
    rng = np.random.default_rng(p.plan.derive(SAMPLE_SEED_PATH))
    idx = np.sort(rng.choice(n, size=rows, replace=False))
    return p.X_train.iloc[idx], p.y_train.iloc[idx]


def n_jobs_params(estimator: Any) -> list[str]:
    """Every ``*n_jobs`` parameter of ``estimator``, nested ones included (get_params keys)."""
    params = estimator.get_params(deep=True)
    return sorted(k for k in params if k.rsplit("__", 1)[-1].endswith("n_jobs"))


def _global_states() -> dict[str, str]:
    # fingerprints, not the states: 624 words each, taken twice per step
    return {
        "numpy.random": fingerprint_value(np.random.get_state(legacy=False), kind="state"),
        "python.random": fingerprint_value(random.getstate(), kind="state"),
    }


def _forget_n_jobs(obj: Any, seen: set[int], depth: int = 0) -> None:
    """Set every ``*n_jobs`` parameter inside a fitted estimator (fitted sub-estimators too) to None."""
    if depth > 12 or id(obj) in seen:
        return
    seen.add(id(obj))
    children: Any
    if hasattr(obj, "get_params") and hasattr(obj, "__dict__") and not isinstance(obj, type):
        try:
            names = [k for k in obj.get_params(deep=False) if k.endswith("n_jobs")]
        except Exception:
            names = []
        for name in names:
            setattr(obj, name, None)
        children = list(vars(obj).values())
    elif isinstance(obj, list | tuple):
        children = obj
    elif isinstance(obj, dict):
        children = list(obj.values())
    else:
        return
    for child in children:
        _forget_n_jobs(child, seen, depth + 1)


def fit_once(
    pipeline: Any,
    X: Any,
    y: Any,
    *,
    threads: int,
    resolved: dict[str, dict[str, list[str]]] | None = None,
    n_jobs: int | None = None,
    sans_n_jobs: bool = False,
    seed_plan: SeedPlan | None = None,
    step_plan: SeedPlan | None = None,
    label: str = "fit",
) -> list[StepResult]:
    """Fit a clone of ``pipeline`` with ``fit_steps`` under ``threads`` BLAS/OpenMP threads.

    ``seed_plan`` given: global generators are seeded from it first, as a run does; left
    out, they are not touched, so a step drawing from them sees a different state than
    in an earlier fit. ``n_jobs`` given: every ``*n_jobs`` parameter is set to it and joblib
    runs on threads. With ``n_jobs`` or ``sans_n_jobs``, each step's ``fitted_sans_n_jobs``
    is its fitted state with those parameters blanked, so that fits with different
    ``n_jobs`` compare on fitted attributes alone.

    Deep-learning steps are seeded from their path right before they fit (by ``step_plan``,
    default ``seed_plan``), as in a run. Seeding globals also turns on the frameworks'
    determinism switches, in warn-only mode: each step's ``nondeterministic_ops`` lists the
    torch operations it ran that have no deterministic implementation.
    """
    from joblib import parallel_config
    from sklearn.base import clone
    from threadpoolctl import threadpool_limits

    before: dict[int, dict[str, str]] = {}
    caught: list[warnings.WarningMessage] = []
    warned_at: dict[int, int] = {}

    def snapshot(_msg: str, i: int, _n: int) -> None:
        before.setdefault(i, _global_states())
        warned_at.setdefault(i, len(caught))

    try:
        pipe = clone(pipeline)
        if n_jobs is not None:
            keys = n_jobs_params(pipe)
            for key in sorted(keys, key=lambda k: k.count("__")):
                pipe.set_params(**{key: n_jobs})
        # threads split the work as worker processes would, but start in no time and share
        # this interpreter's hash seed, so only the split of the work varies
        backend = (
            parallel_config(backend="threading") if n_jobs is not None else contextlib.nullcontext()
        )
        with threadpool_limits(limits=threads), backend, warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            # snapshot() reads this name: warnings are attributed to the step they came from
            caught = w
            if seed_plan is not None:
                seed_plan.seed_globals(pipe, threads=threads, warn_only=True)
            records = fit_steps(
                pipe,
                X,
                y,
                resolved=resolved,
                progress=snapshot,
                seed_plan=step_plan or seed_plan,
            )
        for m in caught:  # every other warning is shown as it would have been
            if nondeterministic_op(str(m.message)) is None:
                warnings.warn_explicit(m.message, m.category, m.filename, m.lineno)
        after_all = _global_states()
        sans: list[str | None] = [None] * len(records)
        if n_jobs is not None or sans_n_jobs:
            for i, (_name, est) in enumerate(pipe.steps):
                if est is None or est == "passthrough":
                    sans[i] = records[i].fitted
                else:
                    _forget_n_jobs(est, set())
                    sans[i] = fingerprint_estimator(est)
    except Exception as exc:
        raise PipelineError(
            f"fitting the pipeline for 'seedline check' ({label}) failed: {type(exc).__name__}: {exc}",
            hint="'seedline run' fits the same pipeline on all the data and records the traceback",
        ) from exc
    out: list[StepResult] = []
    for i, rec in enumerate(records):
        start = before.get(i, {})
        end = before.get(i + 1, after_all)
        touched = sorted(g for g in start if start[g] != end.get(g))
        ops = [
            nondeterministic_op(str(m.message))
            for m in caught[warned_at.get(i, 0) : warned_at.get(i + 1, len(caught))]
        ]
        out.append(
            StepResult(
                name=rec.name,
                cls=rec.cls,
                fitted=rec.fitted,
                output=rec.output,
                globals_touched=touched,
                fitted_sans_n_jobs=sans[i],
                nondeterministic_ops=sorted({op for op in ops if op}),
            )
        )
    return out


def probe(request: dict[str, Any]) -> dict[str, Any]:
    """Prepare the spec, take the check subsample, seed globals and fit once: the child's whole job."""
    spec = Spec.from_dict(request["spec"])
    p = prepare(spec, project_root=request["root"])
    X, y = sample_training_rows(p, int(request["sample"]))
    steps = fit_once(
        p.pipeline,
        X,
        y,
        threads=int(request["threads"]),
        resolved=p.resolved,
        seed_plan=p.plan,
        label=f"PYTHONHASHSEED={os.environ.get('PYTHONHASHSEED')}",
    )
    return {
        "hash_seed": os.environ.get("PYTHONHASHSEED"),
        "steps": [asdict(s) for s in steps],
    }


def _error(exc: BaseException) -> str:
    return json.dumps(
        {
            "error": {
                "type": type(exc).__name__,
                "message": getattr(exc, "message", str(exc)),
                "hint": getattr(exc, "hint", None),
            }
        }
    )


def main(argv: list[str] | None = None) -> int:
    """Child-process entry: JSON request on argv[1] or stdin, JSON answer on stdout."""
    args = sys.argv[1:] if argv is None else argv
    out = sys.stdout
    try:
        request = json.loads(args[0] if args else sys.stdin.read())
        missing = [k for k in ("spec", "root", "sample", "threads") if k not in request]
        if missing:
            raise ValueError(f"the probe request lacks {missing}")
    except (ValueError, TypeError) as exc:
        out.write(_error(SeedlineError(f"bad probe request: {exc}")) + "\n")
        return 2
    try:
        # the pipeline's own prints must not corrupt the answer
        with contextlib.redirect_stdout(sys.stderr):
            answer = probe(request)
    except SeedlineError as exc:
        out.write(_error(exc) + "\n")
        return 2 if isinstance(exc, SpecError | DataError) else 1
    out.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
