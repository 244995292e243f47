"""``seedline fsck``: re-hash every object and check every record against the objects it names.

Problems found:

- *corrupt*: an object whose bytes no longer hash to its address;
- *missing*: an object that a run, a registered model or a cache entry names, absent;
- *unreadable*: a run whose manifest object is there but is not a manifest;
- *dangling alias*: an alias pointing at a version that does not exist.

``repair`` moves corrupt objects aside to ``objects/quarantine/`` (their bytes are
kept, never deleted); everything else is reported for a person to decide.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from seedline.core.errors import CorruptObjectError, StoreError
from seedline.records.references import Reference, collect, dangling_aliases
from seedline.records.tracking import Store

# (objects done, objects in all, bytes done)
FsckProgress = Callable[[int, int, int], None]


@dataclass
class Problem:
    """One thing fsck found wrong."""

    kind: str  # corrupt, missing, unreadable, dangling alias
    object: str | None
    detail: str
    needed_by: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class FsckReport:
    objects: int = 0
    bytes: int = 0
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)
    quarantined: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "objects": self.objects,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 6),
            "problems": [p.to_dict() for p in self.problems],
            "quarantined": self.quarantined,
        }


def _is_address(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


def fsck(store: Store, *, repair: bool = False, progress: FsckProgress | None = None) -> FsckReport:
    """Verify every object and every reference; with ``repair``, quarantine corrupt objects."""
    t0 = time.perf_counter()
    report = FsckReport()
    refs = collect(store)
    needed: dict[str, list[Reference]] = {}
    for r in refs.items:
        needed.setdefault(r.address, []).append(r)

    addresses = [a for a in store.objects if _is_address(a)]
    corrupt: list[str] = []
    for i, address in enumerate(addresses):
        try:
            report.bytes += store.objects.verify(address)
        except CorruptObjectError as exc:
            corrupt.append(address)
            report.problems.append(
                Problem(
                    "corrupt",
                    address,
                    f"its bytes hash to {exc.found}",
                    [f"{r.owner} ({r.role})" for r in needed.get(address, [])],
                )
            )
        except StoreError:
            continue  # removed since it was listed: the reference check below reports it
        report.objects += 1
        if progress is not None:
            progress(i + 1, len(addresses), report.bytes)

    present = set(addresses)
    for address, users in sorted(needed.items()):
        if address not in present:
            report.problems.append(
                Problem(
                    "missing",
                    address,
                    "the object is not in the store",
                    [f"{r.owner} ({r.role})" for r in users],
                )
            )
    for bad in refs.unreadable:
        if bad["object"] in present and bad["object"] not in corrupt:
            report.problems.append(
                Problem("unreadable", bad["object"], bad["error"], [f"run {bad['run']}"])
            )
    report.problems += _dangling_aliases(store)

    if repair:
        for address in corrupt:
            target = store.objects.quarantine(address)
            report.quarantined.append({"object": address, "moved_to": target})
    report.seconds = time.perf_counter() - t0
    return report


def _dangling_aliases(store: Store) -> list[Problem]:
    return [
        Problem(
            "dangling alias",
            None,
            f"{name}@{alias} points at version {version}, which does not exist",
        )
        for name, alias, version in dangling_aliases(store)
    ]
