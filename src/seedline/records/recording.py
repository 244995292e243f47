"""Recording a run: the writes a run makes, as SQL text any database runs, and the embedded quick path.

A run writes a few rows: its own when it begins (with its tags); its status, fingerprints,
metrics and flattened spec values when it finishes; the step cache's index as it goes.
:class:`RunRecords` holds those writes once, as SQL text with ``:name`` parameters, run
through an :data:`Execute` function, the way ``records.reading`` holds the shared reads. So
the same statements serve :class:`~seedline.records.tracking.Store` (a SQLAlchemy session,
on SQLite or PostgreSQL) and :class:`EmbeddedRecorder`, which ``seedline run`` uses on the
embedded default: the standard library's :mod:`sqlite3`, so that a run never imports
SQLAlchemy (about 0.13 s of its start-up, more than anything else it adds to a plain fit).

The recorder opens only where nothing could make the full path answer differently (the
conditions of ``storage.embedded``): a run that must create or migrate the database, or
that records in a store named by ``seedline.toml`` or the environment, opens ``Store``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import socket
import sqlite3
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seedline.core.errors import StoreError
from seedline.records.reading import Rows, error_column
from seedline.storage.embedded import STORE_DIRNAME, open_embedded_for_writing
from seedline.storage.objects import ObjectStore

if TYPE_CHECKING:  # pydantic's models load with the manifest a run makes
    from seedline.records.manifest import Manifest

# SQL text with :name parameters and one set of values (or a list of them: one execution
# each) -> the number of rows it changed
Execute = Callable[[str, Mapping[str, Any] | Sequence[Mapping[str, Any]]], int]

_INSERT_RUN = (
    "INSERT INTO runs (id, spec_name, status, created_at, spec_fingerprint, parent_run, "
    "host, pid, process_started) VALUES (:id, :spec_name, 'running', :created_at, "
    ":spec_fingerprint, :parent_run, :host, :pid, :process_started)"
)
_FINISH_RUN = (
    "UPDATE runs SET status = :status, finished_at = :finished_at, duration_s = :duration_s, "
    "spec_fingerprint = :spec_fingerprint, data_fingerprint = :data_fingerprint, "
    "model_fingerprint = :model_fingerprint, predictions_fingerprint = :predictions_fingerprint, "
    "manifest_object = :manifest_object, model_object = :model_object, error = :error, "
    "sweep_id = :sweep_id WHERE id = :id"
)
_SET_METRIC = (
    "INSERT INTO metrics (run_id, name, value) VALUES (:run_id, :name, :value) "
    "ON CONFLICT (run_id, name) DO UPDATE SET value = excluded.value"
)
_ADD_PARAM = (
    "INSERT INTO run_params (run_id, name, value, number) VALUES (:run_id, :name, :value, :number)"
)
_SET_TAG = (
    "INSERT INTO run_tags (run_id, key, value) VALUES (:run_id, :key, :value) "
    "ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value"
)
_MODEL_OBJECT_FOR = (
    "SELECT model_object, manifest_object FROM runs WHERE model_fingerprint = :fingerprint "
    "AND model_object IS NOT NULL ORDER BY id LIMIT 20"
)
# spec keys that say nothing a person filters by
_UNINDEXED = ("description",)
_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_last_id = [0, 0]  # (milliseconds, counter) of the last id made in this process


def new_run_id() -> str:
    """13 characters: 9 of milliseconds since the epoch, then 4 of a counter.

    Ids sort by creation time. Within one process the counter increases within a
    millisecond (so ids are unique and ordered); across processes it starts at a random
    value, so two machines making runs in the same millisecond almost never collide.
    """
    ms = time.time_ns() // 1_000_000
    if ms <= _last_id[0]:
        ms, counter = _last_id[0], _last_id[1] + 1
    else:
        counter = secrets.randbelow(32**4 // 2)
    _last_id[:] = [ms, counter]
    head = "".join(_CROCKFORD[(ms >> (5 * i)) & 31] for i in reversed(range(9)))
    tail = "".join(_CROCKFORD[(counter >> (5 * i)) & 31] for i in reversed(range(4)))
    return head + tail


def flatten_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """``{'pipeline.clf.params.C': 1.0, ...}``: lists of named items are keyed by their names."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        elif (
            isinstance(node, list)
            and node
            and all(isinstance(x, dict) and "name" in x for x in node)
        ):
            for item in node:
                walk({k: v for k, v in item.items() if k != "name"}, f"{prefix}.{item['name']}")
        else:
            out[prefix] = node

    walk({k: v for k, v in spec.items() if k not in _UNINDEXED}, "")
    return out


