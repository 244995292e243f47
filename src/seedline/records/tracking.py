"""Run tracking: the ``.seedline/`` store of runs, manifests and models."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from seedline.core.errors import RunNotFoundError, StoreError
from seedline.records.manifest import Manifest
from seedline.storage.metadata import MetricRow, RunRow, make_session_factory, open_engine
from seedline.storage.objects import ObjectStore

STORE_DIRNAME = ".seedline"
# functions naming objects that must survive maintenance (the registry adds one)
_REFERENCE_HOOKS: list[Callable[[Store], set[str]]] = []
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
    error: str | None
    sweep_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Store:
    """A project's store: metadata database + object store, found at ``<project>/.seedline``."""

    def __init__(self, root: str | Path, database_url: str | None = None) -> None:
        self.root = Path(root)
        self.objects = ObjectStore(self.root / "objects")
        url = (
            database_url
            or os.environ.get("SEEDLINE_DATABASE_URL")
            or f"sqlite:///{self.root / 'metadata.db'}"
        )
        self.database_url = url
        self.engine = open_engine(url)
        self._sessions = make_session_factory(self.engine)

    @classmethod
    def open(cls, project_root: str | Path, *, create: bool = True) -> Store:
        root = Path(project_root) / STORE_DIRNAME
        if not root.exists():
            if not create:
                raise StoreError(
                    f"no seedline store at {root}",
                    hint="run 'seedline init' or 'seedline run' here first",
                )
            root.mkdir(parents=True)
            (root / ".gitignore").write_text("# seedline's store: runs, manifests and models\n*\n")
        return cls(root)

    @classmethod
    def find(cls, start: str | Path = ".") -> Store:
        """The store of the project containing ``start`` (searched upwards, like git)."""
        here = Path(start).resolve()
        for d in (here, *here.parents):
            if (d / STORE_DIRNAME).is_dir():
                return cls(d / STORE_DIRNAME)
        raise StoreError(
            f"no {STORE_DIRNAME}/ store in {here} or any parent folder",
            hint="cd into a seedline project, or run 'seedline init' to start one",
        )

    def session(self) -> Session:
        """A read session on the metadata database."""
        return self._sessions()

    def transaction(self) -> AbstractContextManager[Session]:
        """A session whose work commits on success and rolls back on error."""
        return self._sessions.begin()

    @property
    def project_root(self) -> Path:
        return self.root.parent

    def close(self) -> None:
        self.engine.dispose()

    # -- writing ---------------------------------------------------------------------------
    def begin_run(self, manifest: Manifest) -> None:
        with self._sessions.begin() as s:
            s.add(
                RunRow(
                    id=manifest.run_id,
                    spec_name=manifest.spec.get("name", ""),
                    status="running",
                    created_at=manifest.created_at,
                    spec_fingerprint=manifest.spec_fingerprint,
                    parent_run=manifest.parent_run,
                )
            )

    def finish_run(self, manifest: Manifest, duration_s: float | None = None) -> str:
        """Store the manifest object, then index it, in one transaction; returns the manifest address."""
        address = self.objects.put(manifest.to_json().encode())
        with self._sessions.begin() as s:
            row = s.get(RunRow, manifest.run_id)
            if row is None:
                raise StoreError(f"run {manifest.run_id} was never begun in this store")
            row.status = manifest.status
            row.finished_at = manifest.finished_at
            row.duration_s = duration_s
            row.spec_fingerprint = manifest.spec_fingerprint
            row.data_fingerprint = manifest.fingerprints.get("data")
            row.model_fingerprint = manifest.fingerprints.get("model")
            row.predictions_fingerprint = manifest.fingerprints.get("predictions")
            row.manifest_object = address
            row.model_object = manifest.artifacts.get("model")
            row.error = (manifest.error or {}).get("message")
            row.sweep_id = (manifest.sweep or {}).get("id")
            for name, value in manifest.metrics.items():
                s.merge(MetricRow(run_id=manifest.run_id, name=name, value=float(value)))
            from seedline.records.browsing import index_params

            index_params(s, manifest)
        return address

    # -- reading ---------------------------------------------------------------------------
    def resolve(self, ref: str) -> str:
        """A full run id from an id or a unique prefix, as in git."""
        ref = ref.strip().lower()
        if not ref:
            raise RunNotFoundError("empty run id")
        with self._sessions() as s:
            ids = list(
                s.scalars(
                    select(RunRow.id).where(RunRow.id.startswith(ref, autoescape=True)).limit(11)
                )
            )
        if len(ids) == 1:
            return ids[0]
        if not ids:
            raise RunNotFoundError(
                f"no run matches {ref!r}", hint="'seedline runs' lists the runs in this store"
            )
        raise RunNotFoundError(
            f"run prefix {ref!r} is ambiguous: it matches {', '.join(ids[:10])}{' ...' if len(ids) > 10 else ''}",
            candidates=ids,
            hint="type more characters of the id",
        )

    def list_runs(self, limit: int | None = None, sweep: str | None = None) -> list[RunSummary]:
        with self._sessions() as s:
            q = select(RunRow).order_by(RunRow.id.desc())
            if sweep is not None:
                q = q.where(RunRow.sweep_id == sweep)
            if limit:
                q = q.limit(limit)
            rows = list(s.scalars(q))
            metrics: dict[str, dict[str, float]] = {}
            for m in s.scalars(select(MetricRow).where(MetricRow.run_id.in_([r.id for r in rows]))):
                metrics.setdefault(m.run_id, {})[m.name] = m.value
        return [
            RunSummary(
                run_id=r.id,
                spec_name=r.spec_name,
                status=r.status,
                created_at=r.created_at,
                duration_s=r.duration_s,
                metrics=metrics.get(r.id, {}),
                model_fingerprint=r.model_fingerprint,
                predictions_fingerprint=r.predictions_fingerprint,
                parent_run=r.parent_run,
                error=r.error,
                sweep_id=r.sweep_id,
            )
            for r in rows
        ]

    def manifest(self, ref: str) -> Manifest:
        run_id = self.resolve(ref)
        with self._sessions() as s:
            row = s.get(RunRow, run_id)
            assert row is not None
            address = row.manifest_object
            status = row.status
        if address is None:
            raise StoreError(
                f"run {run_id} has no manifest (status {status!r}): it was interrupted before it finished",
                hint="the process that made it was killed; run the spec again",
            )
        return Manifest.from_json(self.objects.get(address))

    def extra_references(self) -> set[str]:
        """Objects referenced outside runs (e.g. by the model registry); maintenance keeps them."""
        refs: set[str] = set()
        for hook in _REFERENCE_HOOKS:
            refs |= hook(self)
        return refs

    def model_object_for(self, model_fingerprint: str) -> str | None:
        """The stored model object of a run whose fitted state has this fingerprint, if any."""
        with self._sessions() as s:
            address = s.scalars(
                select(RunRow.model_object)
                .where(
                    RunRow.model_fingerprint == model_fingerprint, RunRow.model_object.is_not(None)
                )
                .limit(1)
            ).first()
        return address if address and self.objects.exists(address) else None

    def model_bytes(self, ref: str) -> bytes:
        m = self.manifest(ref)
        address = m.artifacts.get("model")
        if not address:
            raise StoreError(f"run {m.run_id} has no saved model (status {m.status!r})")
        return self.objects.get(address)
