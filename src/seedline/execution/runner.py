"""Running a spec: load, split, seed, fit step by step, fingerprint, score, save, record.

Every phase is recorded in the manifest. A failure after the run has begun is stored as a
failed run with its error; a spec or data error found before it begins stores nothing.
"""

from __future__ import annotations

import io
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seedline import __version__
from seedline.core.environment import capture_environment, capture_git, local_modules
from seedline.core.errors import PipelineError, SeedlineError, SpecError
from seedline.core.fingerprint import (
    fingerprint_array,
    fingerprint_estimator,
    fingerprint_table,
    fingerprint_value,
)
from seedline.core.seeding import SeedPlan, fill_random_states, hash_seed_state
from seedline.core.spec import Spec, load_spec
from seedline.execution.compile import check_metrics, compile_pipeline
from seedline.execution.data import load_data, select_columns
from seedline.records.manifest import DataRecord, Manifest, SeedRecord, SourceRecord, StepRecord
from seedline.records.tracking import Store, new_run_id
from seedline.storage.metadata import now_iso

Progress = Callable[[str, int, int], None]


@dataclass
class RunResult:
    """What ``seedline.run`` returns: the manifest, and the fitted pipeline when the run succeeded."""

    manifest: Manifest
    model: Any | None

    @property
    def run_id(self) -> str:
        return self.manifest.run_id

    @property
    def status(self) -> str:
        return self.manifest.status

    @property
    def metrics(self) -> dict[str, float]:
        return self.manifest.metrics

    @property
    def fingerprints(self) -> dict[str, str | None]:
        return self.manifest.fingerprints

    def summary(self) -> dict[str, Any]:
        """The scripting contract of ``seedline run --json``."""
        m = self.manifest
        return {
            "run_id": m.run_id,
            "status": m.status,
            "spec": m.spec.get("name"),
            "metrics": dict(m.metrics),
            "fingerprints": dict(m.fingerprints),
            "steps": [{"name": s.name, "fitted": s.fitted, "output": s.output} for s in m.steps],
            "seeds": {
                "master": m.seeds.master if m.seeds else None,
                "hash_seed": m.seeds.hash_seed if m.seeds else None,
            },
            "duration_s": m.timings.get("total"),
            "error": m.error,
        }


def _noop(_msg: str, _i: int, _n: int) -> None:
    return None


def _split(spec: Spec, X: Any, y: Any, plan: SeedPlan) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
    from sklearn.model_selection import train_test_split

    if spec.split.kind != "holdout":
        raise SpecError(
            f"split.kind {spec.split.kind!r} is declared but 'seedline run' evaluates on a holdout split only",
            path="split.kind",
            hint="use split.kind: holdout",
        )
    seed = plan.derive("split")
    idx = np.arange(len(X))
    try:
        tr, te = train_test_split(
            idx,
            test_size=spec.split.test_size,
            random_state=seed,
            stratify=y if spec.split.stratify else None,
        )
    except ValueError as exc:
        raise SpecError(f"split: {exc}", path="split") from exc
    info = {
        "kind": "holdout",
        "seed": seed,
        "test_size": spec.split.test_size,
        "stratify": spec.split.stratify,
        "train_rows": len(tr),
        "test_rows": len(te),
        "train_index": fingerprint_value(np.asarray(tr, dtype=np.int64), kind="index"),
        "test_index": fingerprint_value(np.asarray(te, dtype=np.int64), kind="index"),
    }
    return X.iloc[tr], X.iloc[te], y.iloc[tr], y.iloc[te], info


def _shape(a: Any) -> list[int] | None:
    shape = getattr(a, "shape", None)
    return [int(s) for s in shape] if shape is not None else None


def _probe_bytes(pred: Any, proba: Any | None) -> bytes:
    buf = io.BytesIO()
    arrays = {"predictions": np.asarray(pred)}
    if arrays["predictions"].dtype == object:
        arrays["predictions"] = arrays["predictions"].astype(str)
    if proba is not None:
        arrays["proba"] = np.asarray(proba)
    np.savez(buf, allow_pickle=False, **arrays)
    return buf.getvalue()