def _param_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _param_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


def add_tags(execute: Execute, run_id: str, tags: Mapping[str, str]) -> None:
    """Set tags of a run inside a transaction (records layer only; validated beforehand)."""
    execute(_SET_TAG, [{"run_id": run_id, "key": k, "value": v} for k, v in tags.items()])


class RunRecords(ABC):
    """What a run records, written once for every store: a root folder, an object store, and
    a way to read (:data:`~seedline.records.reading.Rows`) and to write (:data:`Execute`)."""

    root: Path
    objects: ObjectStore

    @abstractmethod
    def _reader(self) -> AbstractContextManager[Rows]:
        """The shared read queries' way in (records layer only)."""

    @abstractmethod
    def _executing(self) -> AbstractContextManager[Execute]:
        """One transaction's statements, run as given: commits on success, rolls back on error."""

    @contextlib.contextmanager
    def _writer(self) -> Iterator[Execute]:
        """One transaction (records layer only); an empty list of values runs nothing."""
        with self._executing() as execute:

            def run(sql: str, params: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> int:
                if not isinstance(params, Mapping) and not params:
                    return 0  # SQLAlchemy would run the statement once, without values, and fail
                return execute(sql, params)

            yield run

    @abstractmethod
    def close(self) -> None:
        """Let go of the database connections (the objects need none)."""

    @property
    def project_root(self) -> Path:
        return self.root.parent

    def begin_run(self, manifest: Manifest, tags: Mapping[str, str] | None = None) -> None:
        """Record a run as running, with its tags (validated beforehand by the caller)."""
        host, pid, started = _this_process()
        with self._writer() as execute:
            execute(
                _INSERT_RUN,
                {
                    "id": manifest.run_id,
                    "spec_name": manifest.spec.get("name", ""),
                    "created_at": manifest.created_at,
                    "spec_fingerprint": manifest.spec_fingerprint,
                    "parent_run": manifest.parent_run,
                    "host": host,
                    "pid": pid,
                    "process_started": started,
                },
            )
            add_tags(execute, manifest.run_id, tags or {})

    def finish_run(self, manifest: Manifest, duration_s: float | None = None) -> str:
        """Store the manifest object, then index it, in one transaction; returns the manifest address."""
        address = self.objects.put(manifest.to_json().encode())
        run_id = manifest.run_id
        with self._writer() as execute:
            changed = execute(
                _FINISH_RUN,
                {
                    "id": run_id,
                    "status": manifest.status,
                    "finished_at": manifest.finished_at,
                    "duration_s": duration_s,
                    "spec_fingerprint": manifest.spec_fingerprint,
                    "data_fingerprint": manifest.fingerprints.get("data"),
                    "model_fingerprint": manifest.fingerprints.get("model"),
                    "predictions_fingerprint": manifest.fingerprints.get("predictions"),
                    "manifest_object": address,
                    "model_object": manifest.artifacts.get("model"),
                    "error": error_column(manifest.error),
                    "sweep_id": (manifest.sweep or {}).get("id"),
                },
            )
            if changed == 0:
                raise StoreError(f"run {run_id} was never begun in this store")
            execute(
                _SET_METRIC,
                [
                    {"run_id": run_id, "name": name, "value": float(value)}
                    for name, value in manifest.metrics.items()
                ],
            )
            execute(
                _ADD_PARAM,
                [
                    {
                        "run_id": run_id,
                        "name": name[:300],
                        "value": None if value is None else _param_text(value),
                        "number": _param_number(value),
                    }
                    for name, value in flatten_spec(manifest.spec).items()
                ],
            )
        return address

    def model_object_for(
        self, model_fingerprint: str, steps: Sequence[tuple[str, str]] | None = None
    ) -> str | None:
        """The stored model object of a run whose fitted state has this fingerprint, if any.

        ``steps``: each step's name and class, which that run's steps must have too. A frozen
        step records the fingerprint of the step it wraps, so a model with one and a model
        with the step itself share a fingerprint, but not their objects.
        """
        with self._reader() as rows:
            found = rows(_MODEL_OBJECT_FOR, {"fingerprint": model_fingerprint})
        for address, manifest in found:
            if not address or not self.objects.exists(address):
                continue
            if steps is None or _step_classes(self.objects, manifest) == list(steps):
                return str(address)
        return None


def _step_classes(objects: ObjectStore, manifest: str | None) -> list[tuple[str, str]] | None:
    """The (name, class) of each step in the stored manifest at ``manifest`` (None: unreadable)."""
    try:
        steps = json.loads(objects.get(manifest or ""))["steps"]
        return [(str(step["name"]), str(step["class"])) for step in steps]
    except Exception:
        return None


class EmbeddedRecorder(RunRecords):
    """A project's embedded store, opened by a run with :mod:`sqlite3` (see the module's text)."""

    def __init__(self, root: Path, connection: sqlite3.Connection, objects: ObjectStore) -> None:
        self.root = root
        self.connection = connection
        self.objects = objects
        # one statement at a time, from whichever thread: a server reads its model on the main
        # thread and logs the parity check from the one that loads it
        self._lock = threading.RLock()
        _OPEN_RECORDERS.add(self)

    @classmethod
    def open(cls, project_root: str | Path) -> EmbeddedRecorder | None:
        """The recorder of the project at ``project_root``, or None where ``Store`` must open."""
        from seedline.storage.config import resolve_store
        from seedline.storage.objects import open_object_store

        root = Path(project_root) / STORE_DIRNAME
        connection = open_embedded_for_writing(Path(project_root))
        if connection is None:
            return None
        try:
            where = resolve_store(root, None)
            objects = open_object_store(where.objects_url, where.objects_options)
        except BaseException:
            connection.close()
            raise
        return cls(root, connection, objects)

    @contextlib.contextmanager
    def _reader(self) -> Iterator[Rows]:
        with self._lock:
            yield lambda sql, params: self.connection.execute(sql, params).fetchall()

    @contextlib.contextmanager
    def _executing(self) -> Iterator[Execute]:
        with self._lock, self.connection:  # commits on success, rolls back on error
            yield self._execute

    def _execute(self, sql: str, params: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> int:
        if isinstance(params, Mapping):
            return self.connection.execute(sql, params).rowcount
        return self.connection.executemany(sql, params).rowcount

    def close(self) -> None:
        with self._lock:
            self.connection.close()


# recorders still open when the process exits: closed then, so SQLite's write-ahead log is
# checkpointed into the database rather than left beside it
_OPEN_RECORDERS: weakref.WeakSet[EmbeddedRecorder] = weakref.WeakSet()


@atexit.register
def _close_open_recorders() -> None:
    for recorder in list(_OPEN_RECORDERS):
        # one that refuses to close (a database gone meanwhile): the next still closes
        with contextlib.suppress(sqlite3.Error):
            recorder.close()


def open_run_store(project_root: str | Path) -> RunRecords:
    """Where a run in ``project_root`` records: the embedded recorder where it can open, else ``Store``."""
    recorder = EmbeddedRecorder.open(project_root)
    if recorder is not None:
        return recorder
    from seedline.records.tracking import Store

    return Store.open(project_root)


def _this_process() -> tuple[str, int, float | None]:
    import psutil

    try:
        started: float | None = psutil.Process().create_time()
    except psutil.Error:
        started = None
    return socket.gethostname(), os.getpid(), started


__all__ = [
    "EmbeddedRecorder",
    "Execute",
    "RunRecords",
    "add_tags",
    "flatten_spec",
    "new_run_id",
    "open_run_store",
]
