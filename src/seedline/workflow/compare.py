"""Why do two runs differ? Compare manifests section by section, most likely cause first.

Categories, in the order a person should look at them: data, params, seeds, code,
environment, settings, platform. Then the first step whose output diverged, then the
metric deltas.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from seedline.core.composition import flatten_spec
from seedline.core.deeplearning import first_divergent_layer
from seedline.core.environment import distinct_pools
from seedline.records.manifest import CodeRecord, EnvironmentRecord, Manifest

CATEGORIES = ("data", "params", "seeds", "code", "environment", "settings", "platform")
# execution settings that seedline guarantees change no result: shown, never blamed
NEUTRAL_SETTINGS = frozenset({"cache", "executor", "workers", "address"})


def can_explain(d: Difference) -> bool:
    """Whether a difference could have changed results (a neutral setting or an unpinned hash seed cannot be told apart)."""
    if d.category == "settings" and d.name in NEUTRAL_SETTINGS:
        return False
    return not (d.category == "seeds" and d.a is None and d.b is None)


@dataclass(frozen=True)
class Difference:
    """One thing that differs between run A and run B."""

    category: str
    name: str
    a: Any
    b: Any
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "name": self.name,
            "a": self.a,
            "b": self.b,
            "detail": self.detail,
        }

    def describe(self) -> str:
        text = f"{self.category}: {self.name}: {_short(self.a)} -> {_short(self.b)}"
        return f"{text} ({self.detail})" if self.detail else text


def _short(v: Any) -> str:
    s = "absent" if v is None else str(v)
    kind, _, digest = s.partition(":")
    if digest and len(digest) == 64 and kind.isidentifier():
        return f"{kind}:{digest[:12]}"  # a fingerprint: the prefix is enough to tell two apart
    return s if len(s) <= 60 else s[:57] + "..."


@dataclass
class StepComparison:
    name: str
    fitted_equal: bool
    output_equal: bool
    a_fitted: str | None
    b_fitted: str | None
    # deep-learning steps: the first layer whose weights differ
    first_divergent_layer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class DiffReport:
    """Everything that differs between two runs."""

    a: str
    b: str
    differences: list[Difference] = field(default_factory=list)
    steps: list[StepComparison] = field(default_factory=list)
    first_divergent_step: str | None = None
    metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)
    predictions_equal: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "differences": [d.to_dict() for d in self.differences],
            "first_divergent_step": self.first_divergent_step,
            "steps": [s.to_dict() for s in self.steps],
            "predictions_equal": self.predictions_equal,
            "metrics": self.metrics,
        }


# -- sections ---------------------------------------------------------------------------------
def diff_data(a: Manifest, b: Manifest) -> list[Difference]:
    if a.data is None or b.data is None:
        return []
    out: list[Difference] = []
    sa = {s.uri: s for s in a.data.sources}
    sb = {s.uri: s for s in b.data.sources}
    for uri in [*sa, *(u for u in sb if u not in sa)]:
        x, y = sa.get(uri), sb.get(uri)
        if x is None or y is None:
            out.append(
                Difference(
                    "data",
                    uri,
                    x.fingerprint if x else None,
                    y.fingerprint if y else None,
                    "source added or removed",
                )
            )
            continue
        if x.fingerprint != y.fingerprint:
            out.append(
                Difference(
                    "data",
                    uri,
                    x.fingerprint,
                    y.fingerprint,
                    describe_table_change(x.table, y.table),
                )
            )
    if not out and a.data.table.get("digest") != b.data.table.get("digest"):
        out.append(
            Difference(
                "data",
                "table",
                a.data.table.get("digest"),
                b.data.table.get("digest"),
                describe_table_change(a.data.table, b.data.table),
            )
        )
    return out


def changed_columns(a_table: dict[str, Any], b_table: dict[str, Any]) -> list[str]:
    ca, cb = a_table.get("columns", {}), b_table.get("columns", {})
    return [c for c in [*ca, *(c for c in cb if c not in ca)] if ca.get(c) != cb.get(c)]


def describe_table_change(a_table: dict[str, Any], b_table: dict[str, Any]) -> str:
    """'columns changed: x, y; rows 344 -> 343' from two table fingerprint records."""
    parts = []
    cols = changed_columns(a_table, b_table)
    if cols:
        parts.append("columns changed: " + ", ".join(cols))
    if a_table.get("rows") != b_table.get("rows"):
        parts.append(f"rows {a_table.get('rows')} -> {b_table.get('rows')}")
    sa, sb = a_table.get("schema", {}), b_table.get("schema", {})
    types = [f"{c} {sa[c]} -> {sb[c]}" for c in sa if c in sb and sa[c] != sb[c]]
    if types:
        parts.append("types changed: " + ", ".join(types))
    return "; ".join(parts) or "same columns and rows; bytes differ (formatting or order)"


def diff_params(a: Manifest, b: Manifest) -> list[Difference]:
    fa = flatten_spec({k: v for k, v in a.spec.items() if k != "seed"})
    fb = flatten_spec({k: v for k, v in b.spec.items() if k != "seed"})
    keys = [*fa, *(k for k in fb if k not in fa)]
    return [
        Difference("params", k, fa.get(k), fb.get(k), _inherited_from(a, b, k) or "")
        for k in keys
        if fa.get(k) != fb.get(k)
    ]


def _inherited_from(a: Manifest, b: Manifest, key: str) -> str | None:
    """'inherited from base.yaml (changed)' when a composed spec took the value from another file."""
    oa = a.spec_sources.origin.get(key) if a.spec_sources else None
    ob = b.spec_sources.origin.get(key) if b.spec_sources else None
    if oa is None and ob is None:
        return None
    if oa == ob:
        fa = {f.path: f.fingerprint for f in a.spec_sources.files} if a.spec_sources else {}
        fb = {f.path: f.fingerprint for f in b.spec_sources.files} if b.spec_sources else {}
        changed = " (that file changed)" if fa.get(oa or "") != fb.get(ob or "") else ""
        return f"inherited from {oa}{changed}"
    return f"set in {oa or 'the spec file'} -> {ob or 'the spec file'}"


def diff_seeds(a: Manifest, b: Manifest) -> list[Difference]:
    out: list[Difference] = []
    if a.spec.get("seed") != b.spec.get("seed"):
        out.append(Difference("seeds", "master seed", a.spec.get("seed"), b.spec.get("seed")))
    if a.seeds and b.seeds:
        ha, hb = a.seeds.hash_seed.get("PYTHONHASHSEED"), b.seeds.hash_seed.get("PYTHONHASHSEED")
        if ha != hb:
            out.append(Difference("seeds", "PYTHONHASHSEED", ha, hb))
        elif ha is None:
            out.append(
                Difference(
                    "seeds",
                    "PYTHONHASHSEED",
                    None,
                    None,
                    "pinned in neither run: string hashing was randomised",
                )
            )
        ra, rb = a.seeds.random_states, b.seeds.random_states
        for k in [*ra, *(k for k in rb if k not in ra)]:
            va, vb = ra.get(k, {}).get("seed"), rb.get(k, {}).get("seed")
            if va != vb and a.spec.get("seed") == b.spec.get("seed"):
                out.append(Difference("seeds", k, va, vb))
    return out


def diff_code(a_code: CodeRecord, b_code: CodeRecord) -> list[Difference]:
    out: list[Difference] = []
    if a_code.commit != b_code.commit:
        out.append(Difference("code", "commit", a_code.commit, b_code.commit))
    if a_code.diff != b_code.diff:
        files = sorted(
            set(a_code.changed_files + a_code.untracked_files)
            ^ set(b_code.changed_files + b_code.untracked_files)
        )
        detail = ("files: " + ", ".join(files)) if files else "uncommitted changes differ"
        out.append(Difference("code", "uncommitted diff", a_code.diff, b_code.diff, detail))
    ma, mb = a_code.local_modules, b_code.local_modules
    for name in [*ma, *(n for n in mb if n not in ma)]:
        x = ma[name].source if name in ma else None
        y = mb[name].source if name in mb else None
        if x != y:
            path = (ma.get(name) or mb[name]).path
            out.append(Difference("code", f"module {name}", x, y, f"source of {path} changed"))
    return out


def _captured(env: EnvironmentRecord) -> bool:
    # a run that failed before its environment was captured has nothing to compare
    return env.fingerprint is not None or bool(env.packages)


def diff_environment(a_env: EnvironmentRecord, b_env: EnvironmentRecord) -> list[Difference]:
    if not _captured(a_env) or not _captured(b_env):
        return []
    out: list[Difference] = []
    for key in ("implementation", "version"):
        x, y = getattr(a_env.python, key), getattr(b_env.python, key)
        if x != y:
            out.append(Difference("environment", f"python {key}", x, y))
    pa, pb = a_env.packages, b_env.packages
    for name in [*pa, *(n for n in pb if n not in pa)]:
        if pa.get(name) != pb.get(name):
            detail = (
                "installed only in B"
                if name not in pa
                else "installed only in A"
                if name not in pb
                else ""
            )
            out.append(
                Difference("environment", f"package {name}", pa.get(name), pb.get(name), detail)
            )

    def pools(env: EnvironmentRecord) -> dict[str, str]:
        return {
            f"{p['internal_api']} {p['version']}": f"{p.get('architecture') or ''} x{p.get('num_threads')}".strip()
            for p in distinct_pools({"thread_pools": env.thread_pools})
        }

    qa, qb = pools(a_env), pools(b_env)
    for name in [*qa, *(n for n in qb if n not in qa)]:
        if qa.get(name) != qb.get(name):
            out.append(
                Difference(
                    "environment",
                    f"thread pool {name}",
                    qa.get(name),
                    qb.get(name),
                    "BLAS/OpenMP library, version, kernel or threads",
                )
            )
    va, vb = a_env.env_vars, b_env.env_vars
    for name in [*va, *(n for n in vb if n not in va)]:
        if name in ("PYTHONHASHSEED",) or name.startswith("_SEEDLINE"):
            continue
        if va.get(name) != vb.get(name):
            out.append(Difference("environment", f"env {name}", va.get(name), vb.get(name)))
    return out


def diff_settings(a: Manifest, b: Manifest) -> list[Difference]:
    sa, sb = a.settings.as_dict(), b.settings.as_dict()
    keys = [*sa, *(k for k in sb if k not in sa)]
    return [Difference("settings", k, sa.get(k), sb.get(k)) for k in keys if sa.get(k) != sb.get(k)]


def diff_platform(a_env: EnvironmentRecord, b_env: EnvironmentRecord) -> list[Difference]:
    if not _captured(a_env) or not _captured(b_env):
        return []
    out: list[Difference] = []
    for key in ("system", "release", "libc"):
        x, y = getattr(a_env.platform, key), getattr(b_env.platform, key)
        if x != y:
            out.append(Difference("platform", key, x, y))
    for key in ("machine", "model", "count"):
        x, y = getattr(a_env.cpu, key), getattr(b_env.cpu, key)
        if x != y:
            out.append(Difference("platform", f"cpu {key}", x, y))
    sa, sb = set(a_env.cpu.simd), set(b_env.cpu.simd)
    if sa != sb:
        out.append(
            Difference(
                "platform",
                "cpu simd",
                sorted(sa - sb),
                sorted(sb - sa),
                "instruction sets only in A / only in B",
            )
        )
    return out


def compare_steps(a: Manifest, b: Manifest) -> tuple[list[StepComparison], str | None]:
    """Per-step comparison and the first step whose fitted state or output differs."""
    rows: list[StepComparison] = []
    first: str | None = None
    sb = {s.name: s for s in b.steps}
    for s in a.steps:
        t = sb.get(s.name)
        row = StepComparison(
            name=s.name,
            fitted_equal=t is not None and t.fitted == s.fitted,
            output_equal=t is not None and t.output == s.output,
            a_fitted=s.fitted,
            b_fitted=t.fitted if t else None,
            first_divergent_layer=first_divergent_layer(s.layers, t.layers)
            if t is not None and s.fitted != t.fitted
            else None,
        )
        rows.append(row)
        if first is None and not (row.fitted_equal and row.output_equal):
            first = s.name
    for t in b.steps:
        if t.name not in {s.name for s in a.steps}:
            rows.append(StepComparison(t.name, False, False, None, t.fitted))
            first = first or t.name
    return rows, first


def diff_manifests(a: Manifest, b: Manifest) -> DiffReport:
    """Explain why run B differs from run A, most likely cause first."""
    report = DiffReport(a=a.run_id, b=b.run_id)
    report.differences = [
        *diff_data(a, b),
        *diff_params(a, b),
        *diff_seeds(a, b),
        *diff_code(a.code, b.code),
        *diff_environment(a.environment, b.environment),
        *diff_settings(a, b),
        *diff_platform(a.environment, b.environment),
    ]
    report.steps, report.first_divergent_step = compare_steps(a, b)
    report.predictions_equal = a.fingerprints.get("predictions") == b.fingerprints.get(
        "predictions"
    )
    for name in [*a.metrics, *(n for n in b.metrics if n not in a.metrics)]:
        x, y = a.metrics.get(name), b.metrics.get(name)
        report.metrics[name] = {
            "a": x,
            "b": y,
            "delta": (y - x) if x is not None and y is not None else None,
        }
    return report
