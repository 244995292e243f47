"""The store's read queries that listings print, written once as SQL text any database runs.

``seedline runs``, ``show``, ``models``, ``sweeps`` and ``cache ls`` read a few rows. These
queries take a :data:`Rows` function (SQL text with ``:name`` parameters in, rows out), so
the same query serves the :class:`~seedline.records.tracking.Store` (through a SQLAlchemy
session, on SQLite or PostgreSQL) and the command line's quick path, which reads an
embedded store with the standard library's :mod:`sqlite3` and never imports SQLAlchemy or
pydantic (``storage.embedded``, ``cli.listing``). Nothing here writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from seedline.core.errors import RunNotFoundError

# the manifest format this seedline writes and reads (records.manifest.Manifest.schema_version)
MANIFEST_SCHEMA_VERSION = 1

# SQL text with :name parameters -> the rows it selects
Rows = Callable[[str, Mapping[str, Any]], Sequence[Sequence[Any]]]

# an IN (...) list binds one parameter per value; stay far below every database's limit
_IN_CHUNK = 500
_ERROR_KEYS = ("phase", "type", "message")
RUN_COLUMNS = (
    "id",
    "spec_name",
    "status",
    "created_at",
    "duration_s",
    "model_fingerprint",
    "predictions_fingerprint",
    "parent_run",
    "error",
    "sweep_id",
)


@dataclass(frozen=True)
class RunSummary:
    """One row of ``seedline runs``."""

    run_id: str
    spec_name: str
    status: str
    created_at: str
    duration_s: float | None
    metrics: dict[str, float]
    model_fingerprint: str | None
    predictions_fingerprint: str | None
    parent_run: str | None
    # the same object as the manifest's error, less the traceback: {phase, type, message}
    error: dict[str, Any] | None
    sweep_id: str | None = None
    # KEY=VALUE labels (records/tags.py): not part of the manifest
    tags: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def error_column(error: dict[str, Any] | None) -> str | None:
    """A run's error as stored in its row: JSON of phase, type and message (no traceback)."""
    if not error:
        return None
    return json.dumps({k: error.get(k) for k in _ERROR_KEYS}, sort_keys=True)


def error_object(text: str | None) -> dict[str, Any] | None:
    """The stored error column back as an object; rows written before it was JSON hold the message only."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(value, dict):
        return {k: value.get(k) for k in _ERROR_KEYS}
    return {"phase": None, "type": None, "message": text}


def summary_of(
    row: Sequence[Any], metrics: dict[str, float], tags: dict[str, str] | None = None
) -> RunSummary:
    """A RunSummary from a run's columns in :data:`RUN_COLUMNS` order, its metrics and tags."""
    rid, spec, status, created, duration, model, predictions, parent, error, sweep = row
    return RunSummary(
        run_id=rid,
        spec_name=spec,
        status=status,
        created_at=created,
        duration_s=duration,
        metrics=metrics,
        model_fingerprint=model,
        predictions_fingerprint=predictions,
        parent_run=parent,
        error=error_object(error),
        sweep_id=sweep,
        tags=dict(tags or {}),
    )


def _each_chunk(rows: Rows, sql: str, values: Iterable[Any]) -> list[Sequence[Any]]:
    """``sql`` (holding ``{ids}`` where the IN list goes) run over ``values`` in chunks."""
    values = list(values)
    out: list[Sequence[Any]] = []
    for start in range(0, len(values), _IN_CHUNK):
        chunk = values[start : start + _IN_CHUNK]
        names = [f"v{i}" for i in range(len(chunk))]
        out += rows(
            sql.format(ids=", ".join(":" + n for n in names)), dict(zip(names, chunk, strict=True))
        )
    return out


def metrics_of(rows: Rows, run_ids: Iterable[str]) -> dict[str, dict[str, float]]:
    """Run id -> its metrics, by name, for the given runs (runs without metrics are absent)."""
    out: dict[str, dict[str, float]] = {}
    sql = "SELECT run_id, name, value FROM metrics WHERE run_id IN ({ids}) ORDER BY run_id, name"
    for run_id, name, value in _each_chunk(rows, sql, run_ids):
        out.setdefault(run_id, {})[name] = value
    return out


def read_tags(rows: Rows, run_ids: Iterable[str]) -> dict[str, dict[str, str]]:
    """Run id -> its tags (sorted by key), for the given runs (every one present)."""
    run_ids = list(run_ids)
    out: dict[str, dict[str, str]] = {r: {} for r in run_ids}
    sql = "SELECT run_id, key, value FROM run_tags WHERE run_id IN ({ids}) ORDER BY run_id, key"
    for run_id, key, value in _each_chunk(rows, sql, run_ids):
        out.setdefault(run_id, {})[key] = value
    return out


