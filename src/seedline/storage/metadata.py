"""The metadata database (SQLite by default, any SQLAlchemy URL for teams), its tables and migrations."""

from __future__ import annotations

import datetime as dt
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
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from seedline.core.errors import StoreError

HEAD_REVISION = "0007"
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

    __table_args__ = (Index("ix_runs_created", "created_at"),)


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
    # WAL lets readers work while a run writes; busy_timeout makes concurrent writers wait, not fail
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def open_engine(url: str) -> Engine:
    """Connect, and bring the schema to the head revision with Alembic when it is behind."""
    try:
        engine = create_engine(url, future=True)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        if current_revision(engine) != HEAD_REVISION:
            upgrade(engine)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot open the metadata database {url}: {exc}") from exc
    return engine


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
        return str(row[0]) if row else None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the Alembic migrations shipped in the package."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


__all__ = [
    "HEAD_REVISION",
    "MetricRow",
    "RunRow",
    "make_session_factory",
    "now_iso",
    "open_engine",
    "select",
]
