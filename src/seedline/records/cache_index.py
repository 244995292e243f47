"""The step cache's index: which stored objects hold a fitted step and its output, and how often they were used.

The execution layer decides keys and (de)serialises steps; this module owns the rows. Every
query returns plain :class:`CacheEntry` values, never a database session.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from seedline.records.reading import CACHE_COLUMNS, CacheEntry, list_cache_entries
from seedline.records.tracking import Store
from seedline.storage.metadata import CacheRow, now_iso


def _entry(r: CacheRow) -> CacheEntry:
    return CacheEntry.from_row([getattr(r, c) for c in CACHE_COLUMNS])


class CacheIndex:
    """The cache rows of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, key: str) -> CacheEntry | None:
        with self.store._session() as s:
            row = s.get(CacheRow, key)
            return _entry(row) if row is not None else None

    def touch(self, key: str) -> None:
        """Count a hit and note when the entry was last used."""
        with self.store._transaction() as s:
            s.execute(
                update(CacheRow)
                .where(CacheRow.key == key)
                .values(hits=CacheRow.hits + 1, last_used_at=now_iso())
            )

    def add(self, entry: CacheEntry) -> bool:
        """Index an entry; False when the key is already there (a concurrent run stored the same)."""
        try:
            with self.store._transaction() as s:
                s.add(CacheRow(**{f: getattr(entry, f) for f in entry.__dataclass_fields__}))
        except IntegrityError:
            return False
        return True

    def entries(self) -> list[CacheEntry]:
        """All entries, most recently used first."""
        with self.store._reader() as rows:
            return list_cache_entries(rows)

    def usage(self) -> tuple[int, int]:
        """(number of entries, total bytes)."""
        with self.store._session() as s:
            count, size = s.execute(
                select(func.count(CacheRow.key), func.coalesce(func.sum(CacheRow.size_bytes), 0))
            ).one()
        return int(count), int(size)

    def objects_except(self, keys: Collection[str]) -> set[str]:
        """Objects referenced by the entries whose key is not in ``keys``."""
        with self.store._session() as s:
            pairs = list(
                s.execute(
                    select(CacheRow.fitted_object, CacheRow.output_object).where(
                        CacheRow.key.not_in(list(keys))
                    )
                )
            )
        return {x for pair in pairs for x in pair if x}

    def remove(self, keys: Collection[str]) -> list[CacheEntry]:
        """Delete the entries with these keys (not their objects); returns what was deleted."""
        keys = list(keys)
        if not keys:
            return []
        with self.store._transaction() as s:
            rows = [_entry(r) for r in s.scalars(select(CacheRow).where(CacheRow.key.in_(keys)))]
            s.execute(delete(CacheRow).where(CacheRow.key.in_(keys)))
        return rows


def list_entries(store: Store) -> list[dict[str, Any]]:
    """Every step-cache entry of ``store`` as a dict, most recently used first."""
    return [e.to_dict() for e in CacheIndex(store).entries()]


def usage(store: Store) -> dict[str, int]:
    """How many step-cache entries ``store`` holds and their total size in bytes."""
    count, size = CacheIndex(store).usage()
    return {"entries": count, "bytes": size}


__all__ = ["CacheEntry", "CacheIndex", "list_entries", "usage"]
