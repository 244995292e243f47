"""Queries that browse the store: runs filtered, sorted and paginated in the database.

Every run's flattened spec values are indexed in ``run_params`` when it finishes, so a page
of 50 runs out of 10,000, sorted by a metric or filtered by any parameter, is one query,
not 10,000 manifests read. Stored ``seedline check`` reports live here too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import and_, func, select, text
from sqlalchemy.orm import aliased

from seedline.core.errors import SeedlineError
from seedline.records.reading import summaries, tag_conditions
from seedline.records.recording import flatten_spec, new_run_id
from seedline.records.tracking import RunSummary, Store, run_columns, session_rows
from seedline.storage.metadata import CheckReportRow, MetricRow, RunParamRow, RunRow, now_iso

Op = Literal["=", "!=", "<", "<=", ">", ">=", "~"]
OPS: tuple[Op, ...] = ("<=", ">=", "!=", "=", "<", ">", "~")


@dataclass(frozen=True)
class Condition:
    """``name op value``: a filter on a parameter or a metric."""

    name: str
    op: Op
    value: str

    @classmethod
    def parse(cls, text: str) -> Condition:
        for op in OPS:
            name, found, value = text.partition(op)
            if found and name.strip():
                return cls(name.strip(), op, value.strip())
        raise SeedlineError(
            f"a filter must read NAME OP VALUE with OP one of {', '.join(OPS)}; got {text!r}",
            hint="e.g. pipeline.clf.params.n_estimators=200 or accuracy>=0.9",
        )


@dataclass
class RunQuery:
    """One page of the runs table: filters, a sort key, and the page's window."""

    spec: str | None = None
    status: str | None = None
    since: str | None = None  # ISO date or time, inclusive
    until: str | None = None  # ISO date or time, exclusive
    kind: Literal["run", "trial", "reproduction"] | None = None
    sweep: str | None = None
    params: list[Condition] = field(default_factory=list)
    metrics: list[Condition] = field(default_factory=list)
    # KEY -> VALUE, or KEY -> None for any value (records/tags.py)
    tags: dict[str, str | None] = field(default_factory=dict)
    # created | duration | spec | status | metric:NAME | param:NAME
    sort: str = "created"
    descending: bool = True
    offset: int = 0
    limit: int = 50


def _compare(column: Any, op: Op, value: Any) -> Any:
    if op == "=":
        return column == value
    if op == "!=":
        return column != value
    if op == "<":
        return column < value
    if op == "<=":
        return column <= value
    if op == ">":
        return column > value
    if op == ">=":
        return column >= value
    return column.contains(str(value), autoescape=True)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def query_runs(store: Store, q: RunQuery) -> tuple[list[RunSummary], int]:
    """The runs matching ``q`` in its order, the page ``[offset, offset + limit)``, and the total."""
    where: list[Any] = []
    if q.spec:
        where.append(RunRow.spec_name == q.spec)
    if q.status:
        where.append(RunRow.status == q.status)
    if q.since:
        where.append(RunRow.created_at >= q.since)
    if q.until:
        where.append(RunRow.created_at < q.until)
    if q.sweep:
        where.append(RunRow.sweep_id == q.sweep)
    if q.kind == "trial":
        where.append(RunRow.sweep_id.is_not(None))
    elif q.kind == "reproduction":
        where.append(RunRow.parent_run.is_not(None))
    elif q.kind == "run":
        where.append(and_(RunRow.sweep_id.is_(None), RunRow.parent_run.is_(None)))
    stmt = select(RunRow)
    for cond, params in tag_conditions(q.tags):
        stmt = stmt.where(text(cond).bindparams(**params))
    for i, c in enumerate(q.params):
        p = aliased(RunParamRow, name=f"p{i}")
        number = _number(c.value)
        # numbers compare as numbers (200 = 200.0), everything else as its text
        test = (
            _compare(p.number, c.op, number)
            if number is not None and c.op != "~"
            else _compare(p.value, c.op, c.value)
        )
        stmt = stmt.join(p, and_(p.run_id == RunRow.id, p.name == c.name, test))
    for i, c in enumerate(q.metrics):
        m = aliased(MetricRow, name=f"m{i}")
        number = _number(c.value)
        if number is None or c.op == "~":
            raise SeedlineError(
                f"metric filter {c.name}{c.op}{c.value}: a metric compares with a number",
                hint=f"e.g. {c.name}>=0.9",
            )
        stmt = stmt.join(
            m, and_(m.run_id == RunRow.id, m.name == c.name, _compare(m.value, c.op, number))
        )
    stmt = stmt.where(*where)
    orders: list[Any]
    kind, _, name = q.sort.partition(":")
    if kind == "metric" and name:
        sm = aliased(MetricRow, name="sort_metric")
        stmt = stmt.outerjoin(sm, and_(sm.run_id == RunRow.id, sm.name == name))
        orders = [sm.value]
    elif kind == "param" and name:
        sp = aliased(RunParamRow, name="sort_param")
        stmt = stmt.outerjoin(sp, and_(sp.run_id == RunRow.id, sp.name == name))
        orders = [sp.number, sp.value]  # numbers by value, the rest by their text
    else:
        columns = {
            "created": RunRow.id,  # ids sort by creation time, and are unique
            "duration": RunRow.duration_s,
            "spec": RunRow.spec_name,
            "status": RunRow.status,
        }
        if q.sort not in columns:
            raise SeedlineError(
                f"cannot sort runs by {q.sort!r}",
                hint="sort by created, duration, spec, status, metric:NAME or param:NAME",
            )
        orders = [columns[q.sort]]
    stmt = stmt.order_by(*((o.desc() if q.descending else o.asc()).nulls_last() for o in orders))
    stmt = stmt.order_by(RunRow.id.desc())
    with store._session() as s:
        total = int(s.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0)
        rows = list(s.scalars(stmt.offset(max(0, q.offset)).limit(max(1, q.limit))))
        return summaries(session_rows(s), [run_columns(r) for r in rows]), total


