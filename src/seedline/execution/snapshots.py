"""Data snapshots: a run's input files kept in the object store, so a clone without them can reproduce.

A snapshot is the file's bytes stored as an object. A file's fingerprint is the BLAKE3 of
its bytes, and so is an object's address: the snapshot of ``file:<hex>`` is object
``<hex>``, deduplicated by content across runs, projects and stores. Files stream in and
out a chunk at a time, so memory stays bounded whatever their size.

``reproduce`` on a clone whose data file is missing or differs materializes the snapshot
under ``.seedline/snapshots/`` (never over the user's file) and reads it from there.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from seedline.core.errors import DataError
from seedline.execution.data import FILE_KINDS
from seedline.records.tracking import Store

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


def take(
    store: Store,
    sources: list[dict[str, Any]],
    root: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: BytesProgress | None = None,
) -> list[str]:
    """Store every data file of ``sources`` as an object; sets each record's ``snapshot`` address.

    A file whose object is already stored costs nothing (same bytes, same address). A file
    that changed since the run read it is an error: the snapshot must be the data the run used.
    Only project files are kept: for a URL, a SQL query or a loader the returned warnings
    say that a clone needs access to it to reproduce.
    """
    check_size(sources, max_bytes)
    total = sum(int(s.get("bytes") or 0) for s in sources if s.get("kind") in FILE_KINDS)
    done = [0]

    def advance(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0], total)

    warnings: list[str] = []
    for record in sources:
        if record.get("kind") == "sklearn":
            continue  # bundled with scikit-learn: every clone has it
        if record.get("kind") not in FILE_KINDS:
            warnings.append(
                f"data snapshot: source {record['uri']!r} ({record.get('kind')}) is not a project file "
                "and was not kept; a clone needs access to it to reproduce this run"
            )
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


def materialized_path(store: Store, uri: str, address: str) -> Path:
    """Where a snapshot is written out for reading: ``.seedline/snapshots/<address>/<uri>``."""
    rel = PurePosixPath(uri)
    # a source outside the project ('../x.csv') keeps only its name here
    parts = rel.parts if ".." not in rel.parts and not rel.is_absolute() else (rel.name,)
    return store.root / MATERIALIZED_DIRNAME / address / Path(*parts)


def materialize(store: Store, uri: str, address: str) -> Path:
    """Write a snapshot out (verified, atomically) unless already there; returns its folder root.

    Reading it with ``read_source(uri, returned_root)`` gives the same record as the
    original file gave, uri included.
    """
    target = materialized_path(store, uri, address)
    if not target.is_file():
        if not store.objects.exists(address):
            raise DataError(
                f"the snapshot of {uri!r} (object {address}) is not in this store",
                hint="'seedline pull' the run from the remote that has it",
            )
        store.objects.get_file(address, target)
        os.chmod(target, 0o444)
    depth = len(target.relative_to(store.root / MATERIALIZED_DIRNAME / address).parts)
    root = target
    for _ in range(depth):
        root = root.parent
    return root
