"""Sweep records: one row per sweep (its search, metric, params and best run); trials are runs linked to it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from seedline.records.tracking import Store
from seedline.storage.metadata import SweepRow, now_iso


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


def _record(r: SweepRow) -> SweepRecord:
    return SweepRecord(
        sweep_id=r.id,
        spec_name=r.spec_name,
        created_at=r.created_at,
        finished_at=r.finished_at,
        search=r.search,
        metric=r.metric,
        params=json.loads(r.params),
        settings=json.loads(r.settings),
        status=r.status,
        trials=int(r.trials),
        best_run=r.best_run,
    )


class SweepIndex:
    """The sweeps of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def begin(
        self,
        sweep_id: str,
        *,
        spec_name: str,
        search: str,
        metric: str,
        params: dict[str, Any],
        settings: dict[str, Any],
    ) -> None:
        with self.store._transaction() as s:
            s.add(
                SweepRow(
                    id=sweep_id,
                    spec_name=spec_name,
                    created_at=now_iso(),
                    search=search,
                    metric=metric,
                    params=json.dumps(params, sort_keys=True),
                    settings=json.dumps(settings, sort_keys=True, default=str),
                    status="running",
                    trials=0,
                )
            )

    def finish(
        self, sweep_id: str, *, trials: int, best_run: str | None, status: str = "done"
    ) -> None:
        with self.store._transaction() as s:
            s.execute(
                update(SweepRow)
                .where(SweepRow.id == sweep_id)
                .values(status=status, finished_at=now_iso(), trials=trials, best_run=best_run)
            )

    def find(self, prefix: str, limit: int = 3) -> list[SweepRecord]:
        """Sweeps whose id starts with ``prefix`` (at most ``limit``)."""
        with self.store._session() as s:
            rows = list(
                s.scalars(
                    select(SweepRow)
                    .where(SweepRow.id.startswith(prefix.strip().lower(), autoescape=True))
                    .order_by(SweepRow.id)
                    .limit(limit)
                )
            )
            return [_record(r) for r in rows]

    def all(self) -> list[SweepRecord]:
        """Every sweep, newest first."""
        with self.store._session() as s:
            return [_record(r) for r in s.scalars(select(SweepRow).order_by(SweepRow.id.desc()))]


def list_sweeps(store: Store) -> list[dict[str, Any]]:
    """Every sweep of ``store`` as a dict (what ``seedline sweeps --json`` prints), newest first."""
    return [r.to_dict() for r in SweepIndex(store).all()]


__all__ = ["SweepIndex", "SweepRecord", "list_sweeps"]
