"""Sweeps: grid, random or TPE search over spec values; every trial is a run linked to its sweep.

Trials are keyed ``trial-000``, ``trial-001``... in the order the search defines them, and
every trial keeps the spec's master seed, so its seeds come from stable paths, never from
scheduling order. Trials run as coarse tasks on the chosen executor (serial, local
processes or Dask), with the loaded data shipped to each worker once; results are
gathered in key order.

Workers need neither the project folder nor the store: the project-local modules the
spec's classes come from travel with the data as sources checked against their hashes,
and a trial on local processes or Dask returns its manifest and the objects it made
(model, probe predictions) to this process, which records the run. A trial that ran on a
worker whose string hashing differs from this process's (a Dask worker started without
this ``PYTHONHASHSEED``) is recorded with ``seeds.hash_seed.pinned`` false and a warning.

TPE (Optuna) asks for trials in fixed-size batches seeded from the plan, so its trials are
also the same whatever the number of workers.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from seedline.core.environment import capture_git
from seedline.core.errors import PipelineError, SeedlineError, SpecError
from seedline.core.seeding import SeedPlan
from seedline.core.spec import Spec, apply_overrides, load_spec, parse_yaml
from seedline.execution.compile import compile_pipeline
from seedline.execution.data import LoadedData, load_data, select_columns
from seedline.execution.executors import TaskInfo, make_executor
from seedline.execution.frozen import FrozenStep, resolve_frozen_steps
from seedline.execution.localcode import LocalCode
from seedline.execution.runner import pipeline_class_modules, record_detached, shipped_code
from seedline.records.recording import new_run_id
from seedline.records.sweeps import SweepIndex
from seedline.records.tags import check_tags
from seedline.records.tracking import Store

SEARCHES = ("grid", "random", "tpe")
TPE_BATCH = 4


class SweepError(SeedlineError):
    """Raised when a sweep is malformed (no params, a bad value list, an unknown search)."""


def parse_param(text: str) -> tuple[str, list[Any]]:
    """'pipeline.clf.C=0.1,1,10' -> ('pipeline.clf.C', [0.1, 1, 10]); values parsed as YAML."""
    if "=" not in text:
        raise SweepError(
            f"--param {text!r} must look like path.to.key=v1,v2,...",
            hint="e.g. --param pipeline.clf.C=0.1,1,10",
        )
    path, raw = text.split("=", 1)
    raw = raw.strip()
    if not path.strip():
        raise SweepError(
            f"--param {text!r} names no key before '='",
            hint="e.g. --param pipeline.clf.C=0.1,1,10",
        )
    parts = [] if raw.startswith("[") else [v.strip() for v in raw.split(",")]
    if raw == "" or any(v == "" for v in parts):
        # an empty value would silently become null (YAML's reading of nothing)
        raise SweepError(
            f"--param {text!r} has an empty value: expected v1,v2,... with a value between every pair of commas",
            hint='write null for Python\'s None, or "" for an empty string: '
            f"--param {path.strip()}=null,1",
        )
    values = yaml.safe_load(raw) if raw.startswith("[") else [yaml.safe_load(v) for v in parts]
    if not isinstance(values, list) or not values:
        raise SweepError(f"--param {text!r} lists no values")
    return path.strip(), values


def _overrides(combo: dict[str, Any]) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in sorted(combo.items())]


def plan_trials(
    params: dict[str, list[Any]], search: str, trials: int | None, plan: SeedPlan
) -> list[list[str]]:
    """The overrides of each trial, in key order (grid: every combination; random: a seeded sample)."""
    names = sorted(params)
    combos = [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(params[n] for n in names))
    ]
    if search == "grid":
        return [_overrides(c) for c in combos]
    if search == "random":
        n = min(trials or 10, len(combos))
        rng = np.random.default_rng(plan.derive("sweep/random"))
        picked = rng.choice(len(combos), size=n, replace=False)
        return [_overrides(combos[int(i)]) for i in picked]
    raise SweepError(f"search must be one of {', '.join(SEARCHES)}, got {search!r}")


@dataclass
class _SweepShared:
    spec: dict[str, Any]
    loaded: LoadedData
    root: str
    sweep: dict[str, Any]
    use_cache: bool
    code: LocalCode = field(default_factory=LocalCode)
    tags: dict[str, str] = field(default_factory=dict)
    detached: bool = False
    """Run without the store: the trial's results go back to the client, which records them."""
    frozen: dict[str, FrozenStep] = field(default_factory=dict)
    """Steps taken fitted 'from' a model, loaded once by the client."""


