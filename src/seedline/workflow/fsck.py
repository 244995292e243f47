"""``seedline fsck``: re-hash every object and check every record against the objects it names.

Problems found:

- *corrupt*: an object whose bytes no longer hash to its address;
- *missing*: an object that a run, a registered model or a cache entry names, absent;
- *unreadable*: a run whose manifest object is there but is not a manifest;
- *dangling alias*: an alias pointing at a version that does not exist.

Objects are re-hashed through the :class:`~seedline.storage.objects.ObjectStore`
interface, streamed in chunks, so any backend is checked the same way and memory stays
bounded whatever the object sizes: a local folder, or an S3 prefix (where several objects
are verified at once, since each read waits on the network).

``repair`` moves corrupt objects aside to ``quarantine/`` in the same object store
(``objects/quarantine/`` locally, ``PREFIX/quarantine/`` on S3): their bytes are kept, never
deleted; everything else is reported for a person to decide.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from seedline.core.errors import CorruptObjectError, StoreError
from seedline.records.references import Reference, collect, dangling_aliases
from seedline.records.tracking import Store
from seedline.storage.objects import LocalObjectStore

# (objects done, objects in all, bytes done)
FsckProgress = Callable[[int, int, int], None]

_T = TypeVar("_T")

REMOTE_WORKERS = 4
"""Objects verified at once on a remote object store (each holds at most a few chunks)."""


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


def _verify(store: Store, address: str) -> int | CorruptObjectError | None:
    """The object's size, the corruption found, or None when it was removed since it was listed."""
    try:
        return store.objects.verify(address)
    except CorruptObjectError as exc:
        return exc
    except StoreError:
        return None


def _in_order(
    pool: ThreadPoolExecutor, func: Callable[[str], _T], items: list[str], *, window: int
) -> Iterator[_T]:
    """``func`` over ``items`` on the pool, in order, with at most ``window`` pending at once.

    ``Executor.map`` would submit every item up front: a future per object of the store.
    """
    pending: deque[Future[_T]] = deque()
    for item in items:
        pending.append(pool.submit(func, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def fsck(
    store: Store,
    *,
    repair: bool = False,
    progress: FsckProgress | None = None,
    workers: int | None = None,
) -> FsckReport:
    """Verify every object and every reference; with ``repair``, quarantine corrupt objects.

    ``workers`` objects are re-hashed at once: by default one on a local store (the disk
    and the hash are the limit) and :data:`REMOTE_WORKERS` on a remote one.
    """
    t0 = time.perf_counter()
    report = FsckReport()
    refs = collect(store)
    needed: dict[str, list[Reference]] = {}
    for r in refs.items:
        needed.setdefault(r.address, []).append(r)

    addresses = [a for a in store.objects if _is_address(a)]
    if workers is None:
        workers = 1 if isinstance(store.objects, LocalObjectStore) else REMOTE_WORKERS
    corrupt: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        outcomes = _in_order(pool, lambda a: _verify(store, a), addresses, window=4 * workers)
        for i, (address, outcome) in enumerate(zip(addresses, outcomes, strict=True)):
            if outcome is None:
                continue  # removed since it was listed: the reference check below reports it
            if isinstance(outcome, CorruptObjectError):
                corrupt.append(address)
                report.problems.append(
                    Problem(
                        "corrupt",
                        address,
                        f"its bytes hash to {outcome.found}",
                        [f"{r.owner} ({r.role})" for r in needed.get(address, [])],
                    )
                )
            else:
                report.bytes += outcome
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