def run_params(store: Store, run_ids: list[str]) -> dict[str, dict[str, str | None]]:
    """Run id -> flattened spec values (as text), for the given runs."""
    out: dict[str, dict[str, str | None]] = {r: {} for r in run_ids}
    with store._session() as s:
        for p in s.scalars(select(RunParamRow).where(RunParamRow.run_id.in_(run_ids))):
            out[p.run_id][p.name] = p.value
    return out


def param_variety(store: Store, spec: str | None = None) -> dict[str, int]:
    """Every indexed parameter name and how many distinct values it takes (of ``spec``'s runs)."""
    with store._session() as s:
        stmt = select(RunParamRow.name, func.count(func.distinct(RunParamRow.value)))
        if spec:
            stmt = stmt.join(RunRow, RunRow.id == RunParamRow.run_id).where(
                RunRow.spec_name == spec
            )
        return {str(name): int(n) for name, n in s.execute(stmt.group_by(RunParamRow.name))}


def varying_params(variety: dict[str, int], limit: int = 12) -> list[str]:
    """Parameter names whose value differs between runs (the columns worth showing), most varied first."""
    varied = sorted((n for n in variety.items() if n[1] > 1), key=lambda r: (-r[1], r[0]))
    return [name for name, _ in varied[:limit]]


def param_names(store: Store) -> list[str]:
    with store._session() as s:
        return sorted(s.scalars(select(RunParamRow.name).distinct()))


def metric_names(store: Store) -> list[str]:
    with store._session() as s:
        return sorted(s.scalars(select(MetricRow.name).distinct()))


def spec_names(store: Store) -> list[str]:
    with store._session() as s:
        return sorted(s.scalars(select(RunRow.spec_name).distinct()))


def children_of(store: Store, run_ids: list[str]) -> list[RunSummary]:
    """Runs whose parent is one of ``run_ids`` (reproductions), oldest first."""
    with store._session() as s:
        rows = list(
            s.scalars(select(RunRow).where(RunRow.parent_run.in_(run_ids)).order_by(RunRow.id))
        )
        return summaries(session_rows(s), [run_columns(r) for r in rows])


# -- check reports -------------------------------------------------------------------------------
def save_check_report(
    store: Store, report: dict[str, Any], *, spec_name: str, spec_fingerprint: str
) -> str:
    """Store a ``check`` report (object + index row); returns its id."""
    address = store.objects.put(json.dumps(report, sort_keys=True).encode())
    verdicts: dict[str, int] = {}
    for step in report.get("steps", []):
        verdicts[step["verdict"]] = verdicts.get(step["verdict"], 0) + 1
    report_id = new_run_id()
    with store._transaction() as s:
        s.add(
            CheckReportRow(
                id=report_id,
                spec_name=spec_name,
                spec_fingerprint=spec_fingerprint,
                created_at=now_iso(),
                report_object=address,
                nondeterministic=verdicts.get("nondeterministic", 0) > 0,
                summary=json.dumps(
                    {"verdicts": verdicts, "hygiene": len(report.get("hygiene", []))},
                    sort_keys=True,
                ),
            )
        )
    return report_id


def list_check_reports(store: Store, limit: int = 100) -> list[dict[str, Any]]:
    with store._session() as s:
        rows = list(
            s.scalars(select(CheckReportRow).order_by(CheckReportRow.id.desc()).limit(limit))
        )
    return [
        {
            "id": r.id,
            "spec": r.spec_name,
            "spec_fingerprint": r.spec_fingerprint,
            "created_at": r.created_at,
            "nondeterministic": bool(r.nondeterministic),
            **json.loads(r.summary),
        }
        for r in rows
    ]


def check_report(store: Store, report_id: str) -> dict[str, Any]:
    """A stored check report by id or unique prefix, with its index entry."""
    with store._session() as s:
        rows = list(
            s.scalars(
                select(CheckReportRow)
                .where(CheckReportRow.id.startswith(report_id.lower(), autoescape=True))
                .limit(2)
            )
        )
    if len(rows) != 1:
        raise SeedlineError(
            f"no check report matches {report_id!r}"
            if not rows
            else f"check report prefix {report_id!r} is ambiguous",
            hint="'seedline ui' lists the stored check reports on its Check page",
        )
    r = rows[0]
    return {
        "id": r.id,
        "spec": r.spec_name,
        "spec_fingerprint": r.spec_fingerprint,
        "created_at": r.created_at,
        "report": json.loads(store.objects.get(r.report_object)),
    }


__all__ = [
    "Condition",
    "RunQuery",
    "check_report",
    "children_of",
    "flatten_spec",
    "list_check_reports",
    "metric_names",
    "param_names",
    "param_variety",
    "query_runs",
    "run_params",
    "save_check_report",
    "spec_names",
    "varying_params",
]