def tag_conditions(tags: Mapping[str, str | None]) -> list[tuple[str, dict[str, str]]]:
    """One SQL condition on ``runs`` (with its parameters) per tag a run must have; None: any value."""
    out = []
    for i, (key, value) in enumerate(sorted(tags.items())):
        cond = f"EXISTS (SELECT 1 FROM run_tags t{i} WHERE t{i}.run_id = runs.id AND t{i}.key = :tag_key{i}"
        params = {f"tag_key{i}": key}
        if value is not None:
            cond += f" AND t{i}.value = :tag_value{i}"
            params[f"tag_value{i}"] = value
        out.append((cond + ")", params))
    return out


def summaries(rows: Rows, run_rows: Sequence[Sequence[Any]]) -> list[RunSummary]:
    """RunSummaries of runs' columns (in :data:`RUN_COLUMNS` order), with metrics and tags read."""
    ids = [r[0] for r in run_rows]
    metrics, tags = metrics_of(rows, ids), read_tags(rows, ids)
    return [summary_of(r, metrics.get(r[0], {}), tags.get(r[0])) for r in run_rows]


def list_runs(
    rows: Rows,
    *,
    limit: int | None = None,
    sweep: str | None = None,
    tags: Mapping[str, str | None] | None = None,
) -> list[RunSummary]:
    """Runs, newest first; ``tags`` keeps runs having every tag (a None value: any value)."""
    where: list[str] = []
    params: dict[str, Any] = {}
    for cond, values in tag_conditions(tags or {}):
        where.append(cond)
        params.update(values)
    if sweep is not None:
        where.append("sweep_id = :sweep")
        params["sweep"] = sweep
    sql = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC"
    if limit:
        sql += " LIMIT :limit"
        params["limit"] = int(limit)
    return summaries(rows, rows(sql, params))


def resolve(rows: Rows, ref: str) -> str:
    """A full run id from an id or a unique prefix, as in git."""
    ref = ref.strip().lower()
    if not ref:
        raise RunNotFoundError("empty run id")
    # '/' escapes LIKE's wildcards: a prefix matches only itself
    pattern = ref.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"
    ids = [
        r[0]
        for r in rows(
            "SELECT id FROM runs WHERE id LIKE :pattern ESCAPE '/' ORDER BY id LIMIT 11",
            {"pattern": pattern},
        )
    ]
    if len(ids) == 1:
        return str(ids[0])
    if not ids:
        raise RunNotFoundError(
            f"no run matches {ref!r}", hint="'seedline runs' lists the runs in this store"
        )
    raise RunNotFoundError(
        f"run prefix {ref!r} is ambiguous: it matches {', '.join(ids[:10])}{' ...' if len(ids) > 10 else ''}",
        candidates=ids,
        hint="type more characters of the id",
    )


def run_summary(rows: Rows, run_id: str) -> RunSummary:
    """One run's row, metrics and tags (the id must exist: see :func:`resolve`)."""
    found = rows(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE id = :id", {"id": run_id})
    return summaries(rows, found)[0]


def manifest_object(rows: Rows, run_id: str) -> tuple[str | None, str]:
    """A run's manifest object (None while running or once interrupted) and its status."""
    found = rows("SELECT manifest_object, status FROM runs WHERE id = :id", {"id": run_id})
    address, status = found[0]
    return address, status


def running_on(rows: Rows, host: str) -> list[tuple[str, int, float | None]]:
    """Runs still marked running that a process on ``host`` began: (id, pid, process start)."""
    sql = (
        "SELECT id, pid, process_started FROM runs "
        "WHERE status = 'running' AND host = :host AND pid IS NOT NULL"
    )
    return [(r[0], int(r[1]), r[2]) for r in rows(sql, {"host": host})]


def process_alive(pid: int, started: float | None) -> bool:
    """Whether the process that began a run still runs (a reused pid has another start time)."""
    import psutil  # only when some run is marked running

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) < 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # cannot tell (e.g. no permission): never call a live run interrupted


