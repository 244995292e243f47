"""Run tracking: the ``.seedline/`` store of runs, manifests and models."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from seedline.core.errors import StoreError
from seedline.records import reading
from seedline.records.reading import RunSummary, error_column, process_alive
from seedline.records.recording import Execute, RunRecords
from seedline.records.recording import new_run_id as new_run_id  # where callers found it
from seedline.storage.config import resolve_store
from seedline.storage.embedded import (
    CONFIG_FILENAME,
    DATABASE_ENV,
    OBJECTS_ENV,
    STORE_DIRNAME,
    find_project,
)
from seedline.storage.metadata import (
    MetricRow,
    RunRow,
    RunTagRow,
    make_session_factory,
    open_engine,
)
from seedline.storage.objects import ObjectStore, open_object_store
from seedline.storage.urls import normalise_database_url, redact_url

if TYPE_CHECKING:  # pydantic's models load when a manifest is read, not to list runs
    from seedline.records.manifest import Manifest

# functions naming objects that must survive maintenance (the registry adds one)
_REFERENCE_HOOKS: list[Callable[[Store], set[str]]] = []


def _make_store_dir(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    ignore = root / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# seedline's store: runs, manifests and models\n*\n")


class Store(RunRecords):
    """A project's store: metadata database + object store, found at ``<project>/.seedline``.

    ``root`` is the local store folder; the database and the objects live there unless
    ``seedline.toml`` or the environment (``SEEDLINE_DATABASE_URL``, ``SEEDLINE_OBJECTS_URL``)
    point elsewhere, or URLs are given here. The records layer owns every SQL query: nothing
    outside it gets a session.
    """

    def __init__(
        self,
        root: str | Path,
        database_url: str | None = None,
        *,
        objects_url: str | None = None,
        objects_options: Mapping[str, Any] | None = None,
        project_root: str | Path | None = None,
    ) -> None:
        self.root = Path(root)
        where = resolve_store(self.root, project_root)
        self.database_url = normalise_database_url(database_url or where.database_url)
        self.objects_url = objects_url or where.objects_url
        self.objects_options: dict[str, Any] = dict(
            where.objects_options if objects_options is None else objects_options
        )
        self.objects: ObjectStore = open_object_store(self.objects_url, self.objects_options)
        self.engine = open_engine(self.database_url)
        self._sessions = make_session_factory(self.engine)

    @classmethod
    def open(cls, project_root: str | Path, *, create: bool = True) -> Store:
        root = Path(project_root) / STORE_DIRNAME
        if not root.exists():
            if not create and not (Path(project_root) / CONFIG_FILENAME).is_file():
                raise StoreError(
                    f"no seedline store at {root}",
                    hint="run 'seedline init' or 'seedline run' here first",
                )
            _make_store_dir(root)
        return cls(root)

    @classmethod
    def find(cls, start: str | Path = ".") -> Store:
        """The store of the project containing ``start`` (searched upwards, like git).

        A folder with ``.seedline/`` or with a ``seedline.toml`` (a clone of a project that
        uses a team store) is a project root. Outside any project, a store given whole by
        the environment (``SEEDLINE_DATABASE_URL`` and ``SEEDLINE_OBJECTS_URL``) is used, so
        a model serves or predicts on a machine that never saw the project; nothing is
        written into ``start`` then.
        """
        here = Path(start).resolve()
        project = find_project(here)
        if project is not None:
            if not (project / STORE_DIRNAME).is_dir():
                _make_store_dir(project / STORE_DIRNAME)  # a clone with only seedline.toml
            return cls(project / STORE_DIRNAME)
        given = [v for v in (DATABASE_ENV, OBJECTS_ENV) if os.environ.get(v)]
        if len(given) == 2:
            return cls(here / STORE_DIRNAME, project_root=here)
        missing = [v for v in (DATABASE_ENV, OBJECTS_ENV) if v not in given]
        raise StoreError(
            f"no {STORE_DIRNAME}/ store in {here} or any parent folder"
            + (f", and only {given[0]} is set" if given else ""),
            hint=(
                f"set {missing[0]} too, to use a store without a project folder, "
                "or cd into a seedline project"
                if given
                else f"cd into a seedline project, run 'seedline init' to start one, or set "
                f"{DATABASE_ENV} and {OBJECTS_ENV} to use a team store from any folder"
            ),
        )

    @contextlib.contextmanager
    def _reader(self) -> Iterator[reading.Rows]:
        """The shared read queries' way in (records/reading.py): one session for all they read."""
        with self._sessions() as s:
            yield session_rows(s)

    @contextlib.contextmanager
    def _executing(self) -> Iterator[Execute]:
        """One transaction through a SQLAlchemy session (records layer only)."""
        with self._sessions.begin() as s:
            yield lambda sql, params: s.execute(text(sql), params).rowcount  # type: ignore[attr-defined]

    def _session(self) -> Session:
        """A read session on the metadata database (records layer only)."""
        return self._sessions()

    def _transaction(self) -> AbstractContextManager[Session]:
        """A session whose work commits on success and rolls back on error (records layer only)."""
        return self._sessions.begin()

    def describe(self) -> dict[str, str]:
        """Where the database and the objects are, with passwords redacted (safe to print)."""
        return {"database": redact_url(self.database_url), "objects": self.objects.url}

    def close(self) -> None:
        self.engine.dispose()

    # -- interrupted runs ------------------------------------------------------------------
    def mark_interrupted(self) -> list[str]:
        """Mark ``running`` runs of this host whose process is gone as ``interrupted``; returns their ids.

        Only runs started on this host can be checked (a pid means nothing elsewhere); a
        run begun on another machine stays ``running`` until a process on that machine
        looks, or until it is removed with ``remove_interrupted_runs(older_than_s=...)``.
        """
        host = socket.gethostname()
        with self._reader() as rows:
            running = reading.running_on(rows, host)
        gone = [rid for rid, pid, started in running if pid and not process_alive(pid, started)]
        if gone:
            with self._sessions.begin() as s:
                for rid in gone:
                    row = s.get(RunRow, rid)
                    # a finish_run that raced this check wins: only a still-running row changes
                    if row is not None and row.status == "running":
                        row.status = "interrupted"
                        row.error = error_column(
                            {
                                "phase": "run",
                                "type": "Interrupted",
                                "message": f"interrupted: its process (pid {row.pid} on {host}) is gone",
                            }
                        )
        return gone

    def remove_interrupted_runs(self, *, older_than_s: float | None = None) -> list[str]:
        """Delete the records of interrupted runs (they have no manifest and no model); returns their ids.

        With ``older_than_s``, runs still ``running`` that began longer ago than that are
        treated as interrupted too: the way to clean runs begun on another host.
        """
        self.mark_interrupted()
        with self._sessions.begin() as s:
            q = select(RunRow).where(RunRow.status == "interrupted")
            rows = list(s.scalars(q))
            if older_than_s is not None:
                cutoff = _iso_before(older_than_s)
                rows += list(
                    s.scalars(
                        select(RunRow).where(RunRow.status == "running", RunRow.created_at < cutoff)
                    )
                )
            ids = [r.id for r in rows if r.manifest_object is None]
            if ids:
                s.execute(delete(MetricRow).where(MetricRow.run_id.in_(ids)))
                s.execute(delete(RunTagRow).where(RunTagRow.run_id.in_(ids)))
                s.execute(delete(RunRow).where(RunRow.id.in_(ids)))
        return ids

    # -- reading ---------------------------------------------------------------------------
    def resolve(self, ref: str) -> str:
        """A full run id from an id or a unique prefix, as in git."""
        with self._reader() as rows:
            return reading.resolve(rows, ref)

    def list_runs(
        self,
        limit: int | None = None,
        sweep: str | None = None,
        tags: Mapping[str, str | None] | None = None,
    ) -> list[RunSummary]:
        """Runs, newest first; ``tags`` keeps runs having every tag (a None value: any value)."""
        self.mark_interrupted()
        with self._reader() as rows:
            return reading.list_runs(rows, limit=limit, sweep=sweep, tags=tags)

    def run_summary(self, ref: str) -> RunSummary:
        """One run's row (also for runs that have no manifest: running or interrupted)."""
        run_id = self.resolve(ref)
        self.mark_interrupted()
        with self._reader() as rows:
            return reading.run_summary(rows, run_id)

    def manifest(self, ref: str) -> Manifest:
        run_id = self.resolve(ref)
        with self._reader() as rows:
            address, status = reading.manifest_object(rows, run_id)
        if address is None:
            if status == "running" and run_id in self.mark_interrupted():
                status = "interrupted"
            raise StoreError(
                f"run {run_id} has no manifest (status {status!r}): "
                + (
                    "it is still running"
                    if status == "running"
                    else "it was interrupted before it finished"
                ),
                hint="the process that made it was killed; run the spec again"
                if status != "running"
                else "wait for it to finish",
            )
        from seedline.records.manifest import Manifest

        return Manifest.from_json(self.objects.get(address))

    def run_objects(self) -> list[RunObjects]:
        """Every run's manifest and model object (None where a run has none)."""
        with self._sessions() as s:
            rows = list(s.execute(select(RunRow.id, RunRow.manifest_object, RunRow.model_object)))
        return [RunObjects(rid, manifest, model) for rid, manifest, model in rows]

    def referenced_objects(self) -> set[str]:
        """Every object that stored runs and registered models need; maintenance never removes them.

        A manifest that cannot be read is skipped here (its run's own objects are still
        kept); ``seedline fsck`` reports it.
        """
        from seedline.records.references import collect

        return collect(self, include_cache=False).addresses

    def extra_references(self) -> set[str]:
        """Objects referenced outside runs (e.g. by the model registry); maintenance keeps them."""
        import seedline.records.registry  # noqa: F401  (registers the registry's references)

        refs: set[str] = set()
        for hook in _REFERENCE_HOOKS:
            refs |= hook(self)
        return refs

    def model_bytes(self, ref: str) -> bytes:
        m = self.manifest(ref)
        address = m.artifacts.get("model")
        if not address:
            raise StoreError(f"run {m.run_id} has no saved model (status {m.status!r})")
        return self.objects.get(address)


@dataclass(frozen=True)
class RunObjects:
    """The objects a run's record points at directly."""

    run_id: str
    manifest_object: str | None
    model_object: str | None


def session_rows(session: Session) -> reading.Rows:
    """records/reading.py's queries run through ``session`` (records layer only)."""
    return lambda sql, params: [tuple(row) for row in session.execute(text(sql), params)]


def run_columns(r: RunRow) -> list[Any]:
    """A run's row as the shared queries read it (``reading.RUN_COLUMNS``; records layer only)."""
    return [getattr(r, c) for c in reading.RUN_COLUMNS]


def _iso_before(seconds: float) -> str:
    import datetime as dt

    t = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")
