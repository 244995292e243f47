"""Reading a data source's rows from a SQL database, through SQLAlchemy, without leaking its password.

A spec names the database by a URL without a password or by ``env:VARNAME``; the URL that
is finally used may still hold one (from the variable), so every message that leaves this
module passes through :func:`~seedline.storage.urls.redact_text` first, and third-party
exceptions are not chained (their text, or a traceback, could quote the URL).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from seedline.core.errors import DataError
from seedline.storage.urls import normalise_database_url, redact_text, redact_url


def database_url(database: str) -> str:
    """The URL a spec's ``data.database`` stands for: the value of ``env:VARNAME``, or the URL itself."""
    if database.startswith("env:"):
        name = database[4:]
        value = os.environ.get(name, "").strip()
        if not value:
            raise DataError(
                f"data.database is {database!r}, but the environment variable {name} is not set",
                hint=f"export {name}=postgresql+psycopg://USER:PASSWORD@HOST/DB (any SQLAlchemy URL) before running",
            )
        return normalise_database_url(value)
    return normalise_database_url(database)


def _read_only_sqlite(url: str) -> Any:
    """An engine that opens a SQLite file read-only, or None for any other URL.

    A query only reads: a database file that is not there is an error ("unable to open
    database file"), never a new empty file left in the user's folder.
    """
    import sqlite3

    import sqlalchemy as sa

    if not url.startswith("sqlite:///"):
        return None
    path = sa.engine.make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    uri = f"{Path(path).resolve().as_uri()}?mode=ro"
    return sa.create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True))


def read_query(database: str, query: str, *, label: str, project_root: Path) -> tuple[Any, str]:
    """Run ``query`` on the database and return its rows as a DataFrame, and the redacted URL.

    ``label`` names the source in errors (``sql:queries/train.sql``). A relative SQLite
    path is relative to the project, as in seedline.toml.
    """
    import pandas as pd
    import sqlalchemy as sa

    from seedline.storage.config import anchor_url

    url = database_url(database)
    if url.startswith("sqlite:///"):
        url = anchor_url(url, project_root)
    shown = redact_url(url)
    try:
        engine = _read_only_sqlite(url) or sa.create_engine(url)
    except Exception as exc:  # an unknown dialect, a driver that is not installed
        raise DataError(
            f"data source {label!r}: cannot use the database {shown}: {type(exc).__name__}: "
            f"{redact_text(str(exc), url)}",
            hint="give a SQLAlchemy URL such as postgresql+psycopg://USER@HOST/DB or sqlite:///data.db, "
            "and install its driver",
        ) from None
    try:
        with engine.connect() as conn:
            frame = pd.read_sql(sa.text(query), conn)
    except Exception as exc:
        raise DataError(
            f"data source {label!r}: the query failed on {shown}: {type(exc).__name__}: "
            f"{redact_text(str(exc), url)}",
            hint="check the query file and that the database is reachable with your credentials "
            "(a password belongs in the URL's environment variable, PGPASSWORD or ~/.pgpass)",
        ) from None
    finally:
        engine.dispose()
    return frame, shown


__all__ = ["database_url", "read_query"]