def _resolve_spec(
    spec: Spec | str | Path, overrides: list[str] | None, project_root: str | Path | None
) -> tuple[Spec, Path]:
    if isinstance(spec, Spec):
        if overrides:
            from seedline.core.spec import apply_overrides

            spec = Spec.from_dict(apply_overrides(spec.to_dict(), overrides))
        return spec, Path(project_root or ".").resolve()
    path = Path(spec)
    if path.is_dir():
        path = path / "seedline.yaml"
    loaded = load_spec(path, overrides)
    return loaded, Path(project_root).resolve() if project_root else path.resolve().parent


def run(
    spec: Spec | str | Path,
    *,
    overrides: list[str] | None = None,
    project_root: str | Path | None = None,
    store: Store | None = None,
    progress: Progress | None = None,
    parent_run: str | None = None,
) -> RunResult:
    """Run a spec (a Spec, or the path of a YAML file or of its folder) and record it.

    Raises SpecError/DataError before anything is stored; a failure while fitting or
    scoring is recorded as a failed run and raised as PipelineError (``err.result``).
    """
    from threadpoolctl import threadpool_limits

    t_start = time.perf_counter()
    say = progress or _noop
    spec_obj, root = _resolve_spec(spec, overrides, project_root)
    timings: dict[str, float] = {}

    # imports of user code resolve from the project, as `python -m` would
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))

    t = time.perf_counter()
    say("loading data", 0, 1)
    loaded = load_data(spec_obj.data, root)
    X, y, features = select_columns(loaded.frame, spec_obj.data)
    check_metrics(spec_obj.metrics)
    pipeline, resolved = compile_pipeline(spec_obj, X)
    combined = fingerprint_table(loaded.frame)
    timings["load"] = time.perf_counter() - t

    plan = SeedPlan(spec_obj.seed)
    random_states = fill_random_states(pipeline, plan)
    X_train, X_test, y_train, y_test, split_info = _split(spec_obj, X, y, plan)

    store = store or Store.open(root)
    manifest = Manifest(
        seedline_version=__version__,
        run_id=new_run_id(),
        parent_run=parent_run,
        status="running",
        created_at=now_iso(),
        spec=spec_obj.to_dict(),
        spec_fingerprint=spec_obj.fingerprint(),
        overrides=list(overrides or []),
        project_root=str(root),
        settings={"threads": spec_obj.execution.threads, "executor": "serial", "workers": 1},
        data=DataRecord(
            sources=[SourceRecord(**s) for s in loaded.sources],
            table=combined.to_dict(),
            target=spec_obj.data.target,
            features=features,
            split=split_info,
        ),
    )
    store.begin_run(manifest)
    phase = "setup"
    model = None
    interrupted: BaseException | None = None
    try:
        t = time.perf_counter()
        git_info, diff = capture_git(root)
        if diff:
            manifest.artifacts["diff"] = store.objects.put(diff)
        user_modules = sorted({type(est).__module__ for _, est in _walk(pipeline)})
        git_info["local_modules"] = local_modules(user_modules, root)
        manifest.code = git_info
        timings["code"] = time.perf_counter() - t

        with threadpool_limits(limits=spec_obj.execution.threads):
            t = time.perf_counter()
            manifest.environment = capture_environment()
            timings["environment"] = time.perf_counter() - t
            seeded = plan.seed_globals()
            manifest.seeds = SeedRecord(
                master=spec_obj.seed,
                hash_seed=hash_seed_state(),
                derived={},
                random_states=random_states,
                globals=seeded,
            )

            phase = "fit"
            t_fit = time.perf_counter()
            Xt: Any = X_train
            n = len(pipeline.steps)
            for i, (name, est) in enumerate(pipeline.steps):
                say(f"fitting {name}", i, n)
                t = time.perf_counter()
                last = i == n - 1
                if est is None or est == "passthrough":
                    manifest.steps.append(
                        StepRecord(
                            name=name,
                            path=f"pipeline/{name}",
                            cls="passthrough",
                            fitted="passthrough",
                            output=None if last else fingerprint_array(Xt, kind="output"),
                            output_shape=_shape(Xt),
                            fit_seconds=0.0,
                        )
                    )
                    continue
                if last:
                    est.fit(Xt, y_train)
                elif hasattr(est, "fit_transform"):
                    Xt = est.fit_transform(Xt, y_train)
                else:
                    Xt = est.fit(Xt, y_train).transform(Xt)
                secs = time.perf_counter() - t
                manifest.steps.append(
                    StepRecord(
                        name=name,
                        path=f"pipeline/{name}",
                        cls=f"{type(est).__module__}.{type(est).__qualname__}",
                        fitted=fingerprint_estimator(est),
                        output=None if last else fingerprint_array(Xt, kind="output"),
                        output_shape=None if last else _shape(Xt),
                        fit_seconds=secs,
                        resolved_columns=resolved.get(name),
                    )
                )
            timings["fit"] = time.perf_counter() - t_fit
            model = pipeline

            phase = "score"
            say("scoring", n, n)
            t = time.perf_counter()
            from sklearn.metrics import get_scorer

            metrics = {
                name: float(get_scorer(name)(pipeline, X_test, y_test)) for name in spec_obj.metrics
            }
            pred = pipeline.predict(X_test)
            proba = (
                pipeline.predict_proba(X_test)
                if hasattr(pipeline, "predict_proba")
                and hasattr(pipeline.steps[-1][1], "predict_proba")
                else None
            )
            timings["score"] = time.perf_counter() - t

        phase = "save"
        t = time.perf_counter()
        import skops.io as sio

        manifest.artifacts["model"] = store.objects.put(sio.dumps(pipeline))
        manifest.artifacts["probe"] = store.objects.put(_probe_bytes(pred, proba))
        manifest.probe = {
            "set": "test split",
            "rows": len(X_test),
            "input": fingerprint_value(X_test, kind="table"),
            "predictions": fingerprint_array(pred, kind="predictions"),
            "proba": fingerprint_array(proba, kind="proba") if proba is not None else None,
        }
        manifest.metrics = metrics
        manifest.fingerprints = {
            "model": fingerprint_value([(s.name, s.fitted) for s in manifest.steps], kind="model"),
            "predictions": manifest.probe["predictions"],
            "spec": manifest.spec_fingerprint,
            "data": combined.digest,
            "environment": manifest.environment.get("fingerprint"),
            "code": git_info.get("commit"),
        }
        timings["save"] = time.perf_counter() - t
        manifest.status = "succeeded"
    except BaseException as exc:
        manifest.status = "failed"
        manifest.error = {
            "phase": phase,
            "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
            "message": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=20),
        }
        model = None
        if not isinstance(exc, Exception):
            interrupted = exc
    finally:
        if manifest.seeds is not None:
            manifest.seeds.derived = dict(sorted(plan.derived.items()))
        timings["total"] = time.perf_counter() - t_start
        manifest.timings = {k: round(v, 6) for k, v in timings.items()}
        manifest.finished_at = now_iso()
        store.finish_run(manifest, duration_s=timings["total"])

    if interrupted is not None:
        raise interrupted
    result = RunResult(manifest=manifest, model=model)
    if manifest.status == "failed":
        err = manifest.error or {}
        failure = PipelineError(
            f"run {manifest.run_id} failed in phase {phase!r}: {err.get('message')}",
            hint=f"the failure is recorded; 'seedline show {manifest.run_id}' has the traceback",
        )
        failure.result = result
        raise failure
    return result


def _walk(est: Any) -> list[tuple[str, Any]]:
    """Every estimator inside ``est`` (itself included), found through get_params."""
    out: list[tuple[str, Any]] = [("", est)]
    if hasattr(est, "get_params"):
        for key, value in est.get_params(deep=True).items():
            if hasattr(value, "get_params") and not isinstance(value, type):
                out.append((key, value))
    return out


__all__ = ["RunResult", "SeedlineError", "run"]
