"""The step cache's index: which stored objects hold a fitted step and its output, and how often they were used.

The execution layer decides keys and (de)serialises steps; this module owns the rows. Every
query returns plain :class:`CacheEntry` values, never a database session.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from seedline.records.reading import CACHE_COLUMNS, CacheEntry, list_cache_entries
from seedline.records.recording import RunRecords
from seedline.storage.embedded import now_iso

_GET = f"SELECT {', '.join(CACHE_COLUMNS)} FROM cache_entries WHERE key = :key"
_REMOVE = "DELETE FROM cache_entries WHERE key = :key"
_TOUCH = "UPDATE cache_entries SET hits = hits + 1, last_used_at = :now WHERE key = :key"
# a key already there is a concurrent run that stored the same step: nothing changes
_ADD = (
    f"INSERT INTO cache_entries ({', '.join(CACHE_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in CACHE_COLUMNS)}) ON CONFLICT (key) DO NOTHING"
)


class CacheIndex:
    """The cache rows of one store (SQL text: the run's embedded recorder writes them too)."""

    def __init__(self, store: RunRecords) -> None:
        self.store = store

    def get(self, key: str) -> CacheEntry | None:
        with self.store._reader() as rows:
            found = rows(_GET, {"key": key})
        return CacheEntry.from_row(found[0]) if found else None

    def touch(self, key: str) -> None:
        """Count a hit and note when the entry was last used."""
        with self.store._writer() as execute:
            execute(_TOUCH, {"key": key, "now": now_iso()})

    def add(self, entry: CacheEntry) -> bool:
        """Index an entry; False when the key is already there (a concurrent run stored the same)."""
        with self.store._writer() as execute:
            return execute(_ADD, {c: getattr(entry, c) for c in CACHE_COLUMNS}) == 1

    def entries(self) -> list[CacheEntry]:
        """All entries, most recently used first."""
        with self.store._reader() as rows:
            return list_cache_entries(rows)

    def usage(self) -> tuple[int, int]:
        """(number of entries, total bytes)."""
        with self.store._reader() as rows:
            ((count, size),) = rows(
                "SELECT COUNT(key), COALESCE(SUM(size_bytes), 0) FROM cache_entries", {}
            )
        return int(count), int(size)

    def objects_except(self, keys: Collection[str]) -> set[str]:
        """Objects referenced by the entries whose key is not in ``keys``."""
        skip = set(keys)
        with self.store._reader() as rows:
            found = rows("SELECT key, fitted_object, output_object FROM cache_entries", {})
        return {x for key, *pair in found if key not in skip for x in pair if x}

    def remove(self, keys: Collection[str]) -> list[CacheEntry]:
        """Delete the entries with these keys (not their objects); returns what was deleted."""
        wanted = set(keys)
        if not wanted:
            return []
        found = [e for e in self.entries() if e.key in wanted]
        with self.store._writer() as execute:
            # one key at a time: what is returned is what this call deleted, not what a
            # concurrent prune deleted first
            return [e for e in found if execute(_REMOVE, {"key": e.key}) == 1]


def list_entries(store: RunRecords) -> list[dict[str, Any]]:
    """Every step-cache entry of ``store`` as a dict, most recently used first."""
    return [e.to_dict() for e in CacheIndex(store).entries()]


def usage(store: RunRecords) -> dict[str, int]:
    """How many step-cache entries ``store`` holds and their total size in bytes."""
    count, size = CacheIndex(store).usage()
    return {"entries": count, "bytes": size}


__all__ = ["CacheEntry", "CacheIndex", "list_entries", "usage"]
