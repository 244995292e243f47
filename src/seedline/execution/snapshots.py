"""Data snapshots: a run's input data kept in the object store, so a clone without it can reproduce.

A project file's snapshot is the file's bytes stored as an object. A file's fingerprint is
the BLAKE3 of its bytes, and so is an object's address: the snapshot of ``file:<hex>`` is
object ``<hex>``, deduplicated by content across runs, projects and stores. Files stream
in and out a chunk at a time, so memory stays bounded whatever their size.

A source that is not a project file (a SQL query, a Python loader, an fsspec URL) is kept
as the table the run read, written as Parquet: the snapshot is kept only if the table read
back from those Parquet bytes has the run's table fingerprint, so reading the snapshot
gives the run exactly the data it had. Its size is known only once the run has read it, so
a table above the size guard is not kept (a warning says so) rather than failing the run.

``reproduce`` on a clone whose data file is missing or differs, or which cannot run the
query (no access to the database) or whose query now returns other rows, materializes the
snapshot under ``.seedline/snapshots/`` (never over the user's file) and reads it from there.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from seedline.core.errors import DataError
from seedline.execution.data import FILE_KINDS, read_table
from seedline.records.recording import RunRecords

# a run refuses to snapshot a file larger than this unless told otherwise
DEFAULT_MAX_BYTES = 2 << 30
MAX_SIZE_ENV = "SEEDLINE_SNAPSHOT_MAX_SIZE"
MATERIALIZED_DIRNAME = "snapshots"

BytesProgress = Callable[[int, int], None]


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def max_bytes_from_env() -> int:
    """The size guard: ``SEEDLINE_SNAPSHOT_MAX_SIZE`` in bytes when set, else 2 GiB."""
    raw = os.environ.get(MAX_SIZE_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_BYTES
    if not raw.isdigit():
        raise DataError(
            f"{MAX_SIZE_ENV} must be a number of bytes, got {raw!r}",
            hint=f"e.g. {MAX_SIZE_ENV}={4 << 30} for 4 GiB",
        )
    return int(raw)


def check_size(sources: list[dict[str, Any]], max_bytes: int) -> None:
    """Refuse, before anything is stored, a snapshot of files above the size guard."""
    files = [s for s in sources if s.get("kind") in FILE_KINDS]
    if not files:
        return
    total = sum(int(s.get("bytes") or 0) for s in files)
    if total > max_bytes:
        biggest = max(files, key=lambda s: int(s.get("bytes") or 0))
        raise DataError(
            f"a data snapshot would keep {_human(total)} of data files (the largest, {biggest['uri']!r}, "
            f"is {_human(int(biggest.get('bytes') or 0))}), above the snapshot limit of {_human(max_bytes)}",
            hint=f"raise the limit with --snapshot-max-size {_human(total * 2).replace(' ', '')} (or {MAX_SIZE_ENV}=BYTES), "
            "or run without --snapshot / data.snapshot",
        )


TABLE_NAME = "table.parquet"


def _source_tables(frame: pd.DataFrame, sources: list[dict[str, Any]]) -> list[pd.DataFrame]:
    """Each source's rows of the loaded table (sources are stacked row-wise in order)."""
    if len(sources) == 1:
        return [frame]
    out, start = [], 0
    for record in sources:
        rows = int(record.get("rows") or 0)
        out.append(frame.iloc[start : start + rows].reset_index(drop=True))
        start += rows
    return out


def table_bytes(frame: pd.DataFrame) -> bytes:
    """The table as Parquet (no index: a source's rows are numbered from 0)."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, engine="pyarrow")
    return buffer.getvalue()


def _keep_table(
    store: RunRecords, record: dict[str, Any], frame: pd.DataFrame, max_bytes: int
) -> str | None:
    """Keep a non-file source's table; returns why not, or None once ``record['snapshot']`` is set."""
    from seedline.core.fingerprint import fingerprint_table

    shown = f"data snapshot: source {record['uri']!r} ({record.get('kind')})"
    try:
        data = table_bytes(frame)
    except Exception as exc:  # a column Arrow cannot hold (mixed Python objects)
        return f"{shown} was not kept: its table cannot be written as Parquet ({type(exc).__name__}: {exc})"
    if len(data) > max_bytes:
        return (
            f"{shown} was not kept: its table is {_human(len(data))} as Parquet, above the snapshot "
            f"limit of {_human(max_bytes)} (raise it with --snapshot-max-size or {MAX_SIZE_ENV})"
        )
    wanted = str((record.get("table") or {}).get("digest"))
    if fingerprint_table(read_table(data)).digest != wanted:
        return (
            f"{shown} was not kept: read back from Parquet its table has another fingerprint "
            "(a column type Parquet does not keep)"
        )
    record["snapshot"] = store.objects.put(data)
    return None


