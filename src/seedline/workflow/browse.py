"""What the apps show about the store: runs pages, a run's details, comparisons, sweeps, lineage.

The CLI and the UI both call these, so a sweep is ranked, and a model's lineage assembled,
in one place. Everything reads records and stored objects; nothing refits or loads a model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seedline.core.errors import SeedlineError
from seedline.records.browsing import (
    Condition,
    RunQuery,
    check_report,
    children_of,
    flatten_spec,
    list_check_reports,
    metric_names,
    param_variety,
    query_runs,
    run_params,
    save_check_report,
    spec_names,
    varying_params,
)
from seedline.records.manifest import Manifest
from seedline.records.registry import Registry
from seedline.records.tags import parse_tag_filter, tag_keys, tags_of
from seedline.records.tracking import RunSummary, Store
from seedline.workflow.compare import CATEGORIES, DiffReport, can_explain, diff_manifests


# -- runs ----------------------------------------------------------------------------------------
def parse_query(args: dict[str, Any]) -> RunQuery:
    """A RunQuery from request-like arguments (strings; ``param``/``metric`` may repeat)."""

    def many(key: str) -> list[str]:
        v = args.get(key) or []
        return [x for x in ([v] if isinstance(v, str) else v) if x and x.strip()]

    sort = str(args.get("sort") or "created")
    try:
        offset = int(args.get("offset") or 0)
        limit = min(500, max(1, int(args.get("limit") or 50)))
    except ValueError as exc:
        raise SeedlineError(
            f"offset and limit must be whole numbers: {exc}", hint="e.g. offset=50&limit=50"
        ) from None
    kind = args.get("kind") or None
    if kind not in (None, "run", "trial", "reproduction"):
        raise SeedlineError(
            f"kind must be run, trial or reproduction; got {kind!r}",
            hint="leave it empty for every run",
        )
    return RunQuery(
        spec=args.get("spec") or None,
        status=args.get("status") or None,
        since=args.get("since") or None,
        until=args.get("until") or None,
        kind=kind,
        sweep=args.get("sweep") or None,
        params=[Condition.parse(x) for x in many("param")],
        metrics=[Condition.parse(x) for x in many("metric")],
        tags=dict(parse_tag_filter(x) for x in many("tag")),
        sort=sort,
        descending=str(args.get("order") or "desc") != "asc",
        offset=offset,
        limit=limit,
    )


def reproduction_verdicts(store: Store, run_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Original run id -> its reproductions (run id, verdict, created), oldest first."""
    out: dict[str, list[dict[str, Any]]] = {}
    for child in children_of(store, run_ids):
        verdict = "failed" if child.status == "failed" else None
        if child.status == "succeeded":
            try:
                rep = store.manifest(child.run_id).reproduction or {}
                verdict = rep.get("verdict")
            except SeedlineError:
                verdict = None
        out.setdefault(child.parent_run or "", []).append(
            {
                "run_id": child.run_id,
                "verdict": verdict or "unknown",
                "created_at": child.created_at,
            }
        )
    return out


def runs_page(store: Store, query: RunQuery) -> dict[str, Any]:
    """One page of runs with the columns worth showing and each run's reproductions."""
    rows, total = query_runs(store, query)
    ids = [r.run_id for r in rows]
    params = run_params(store, ids)
    variety = param_variety(store, query.spec)
    shown = varying_params(variety, limit=8)
    repro = reproduction_verdicts(store, ids)
    return {
        "total": total,
        "offset": query.offset,
        "limit": query.limit,
        "sort": query.sort,
        "order": "desc" if query.descending else "asc",
        "metrics": metric_names(store),
        "params": shown,
        "all_params": sorted(variety),
        "specs": spec_names(store),
        "tag_keys": tag_keys(store),
        "runs": [
            {
                **r.to_dict(),
                "params": {k: params.get(r.run_id, {}).get(k) for k in shown},
                "reproductions": repro.get(r.run_id, []),
            }
            for r in rows
        ],
    }


# -- one run -------------------------------------------------------------------------------------
def load_plots(store: Store, manifest: Manifest) -> dict[str, Any] | None:
    address = manifest.artifacts.get("plots")
    if not address:
        return None
    try:
        return dict(json.loads(store.objects.get(address)))
    except SeedlineError as exc:
        return {"error": exc.message}


