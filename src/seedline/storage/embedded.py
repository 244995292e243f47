"""The embedded store's names and layout, and a read-only way into it with the standard library alone.

A project's store is ``.seedline/`` (``metadata.db`` + ``objects/``) unless ``seedline.toml``
or the environment put it elsewhere. The commands that only list (``seedline runs``,
``show``, ``models``, ``sweeps``, ``cache ls``) print a few rows; importing SQLAlchemy and
pydantic to read them costs more than everything else they do. :func:`open_embedded`
finds the project as :meth:`records.tracking.Store.find` does and opens its database with
:mod:`sqlite3`, read-only, when nothing could make the full path answer differently: no
``seedline.toml``, no store in the environment, a database file that exists and whose
schema is already at :data:`HEAD_REVISION`. Otherwise it answers None, and the caller takes
the full path (which creates or migrates the database, or explains what is wrong).
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

STORE_DIRNAME = ".seedline"
CONFIG_FILENAME = "seedline.toml"
DATABASE_ENV = "SEEDLINE_DATABASE_URL"
OBJECTS_ENV = "SEEDLINE_OBJECTS_URL"
DATABASE_FILENAME = "metadata.db"
OBJECTS_DIRNAME = "objects"
# the schema revision this code reads and writes (the last Alembic migration in storage/migrations)
HEAD_REVISION = "0009"
SQLITE_BUSY_TIMEOUT_MS = 30000
# every read-write connection to a SQLite store, through SQLAlchemy or not: the busy timeout
# first (switching to WAL itself needs a lock that a concurrent opener may hold); WAL lets
# readers work while a run writes; the busy timeout makes concurrent writers wait, not fail
SQLITE_PRAGMAS = (
    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
)


# the oldest SQLite whose SQL the store writes (INSERT ... ON CONFLICT, an upsert: 3.24)
SQLITE_MIN_VERSION = (3, 24, 0)


def sqlite_too_old() -> str | None:
    """What to tell a person whose Python links an SQLite older than the store needs, or None."""
    if sqlite3.sqlite_version_info >= SQLITE_MIN_VERSION:
        return None
    wanted = ".".join(map(str, SQLITE_MIN_VERSION))
    return (
        f"the store needs SQLite {wanted} or newer; this Python's sqlite3 module links "
        f"SQLite {sqlite3.sqlite_version}"
    )


def now_iso() -> str:
    """The time now, UTC, as the store writes it (``2026-12-01T07:00:00.123Z``)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def find_project(start: str | Path = ".") -> Path | None:
    """The nearest folder at or above ``start`` holding ``.seedline/`` or ``seedline.toml``, or None."""
    here = Path(start).resolve()
    for d in (here, *here.parents):
        if (d / STORE_DIRNAME).is_dir() or (d / CONFIG_FILENAME).is_file():
            return d
    return None


@dataclass(frozen=True)
class EmbeddedStore:
    """An embedded store opened for reading: its database connection and its objects folder."""

    connection: sqlite3.Connection
    objects_dir: Path


def open_embedded(start: str | Path = ".") -> EmbeddedStore | None:
    """The project's embedded store opened read-only, or None where the full path must answer."""
    found = _embedded_database(start)
    if found is None:
        return None
    store, database = found
    try:
        # mode=ro: this connection can never write, whatever a query says
        conn = sqlite3.connect(
            f"file:{quote(str(database))}?mode=ro",
            uri=True,
            timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
        )
    except sqlite3.Error:
        return None
    if not _at_head(conn):
        return None
    return EmbeddedStore(conn, store / OBJECTS_DIRNAME)


def open_embedded_for_writing(project: Path) -> sqlite3.Connection | None:
    """The embedded database of the project at ``project``, opened to read and write with
    :mod:`sqlite3` and the pragmas every writer uses, or None where the full path must
    answer (the conditions of :func:`open_embedded`: a run there creates or migrates the
    database, or reads a store given elsewhere)."""
    found = _embedded_database(project, search=False)
    if found is None or sqlite_too_old():
        return None
    try:
        # its user serialises the statements (EmbeddedRecorder's lock), from any thread
        conn = sqlite3.connect(
            str(found[1]), timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, check_same_thread=False
        )
        for pragma in SQLITE_PRAGMAS:
            conn.execute(pragma)
    except sqlite3.Error:
        return None
    return conn if _at_head(conn) else None


def _embedded_database(start: str | Path, *, search: bool = True) -> tuple[Path, Path] | None:
    """(store folder, database file) of an embedded store nothing else could answer for."""
    if os.environ.get(DATABASE_ENV) or os.environ.get(OBJECTS_ENV):
        return None
    project = find_project(start) if search else Path(start)
    if project is None or (project / CONFIG_FILENAME).exists():
        return None
    store = project / STORE_DIRNAME
    database = store / DATABASE_FILENAME
    if not database.is_file():
        return None
    return store, database


def _at_head(conn: sqlite3.Connection) -> bool:
    """Whether the database's schema is the one this code reads and writes (closed if not)."""
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        row = None
    if row is None or row[0] != HEAD_REVISION:
        conn.close()
        return False
    return True


__all__ = [
    "CONFIG_FILENAME",
    "DATABASE_ENV",
    "DATABASE_FILENAME",
    "HEAD_REVISION",
    "OBJECTS_DIRNAME",
    "OBJECTS_ENV",
    "SQLITE_BUSY_TIMEOUT_MS",
    "SQLITE_MIN_VERSION",
    "SQLITE_PRAGMAS",
    "STORE_DIRNAME",
    "EmbeddedStore",
    "find_project",
    "now_iso",
    "open_embedded",
    "open_embedded_for_writing",
    "sqlite_too_old",
]