def take(
    store: RunRecords,
    sources: list[dict[str, Any]],
    root: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: BytesProgress | None = None,
    frame: pd.DataFrame | None = None,
) -> list[str]:
    """Keep every source of a run in the object store; sets each record's ``snapshot`` address.

    A file whose object is already stored costs nothing (same bytes, same address). A file
    that changed since the run read it is an error: the snapshot must be the data the run used.
    Any other source (a URL, a SQL query, a loader) is kept as its table when ``frame``, the
    loaded table, is given; the returned warnings name each source that was not kept and why.
    """
    check_size(sources, max_bytes)
    total = sum(int(s.get("bytes") or 0) for s in sources if s.get("kind") in FILE_KINDS)
    done = [0]

    def advance(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0], total)

    warnings: list[str] = []
    tables = _source_tables(frame, sources) if frame is not None else None
    for i, record in enumerate(sources):
        if record.get("kind") == "sklearn":
            continue  # bundled with scikit-learn: every clone has it
        if record.get("kind") not in FILE_KINDS:
            why = (
                _keep_table(store, record, tables[i], max_bytes)
                if tables is not None
                else f"data snapshot: source {record['uri']!r} ({record.get('kind')}) was not kept"
            )
            if why is not None:
                warnings.append(f"{why}; a clone needs access to it to reproduce this run")
            continue
        wanted = str(record["fingerprint"]).removeprefix("file:")
        if store.objects.exists(wanted):
            advance(int(record.get("bytes") or 0))
        else:
            address = store.objects.put_file(root / record["uri"])
            advance(int(record.get("bytes") or 0))
            if address != wanted:
                raise DataError(
                    f"data file {record['uri']!r} changed while the run was reading it",
                    hint="run again once nothing else writes to it",
                )
        record["snapshot"] = wanted
    return warnings


def materialized_path(store: RunRecords, uri: str, address: str) -> Path:
    """Where a snapshot is written out for reading: ``.seedline/snapshots/<address>/<uri>``."""
    rel = PurePosixPath(uri)
    # a source outside the project ('../x.csv') keeps only its name here
    parts = rel.parts if ".." not in rel.parts and not rel.is_absolute() else (rel.name,)
    return store.root / MATERIALIZED_DIRNAME / address / Path(*parts)


def _write_out(store: RunRecords, uri: str, address: str, target: Path) -> None:
    """The object written to ``target`` (verified, atomically, read-only) unless already there."""
    if target.is_file():
        return
    if not store.objects.exists(address):
        raise DataError(
            f"the snapshot of {uri!r} (object {address}) is not in this store",
            hint="'seedline pull' the run from the remote that has it",
        )
    store.objects.get_file(address, target)
    os.chmod(target, 0o444)


def materialize_table(store: RunRecords, uri: str, address: str) -> Path:
    """Write a table snapshot out unless already there; returns the Parquet file."""
    target = store.root / MATERIALIZED_DIRNAME / address / TABLE_NAME
    _write_out(store, uri, address, target)
    return target


def materialize(store: RunRecords, uri: str, address: str) -> Path:
    """Write a snapshot out (verified, atomically) unless already there; returns its folder root.

    Reading it with ``read_source(uri, returned_root)`` gives the same record as the
    original file gave, uri included.
    """
    target = materialized_path(store, uri, address)
    _write_out(store, uri, address, target)
    depth = len(target.relative_to(store.root / MATERIALIZED_DIRNAME / address).parts)
    root = target
    for _ in range(depth):
        root = root.parent
    return root