def pipeline_html(manifest: Manifest) -> str | None:
    """scikit-learn's HTML diagram of the run's unfitted pipeline, compiled from its spec.

    The spec is compiled against an empty table with the recorded schema: no data is read,
    no model loaded. None when the spec's classes cannot be imported here.
    """
    import pandas as pd
    from sklearn.utils import estimator_html_repr

    from seedline.core.spec import Spec
    from seedline.execution.compile import compile_pipeline

    if manifest.data is None:
        return None
    schema = manifest.data.table.get("schema") or {}
    features = manifest.data.features
    try:
        empty = pd.DataFrame(
            {c: pd.Series(dtype=str(schema.get(c, "float64"))) for c in features}, columns=features
        )
        pipeline, _ = compile_pipeline(Spec.from_dict(manifest.spec), empty)
        return str(estimator_html_repr(pipeline))
    except Exception:  # the diagram is an extra: a class missing here must not hide the run
        return None


def run_detail(store: Store, ref: str) -> dict[str, Any]:
    """Everything the run page shows, from the manifest and stored objects."""
    m = store.manifest(ref)
    repro = reproduction_verdicts(store, [m.run_id]).get(m.run_id, [])
    diff_text = None
    if m.artifacts.get("diff"):
        try:
            diff_text = store.objects.get(m.artifacts["diff"]).decode(errors="replace")
        except SeedlineError as exc:
            diff_text = f"(the diff object is unreadable: {exc.message})"
    env = m.environment
    return {
        "manifest": m.to_dict(),
        "run_id": m.run_id,
        "latest_reproduction": repro[-1] if repro else None,
        "reproductions": repro,
        "reproduces": m.reproduction,
        "tags": tags_of(store, [m.run_id])[m.run_id],
        "params": flatten_spec(m.spec),
        "packages": sorted(env.packages.items()),
        "thread_pools": env.thread_pools,
        "diff_text": diff_text,
        "plots": load_plots(store, m),
        "pipeline_html": pipeline_html(m),
    }


# -- comparing -----------------------------------------------------------------------------------
def compare_runs(store: Store, refs: list[str]) -> dict[str, Any]:
    """The diff of run 1 against each other run, params side by side, metric deltas, plots."""
    if len(refs) < 2:
        raise SeedlineError(
            f"compare needs two or more runs; got {len(refs)}",
            hint="select two or more runs on the Runs page, or pass RUN_A RUN_B",
        )
    manifests = [store.manifest(r) for r in refs]
    return compare_manifests(manifests, [load_plots(store, m) for m in manifests])


def grouped(report: DiffReport) -> list[dict[str, Any]]:
    """Differences by category in DESIGN.md's order (most likely cause first); neutral ones last."""
    out = []
    for cat in CATEGORIES:
        items = [d for d in report.differences if d.category == cat]
        if items:
            out.append(
                {
                    "category": cat,
                    "explains": [d.to_dict() for d in items if can_explain(d)],
                    "neutral": [d.to_dict() for d in items if not can_explain(d)],
                }
            )
    out.sort(key=lambda g: not g["explains"])  # categories that can explain come first
    return out


def compare_manifests(
    manifests: list[Manifest], plots: list[dict[str, Any] | None]
) -> dict[str, Any]:
    base = manifests[0]
    diffs = [diff_manifests(base, m) for m in manifests[1:]]
    flat = [flatten_spec(m.spec) for m in manifests]
    names = list(dict.fromkeys(k for f in flat for k in f))
    params = [
        {
            "name": k,
            "values": [f.get(k) for f in flat],
            "changed": len({json.dumps(f.get(k), sort_keys=True) for f in flat}) > 1,
        }
        for k in names
    ]
    params.sort(key=lambda p: not p["changed"])
    metrics = list(dict.fromkeys(k for m in manifests for k in m.metrics))
    first = diffs[0]
    likely = next((d for d in first.differences if can_explain(d)), None)
    return {
        "runs": [
            {
                "run_id": m.run_id,
                "spec": m.spec.get("name"),
                "status": m.status,
                "created_at": m.created_at,
            }
            for m in manifests
        ],
        "diffs": [
            {**d.to_dict(), "groups": grouped(d), "b_run": m.run_id}
            for d, m in zip(diffs, manifests[1:], strict=True)
        ],
        "likely_cause": likely.describe() if likely else None,
        "first_divergent_step": first.first_divergent_step,
        "params": params,
        "metrics": [
            {
                "name": k,
                "values": [m.metrics.get(k) for m in manifests],
                "deltas": [
                    (m.metrics[k] - base.metrics[k])
                    if k in m.metrics and k in base.metrics
                    else None
                    for m in manifests
                ],
            }
            for k in metrics
        ],
        "steps": [
            {
                "name": s.name,
                "cls": s.cls,
                "fitted": [
                    next((t.fitted for t in m.steps if t.name == s.name), None) for m in manifests
                ],
                "cache": [
                    next((t.cache for t in m.steps if t.name == s.name), None) for m in manifests
                ],
            }
            for s in base.steps
        ],
        "plots": plots,
        "pipeline_html": pipeline_html(base),
    }


