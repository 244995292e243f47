"""The metadata database (SQLite by default, any SQLAlchemy URL for teams), its tables and migrations."""

from __future__ import annotations

import atexit
import contextlib
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    create_engine,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from seedline.core.errors import StoreError
from seedline.storage.embedded import HEAD_REVISION, SQLITE_PRAGMAS, now_iso, sqlite_too_old
from seedline.storage.urls import normalise_database_url, redact_text, redact_url

MIGRATIONS = Path(__file__).with_name("migrations")


class Base(DeclarativeBase):
    pass


class RunRow(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    spec_name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[str] = mapped_column(String(40))
    finished_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    spec_fingerprint: Mapped[str] = mapped_column(String(100))
    data_fingerprint: Mapped[str | None] = mapped_column(String(100), nullable=True)
    model_fingerprint: Mapped[str | None] = mapped_column(String(100), nullable=True)
    predictions_fingerprint: Mapped[str | None] = mapped_column(String(100), nullable=True)
    manifest_object: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model_object: Mapped[str | None] = mapped_column(String(64), nullable=True)
    parent_run: Mapped[str | None] = mapped_column(String(32), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    sweep_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # the process making the run, so a run whose process died can be told from one still going
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    process_started: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (
        Index("ix_runs_created", "created_at"),
        Index("ix_runs_sweep", "sweep_id"),
        Index("ix_runs_status", "status"),
    )


class SweepRow(Base):
    __tablename__ = "sweeps"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    spec_name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[str] = mapped_column(String(40))
    finished_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    search: Mapped[str] = mapped_column(String(20))
    metric: Mapped[str] = mapped_column(String(100))
    params: Mapped[str] = mapped_column(Text)
    settings: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    trials: Mapped[int] = mapped_column(Integer)
    best_run: Mapped[str | None] = mapped_column(String(32), nullable=True)


class MetricRow(Base):
    __tablename__ = "metrics"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[float] = mapped_column(Float)


class RunParamRow(Base):
    """One flattened spec value of a run (``pipeline.clf.params.C``): what the UI filters and sorts by."""

    __tablename__ = "run_params"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(300), primary_key=True)
    value: Mapped[str | None] = mapped_column(Text, nullable=True)
    number: Mapped[float | None] = mapped_column(Float, nullable=True)


class RunTagRow(Base):
    """One tag of a run (``team=vision``): metadata about the run, never part of its manifest."""

    __tablename__ = "run_tags"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_run_tags_key_value", "key", "value"),)


class CheckReportRow(Base):
    """One stored ``seedline check`` report: the report itself is an object."""

    __tablename__ = "check_reports"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    spec_name: Mapped[str] = mapped_column(String(200))
    spec_fingerprint: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[str] = mapped_column(String(40))
    report_object: Mapped[str] = mapped_column(String(64))
    nondeterministic: Mapped[bool] = mapped_column(Boolean)
    summary: Mapped[str] = mapped_column(Text)


class CacheRow(Base):
    __tablename__ = "cache_entries"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    step: Mapped[str] = mapped_column(String(200))
    cls: Mapped[str] = mapped_column(String(300))
    fitted_object: Mapped[str] = mapped_column(String(64))
    output_object: Mapped[str | None] = mapped_column(String(64), nullable=True)
    fitted_fingerprint: Mapped[str] = mapped_column(String(100))
    output_fingerprint: Mapped[str | None] = mapped_column(String(100), nullable=True)
    output_shape: Mapped[str | None] = mapped_column(String(100), nullable=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[str] = mapped_column(String(40))
    last_used_at: Mapped[str] = mapped_column(String(40))
    hits: Mapped[int] = mapped_column(Integer, default=0)
    # the step's name in the model file ``fitted_object`` (None: a file of the step alone)
    fitted_step: Mapped[str | None] = mapped_column(String(200), nullable=True)

    __table_args__ = (Index("ix_cache_last_used", "last_used_at"),)


class ModelVersionRow(Base):
    """One registered version of a named model: the run that made it and what serving needs."""

    __tablename__ = "model_versions"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    created_at: Mapped[str] = mapped_column(String(40))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    model_object: Mapped[str] = mapped_column(String(64))
    manifest_object: Mapped[str] = mapped_column(String(64))
    probe_object: Mapped[str | None] = mapped_column(String(64), nullable=True)
    probe_input_object: Mapped[str | None] = mapped_column(String(64), nullable=True)
    input_schema: Mapped[str] = mapped_column(Text)
    model_fingerprint: Mapped[str | None] = mapped_column(String(100), nullable=True)
    predictions_fingerprint: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # JSON list of the run's own project-local classes that registration decided to trust
    trusted_local: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_model_versions_run", "run_id"),)


class ModelAliasRow(Base):
    """A movable name for one version of a model (``churn@production``)."""

    __tablename__ = "model_aliases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    alias: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[str] = mapped_column(String(40))


class ParityCheckRow(Base):
    """One parity check before serving, batch prediction or export; overrides are kept here."""

    __tablename__ = "parity_checks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[str] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(40))
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    run_id: Mapped[str] = mapped_column(String(32))
    verdict: Mapped[str] = mapped_column(String(16))
    overridden: Mapped[bool] = mapped_column(Boolean, default=False)
    detail: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_parity_checks_run", "run_id"),)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    for pragma in SQLITE_PRAGMAS:
        cur.execute(pragma)
    cur.close()


# any constant works: it names seedline's migration lock among the database's advisory locks
_PG_MIGRATION_LOCK = 0x5EED_11E0


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None for an in-memory database or another backend)."""
    parsed = make_url(url)
    if (
        parsed.get_backend_name() != "sqlite"
        or not parsed.database
        or parsed.database == ":memory:"
    ):
        return None
    return Path(parsed.database)


# every engine open_engine made that is still alive; closed at exit (see _close_open_engines)
_OPEN_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


@atexit.register
def _close_open_engines() -> None:
    """Close the pooled connections of every engine still open when the process exits.

    A process that ends without freeing its objects (``cli.launch.leave``) would otherwise
    leave SQLite's write-ahead log beside the database, uncheckpointed, for the next
    opener to recover; a PostgreSQL server would see its connections drop.
    """
    for engine in list(_OPEN_ENGINES):
        engine.dispose()


def open_engine(url: str) -> Engine:
    """Connect, and bring the schema to the head revision with Alembic when it is behind.

    The schema is created or migrated by one process at a time (a file lock beside a SQLite
    database, an advisory lock on PostgreSQL), so many processes opening a new store at once
    all succeed.
    """
    url = normalise_database_url(url)
    try:
        kwargs: dict[str, Any] = {}
        if url.startswith("postgresql"):
            kwargs["pool_pre_ping"] = True
        engine = create_engine(url, **kwargs)
        if engine.dialect.name == "sqlite":
            too_old = sqlite_too_old()
            if too_old:
                raise StoreError(
                    f"cannot open the metadata database {redact_url(url)}: {too_old}",
                    hint="use a Python built with a newer SQLite (any current python.org or "
                    "distribution build), or a PostgreSQL store",
                )
            path = sqlite_path(url)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            event.listen(engine, "connect", _sqlite_pragmas)
        _OPEN_ENGINES.add(engine)
        if current_revision(engine) != HEAD_REVISION:
            _migrate_once(engine, url)
    except ModuleNotFoundError as exc:
        raise StoreError(
            f"cannot open the metadata database {redact_url(url)}: its driver {exc.name!r} is not installed",
            hint="install the team-store extra: pip install 'seedline[team]'",
        ) from None
    except (SQLAlchemyError, OSError) as exc:
        raise StoreError(
            f"cannot open the metadata database {redact_url(url)}: "
            f"{redact_text(str(getattr(exc, 'orig', None) or exc), url)}",
            hint="check that the database server is running and the URL, user and password are right",
        ) from None
    return engine


def _migrate_once(engine: Engine, url: str) -> None:
    if engine.dialect.name == "sqlite":
        if current_revision(engine) == HEAD_REVISION:
            return  # the common case: nothing to migrate, no lock to take
        path = sqlite_path(url)
        from filelock import FileLock  # asyncio with it: only when a database may need creating

        lock = FileLock(str(path) + ".lock") if path is not None else None
        with lock if lock is not None else contextlib.nullcontext():
            # another process may have migrated while this one waited for the lock
            if current_revision(engine) != HEAD_REVISION:
                upgrade(engine)
        return
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # held until this transaction ends; PostgreSQL's DDL is transactional, so the
            # migration and its lock commit together
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        if current_revision(conn) != HEAD_REVISION:
            _run_alembic(conn, "head")


def current_revision(bind: Engine | Connection) -> str | None:
    def read(conn: Connection) -> str | None:
        if not inspect(conn).has_table("alembic_version"):
            return None
        row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
        return str(row[0]) if row else None

    if isinstance(bind, Connection):
        return read(bind)
    with bind.connect() as conn:
        return read(conn)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the Alembic migrations shipped in the package."""
    with engine.begin() as conn:
        _run_alembic(conn, revision)


def _run_alembic(conn: Connection, revision: str) -> None:
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    found = current_revision(conn)
    if found is not None:
        known = {script.revision for script in ScriptDirectory.from_config(cfg).walk_revisions()}
        if found not in known:  # Alembic would fail with a traceback; nothing is changed
            from seedline.core.version import __version__

            raise StoreError(
                f"the metadata database is at schema revision {found!r}, which seedline "
                f"{__version__} does not know (it knows up to {HEAD_REVISION!r}): a newer "
                "seedline migrated it",
                hint="upgrade seedline to the version the rest of your team uses; "
                "the store was left as it is",
            )
    command.upgrade(cfg, revision)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


__all__ = [
    "HEAD_REVISION",
    "MetricRow",
    "RunRow",
    "RunTagRow",
    "make_session_factory",
    "now_iso",
    "open_engine",
    "select",
]