def trial_job(key: str, item: dict[str, Any], shared: _SweepShared) -> Any:
    """One trial: a full seedline run on the data shipped once; never raises for a failed fit.

    Detached (on local processes or Dask), the worker touches neither the store nor the
    project folder and returns the run (a ``RunResult`` with its objects) for the client to
    record; in this process (serial), the trial records itself and returns its summary.
    """
    from seedline.execution.runner import run

    shared.code.install()
    settings = shared.sweep["settings"]
    store = None if shared.detached else Store(Path(shared.root) / ".seedline")
    try:
        result = run(
            Spec.from_dict(shared.spec),
            overrides=item["overrides"],
            project_root=shared.root,
            store=store,
            loaded=shared.loaded,
            use_cache=shared.use_cache,
            executor=settings["executor"],
            workers=settings["workers"],
            address=settings["address"],
            sweep={"id": shared.sweep["id"], "trial": key, "overrides": item["overrides"]},
            detached=shared.detached,
            frozen=shared.frozen,
            tags=shared.tags,
        )
    except PipelineError as exc:
        if exc.result is None:
            raise
        result = exc.result
    finally:
        if store is not None:
            store.close()
    return result if shared.detached else result.summary()


HASH_SEED_HINT = (
    "start every Dask worker with this process's hash seed: 'PYTHONHASHSEED={seed} dask worker "
    "ADDRESS --nthreads 1 --no-nanny', or, with a nanny (which ignores the PYTHONHASHSEED it "
    "inherits), put 'distributed: {{nanny: {{pre-spawn-environ: {{PYTHONHASHSEED: \"{seed}\"}}}}}}' "
    "in a Dask config file (DASK_CONFIG)"
)


def hash_seed_note(info: TaskInfo | None) -> dict[str, Any] | None:
    """What to add to a trial's ``seeds.hash_seed`` when its worker hashes strings differently from here."""
    if info is None or info.hash_seed_matches:
        return None
    seed = os.environ.get("PYTHONHASHSEED")
    return {
        "pinned": False,
        "matches_client": False,
        "client": seed,
        "warning": f"trial ran on {info.worker} with PYTHONHASHSEED={info.hash_seed!r}, "
        f"whose string hashing differs from the client's (PYTHONHASHSEED={seed!r}); "
        + HASH_SEED_HINT.format(seed=seed or "0"),
    }


@dataclass
class SweepReport:
    sweep_id: str
    metric: str
    search: str
    trials: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, Any]]:
        """The trials that failed, in trial order."""
        return [t for t in self.trials if t["status"] != "succeeded"]

    def failure_summary(self) -> str | None:
        """'N of M trials failed; the first (trial-k): message', or None when none failed."""
        failed = self.failed
        if not failed:
            return None
        first = failed[0]
        error = first.get("error") or {}
        message = error.get("message") if isinstance(error, dict) else str(error)
        return (
            f"{len(failed)} of {len(self.trials)} trials failed; the first, {first['trial']} "
            f"(run {first['run_id']}): {message or 'no error recorded'}"
        )

    @property
    def best(self) -> dict[str, Any] | None:
        ok = [t for t in self.trials if t["status"] == "succeeded"]
        return (
            max(ok, key=lambda t: (t["metrics"][self.metric], -self.trials.index(t)))
            if ok
            else None
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "sweep_id": self.sweep_id,
            "metric": self.metric,
            "search": self.search,
            "settings": self.settings,
            "best": self.best,
            "trials": self.trials,
            "warnings": self.warnings,
        }