# -- sweeps --------------------------------------------------------------------------------------
def ranked_trials(store: Store, sweep_ref: str, limit: int | None = None) -> dict[str, Any]:
    """A sweep and its trials, best first by its metric (ties to the earlier trial)."""
    from seedline.workflow.sweep import sweep_info

    info = sweep_info(store, sweep_ref)
    rows = store.list_runs(sweep=info["sweep_id"])
    metric = info["metric"]
    manifests = {r.run_id: _manifest_or_none(store, r.run_id) for r in rows}
    trial = {k: ((m.sweep or {}).get("trial", "") if m else "") for k, m in manifests.items()}
    rows.sort(
        key=lambda r: (
            r.status != "succeeded",
            -r.metrics.get(metric, float("-inf")),
            trial[r.run_id],
        )
    )
    if limit:
        rows = rows[:limit]
    names = list(info["params"]) if isinstance(info["params"], dict) else []
    trials = []
    for rank, r in enumerate(rows, 1):
        m = manifests.get(r.run_id)
        flat = flatten_spec(m.spec) if m else {}
        overrides = (m.sweep or {}).get("overrides", []) if m else []
        trials.append(
            {
                "rank": rank,
                "trial": trial[r.run_id],
                "summary": r,
                "overrides": overrides,
                "values": {n: _param_value(n, flat) for n in names},
            }
        )
    return {"sweep": info, "metric": metric, "params": names, "trials": trials}


def _param_value(name: str, flat: dict[str, Any]) -> Any:
    if name in flat:
        return flat[name]
    # sweep params are spec paths whose list items may be named differently from flatten's keys
    tail = name.split(".")[-1]
    hits = [v for k, v in flat.items() if k.endswith("." + tail) or k == tail]
    return hits[0] if len(hits) == 1 else None


def _manifest_or_none(store: Store, run_id: str) -> Manifest | None:
    try:
        return store.manifest(run_id)
    except SeedlineError:
        return None


# -- models --------------------------------------------------------------------------------------
def model_lineage(store: Store, ref: str) -> dict[str, Any]:
    """A registered version's lineage: run, data, code, environment, seeds, versions, parity, sweep, reproductions."""
    from seedline.workflow.registration import lineage

    registry = Registry(store)
    version = registry.resolve(ref)
    manifest = Manifest.from_json(store.objects.get(version.manifest_object))
    info = lineage(manifest, version)
    info["versions"] = [
        {
            "version": v.version,
            "run_id": v.run_id,
            "aliases": v.aliases,
            "created_at": v.created_at,
        }
        for v in registry.versions(version.name)
    ]
    info["parity_checks"] = registry.parity_history(run_id=version.run_id, limit=10)
    info["sweep"] = manifest.sweep
    info["reproductions"] = reproduction_verdicts(store, [manifest.run_id]).get(manifest.run_id, [])
    return info


def list_models(store: Store) -> list[dict[str, Any]]:
    registry = Registry(store)
    out = []
    for entry in registry.list_models():
        entry["all_versions"] = [v.to_dict() for v in registry.versions(entry["name"])]
        out.append(entry)
    return out


# -- check reports -------------------------------------------------------------------------------
def record_check(report: Any, spec: Any, project_root: str | Path | None = None) -> str:
    """Store a ``check`` report in the project's store with the spec it audited; returns its id."""
    from seedline.workflow.check import _resolve

    spec_obj, root = _resolve(spec, project_root)
    store = Store.open(root)
    try:
        return save_check_report(
            store,
            report.to_dict(),
            spec_name=spec_obj.name,
            spec_fingerprint=spec_obj.fingerprint(),
        )
    finally:
        store.close()


def check_reports(store: Store) -> list[dict[str, Any]]:
    return list_check_reports(store)


def check_report_detail(store: Store, report_id: str) -> dict[str, Any]:
    return check_report(store, report_id)


__all__ = [
    "RunSummary",
    "check_report_detail",
    "check_reports",
    "compare_runs",
    "list_models",
    "model_lineage",
    "parse_query",
    "ranked_trials",
    "record_check",
    "run_detail",
    "runs_page",
]