def list_models(rows: Rows) -> list[dict[str, Any]]:
    """One entry per model name: latest version, number of versions, aliases, latest run."""
    versions: dict[str, list[tuple[int, str, str]]] = {}
    sql = "SELECT name, version, run_id, created_at FROM model_versions ORDER BY name, version"
    for name, version, run_id, created in rows(sql, {}):
        versions.setdefault(name, []).append((int(version), run_id, created))
    numbers = {name: {v for v, _, _ in vs} for name, vs in versions.items()}
    aliases: dict[str, dict[str, int]] = {}
    for name, alias, version in rows("SELECT name, alias, version FROM model_aliases", {}):
        if int(version) in numbers.get(name, set()):  # an alias of an existing version only
            aliases.setdefault(name, {})[alias] = int(version)
    return [
        {
            "name": name,
            "latest_version": vs[-1][0],
            "versions": len(vs),
            "aliases": aliases.get(name, {}),
            "latest_run": vs[-1][1],
            "updated_at": vs[-1][2],
        }
        for name, vs in versions.items()
    ]


SWEEP_COLUMNS = (
    "id",
    "spec_name",
    "created_at",
    "finished_at",
    "search",
    "metric",
    "params",
    "settings",
    "status",
    "trials",
    "best_run",
)


@dataclass(frozen=True)
class SweepRecord:
    """A stored sweep."""

    sweep_id: str
    spec_name: str
    created_at: str
    finished_at: str | None
    search: str
    metric: str
    params: dict[str, Any]
    settings: dict[str, Any]
    status: str
    trials: int
    best_run: str | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> SweepRecord:
        """From a sweep's columns in :data:`SWEEP_COLUMNS` order."""
        sid, spec, created, finished, search, metric, params, settings, status, trials, best = row
        return cls(
            sweep_id=sid,
            spec_name=spec,
            created_at=created,
            finished_at=finished,
            search=search,
            metric=metric,
            params=json.loads(params),
            settings=json.loads(settings),
            status=status,
            trials=int(trials),
            best_run=best,
        )

    def to_dict(self) -> dict[str, Any]:
        """The shape ``seedline sweeps --json`` prints."""
        return {
            "sweep_id": self.sweep_id,
            "spec": self.spec_name,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "search": self.search,
            "metric": self.metric,
            "params": self.params,
            "settings": self.settings,
            "status": self.status,
            "trials": self.trials,
            "best_run": self.best_run,
        }


def list_sweeps(rows: Rows) -> list[SweepRecord]:
    """Every sweep, newest first."""
    sql = f"SELECT {', '.join(SWEEP_COLUMNS)} FROM sweeps ORDER BY id DESC"
    return [SweepRecord.from_row(r) for r in rows(sql, {})]


@dataclass(frozen=True)
class CacheEntry:
    """One cached step: its key, the objects holding its fitted state and output, and its use.

    ``fitted_step``: the step's name inside ``fitted_object`` when that is the model file
    of the run that stored the entry (the step is not written a second time); None when
    ``fitted_object`` is a file of the step alone.
    """

    key: str
    step: str
    cls: str
    fitted_object: str
    output_object: str | None
    fitted_fingerprint: str
    output_fingerprint: str | None
    output_shape: str | None
    size_bytes: int
    created_at: str
    last_used_at: str
    hits: int = 0
    fitted_step: str | None = None

    @property
    def objects(self) -> list[str]:
        return [x for x in (self.fitted_object, self.output_object) if x]

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> CacheEntry:
        """From an entry's columns in field order (:data:`CACHE_COLUMNS`)."""
        values = dict(zip(CACHE_COLUMNS, row, strict=True))
        values["size_bytes"] = int(values["size_bytes"])
        values["hits"] = int(values["hits"] or 0)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The fields ``seedline cache ls --json`` shows."""
        return {
            "key": self.key,
            "step": self.step,
            "class": self.cls,
            "size_bytes": self.size_bytes,
            "hits": self.hits,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
            "output_shape": self.output_shape,
            # where the fitted state is: the run's model file, or a file of the step alone
            "fitted_in": "model" if self.fitted_step is not None else "file",
        }


CACHE_COLUMNS = tuple(CacheEntry.__dataclass_fields__)


def list_cache_entries(rows: Rows) -> list[CacheEntry]:
    """Every step-cache entry, most recently used first."""
    sql = f"SELECT {', '.join(CACHE_COLUMNS)} FROM cache_entries ORDER BY last_used_at DESC, key"
    return [CacheEntry.from_row(r) for r in rows(sql, {})]


__all__ = [
    "CACHE_COLUMNS",
    "RUN_COLUMNS",
    "SWEEP_COLUMNS",
    "CacheEntry",
    "Rows",
    "RunSummary",
    "SweepRecord",
    "error_column",
    "error_object",
    "list_cache_entries",
    "list_models",
    "list_runs",
    "list_sweeps",
    "manifest_object",
    "metrics_of",
    "process_alive",
    "read_tags",
    "resolve",
    "run_summary",
    "running_on",
    "summaries",
    "summary_of",
    "tag_conditions",
]