def _tpe_trials(
    params: dict[str, list[Any]], trials: int, plan: SeedPlan, run_batch: Any, metric: str
) -> list[dict[str, Any]]:
    try:
        import optuna
    except ImportError:
        raise SweepError("search 'tpe' needs Optuna", hint="pip install 'seedline[tpe]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=plan.derive("sweep/tpe"))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    names = sorted(params)
    done: list[dict[str, Any]] = []
    while len(done) < trials:
        batch = [study.ask() for _ in range(min(TPE_BATCH, trials - len(done)))]
        items = {}
        for t in batch:
            combo = {n: t.suggest_categorical(n, params[n]) for n in names}
            items[f"trial-{t.number:03d}"] = {"overrides": _overrides(combo)}
        results = run_batch(items)
        for t in batch:
            r = results[f"trial-{t.number:03d}"]
            if r["status"] == "succeeded":
                study.tell(t, r["metrics"][metric])
            else:
                study.tell(t, state=optuna.trial.TrialState.FAIL)
            done.append(
                r
                | {
                    "trial": f"trial-{t.number:03d}",
                    "overrides": items[f"trial-{t.number:03d}"]["overrides"],
                }
            )
    return done


def sweep(
    spec_path: str | Path,
    params: dict[str, list[Any]] | None = None,
    *,
    search: str | None = None,
    trials: int | None = None,
    metric: str | None = None,
    overrides: list[str] | None = None,
    executor: str = "serial",
    workers: int = 1,
    address: str | None = None,
    use_cache: bool = True,
    tags: Mapping[str, str] | None = None,
) -> SweepReport:
    """Run a sweep; params from the arguments or the spec's ``sweep:`` section.

    ``tags`` label every trial (see ``seedline.records.tags``).
    """
    tags = check_tags(tags or {})
    path = Path(spec_path)
    path = path / "seedline.yaml" if path.is_dir() else path
    root = path.resolve().parent
    base = load_spec(path, overrides)
    raw = parse_yaml(path.read_text(encoding="utf-8"), str(path))
    section = dict(raw.get("sweep") or {}) if isinstance(raw, dict) else {}
    extra = set(section) - {"search", "trials", "metric", "params"}
    if extra:
        raise SweepError(
            f"unknown key(s) {sorted(extra)} in the sweep section",
            hint="allowed: search, trials, metric, params",
        )
    params = dict(params or section.get("params") or {})
    if not params:
        raise SweepError(
            "nothing to sweep",
            hint="pass --param path.to.key=v1,v2 or add a 'sweep: {params: ...}' section to the spec",
        )
    # the spec's own classes import from the project, as a run's do
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    loaded = load_data(base.data, root)
    X, _, _ = select_columns(loaded.frame, base.data)
    # steps taken 'from' a model are loaded once, here: trials on workers have no store
    frozen = resolve_frozen_steps(base, root)
    fitted = {name: f.estimator for name, f in frozen.items()}
    class_modules = set(pipeline_class_modules(compile_pipeline(base, X, fitted)[0]))
    for k, v in params.items():
        if not isinstance(v, list) or not v:
            raise SweepError(f"sweep param {k!r} must list its values, got {v!r}")
        try:
            # compile with the first value: a misspelt path or parameter fails here, not in a worker
            first = compile_pipeline(
                Spec.from_dict(apply_overrides(base.to_dict(), [f"{k}={json.dumps(v[0])}"])),
                X,
                fitted,
            )[0]
            class_modules |= set(pipeline_class_modules(first))
        except SpecError as exc:
            raise SweepError(f"sweep param {k!r}: {exc.message}", hint=exc.hint) from None
    search = search or section.get("search") or "grid"
    if search not in SEARCHES:
        raise SweepError(f"search must be one of {', '.join(SEARCHES)}, got {search!r}")
    trials = trials or section.get("trials")
    metric = metric or section.get("metric") or base.metric_names[0]
    if metric not in base.metric_names:
        raise SweepError(f"metric {metric!r} is not among the spec's metrics {base.metric_names}")
    plan = SeedPlan(base.seed)
    store = Store.open(root)
    sweep_id = new_run_id()
    with make_executor(
        executor, workers=workers, address=address, threads=base.execution.threads
    ) as ex:
        settings = ex.settings()
        report = SweepReport(sweep_id=sweep_id, metric=metric, search=search, settings=settings)
        SweepIndex(store).begin(
            sweep_id,
            spec_name=base.name,
            search=search,
            metric=metric,
            params=params,
            settings=settings,
        )
        detached = executor != "serial"
        shared = _SweepShared(
            spec=base.to_dict(),
            loaded=loaded,
            root=str(root),
            sweep={"id": sweep_id, "settings": settings},
            use_cache=use_cache and not detached,
            tags=tags,
            code=shipped_code(root, sorted(class_modules), where=f"sweep {sweep_id}")
            if detached
            else LocalCode(),
            detached=detached,
            frozen=frozen,
        )
        git_info: dict[str, Any] = {}
        diff_object: str | None = None
        if detached:
            git_info, diff = capture_git(root)
            diff_object = store.objects.put(diff) if diff else None

        def run_batch(items: dict[str, Any]) -> dict[str, Any]:
            results = ex.map(trial_job, items, shared=shared)
            if not detached:
                return results
            summaries: dict[str, Any] = {}
            for key, result in results.items():
                note = hash_seed_note(ex.task_info.get(key))
                if note is not None:
                    report.warnings.append(f"{key}: {note['warning']}")
                record_detached(
                    store,
                    result,
                    root,
                    git_info,
                    diff_object=diff_object,
                    notes=note,
                    tags=tags,
                )
                summaries[key] = result.summary()
            return summaries

        if search == "tpe":
            report.trials = _tpe_trials(params, trials or 10, plan, run_batch, metric)
        else:
            items = {
                f"trial-{i:03d}": {"overrides": o}
                for i, o in enumerate(plan_trials(params, search, trials, plan))
            }
            results = run_batch(items)
            report.trials = [
                results[k] | {"trial": k, "overrides": items[k]["overrides"]} for k in items
            ]
    best = report.best
    SweepIndex(store).finish(
        sweep_id, trials=len(report.trials), best_run=best["run_id"] if best else None
    )
    store.close()
    return report


def sweep_info(store: Store, ref: str) -> dict[str, Any]:
    """A stored sweep by id or unique prefix."""
    found = SweepIndex(store).find(ref)
    if len(found) != 1:
        raise SweepError(
            f"no sweep matches {ref!r}" if not found else f"sweep prefix {ref!r} is ambiguous",
            hint="'seedline sweeps' lists the sweeps",
        )
    return found[0].to_dict()
