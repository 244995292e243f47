"""Sweep records: one row per sweep (its search, metric, params and best run); trials are runs linked to it."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select, update

from seedline.records.reading import SWEEP_COLUMNS, SweepRecord
from seedline.records.reading import list_sweeps as list_sweep_records
from seedline.records.tracking import Store
from seedline.storage.metadata import SweepRow, now_iso


def _record(r: SweepRow) -> SweepRecord:
    return SweepRecord.from_row([getattr(r, c) for c in SWEEP_COLUMNS])


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
        with self.store._reader() as rows:
            return list_sweep_records(rows)


def list_sweeps(store: Store) -> list[dict[str, Any]]:
    """Every sweep of ``store`` as a dict (what ``seedline sweeps --json`` prints), newest first."""
    return [r.to_dict() for r in SweepIndex(store).all()]


__all__ = ["SweepIndex", "SweepRecord", "list_sweeps"]
