"""``seedline gc``: reclaim what killed processes left behind, and objects nothing references.

Three kinds of leftovers, each something seedline itself wrote:

- *partial objects*: ``objects/**/.tmp-*.part``, an object write that never reached its
  rename (the writer was killed); on S3, an incomplete multipart upload to an object's key
  under the store's prefix (never another key, never another prefix), which gc aborts;
- *partial outputs*: ``.NAME.XXXXXXXX.part`` files and folders that ``predict -o`` and
  ``export -o`` stage beside their target, and that a materialized data snapshot stages
  under ``.seedline/snapshots/``, left when the process died before the rename;
- *orphan objects*: objects that no run, registered model or cache entry names (a killed
  run or push before its records were written, a killed ``cache prune`` after its rows
  were deleted).

Anything younger than ``min_age_s`` is kept, since a live writer may still be about to
rename or reference it; anything referenced is always kept; and orphans are not touched
at all while a manifest cannot be read (its references are unknown: ``fsck`` first).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seedline.core.errors import StoreError
from seedline.records.references import collect
from seedline.records.tracking import Store
from seedline.storage.embedded import OBJECTS_DIRNAME, STORE_DIRNAME

DEFAULT_MIN_AGE_S = 3600.0
# tempfile.mkstemp/mkdtemp's random part: 8 characters of this alphabet
_STAGED = re.compile(r"^\..+\.[a-z0-9_]{8}\.part$")
# folders never searched for partial outputs: other tools' data, and the object store itself
_SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".tox", ".mypy_cache"}


@dataclass
class GcReport:
    dry_run: bool
    partial_objects: list[str] = field(default_factory=list)
    partial_outputs: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    bytes: int = 0
    kept_young: int = 0
    unreadable_manifests: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def staged_outputs(root: Path) -> list[Path]:
    """Partial ``predict``/``export``/snapshot outputs under ``root`` (the object store excluded)."""
    found: list[Path] = []
    objects = (root / STORE_DIRNAME / OBJECTS_DIRNAME).resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        kept = []
        for d in dirnames:
            if _STAGED.match(d):
                found.append(here / d)
            elif d not in _SKIP_DIRS and (here / d).resolve() != objects:
                kept.append(d)
        dirnames[:] = kept
        found += [here / f for f in filenames if _STAGED.match(f)]
    return sorted(found)


def gc(
    store: Store,
    *,
    dry_run: bool = False,
    min_age_s: float = DEFAULT_MIN_AGE_S,
    extra_folders: list[Path] | None = None,
) -> GcReport:
    """Find (and unless ``dry_run``, remove) partial writes and orphan objects older than ``min_age_s``."""
    report = GcReport(dry_run=dry_run)
    cutoff = time.time() - min_age_s

    def old_enough(path: Path) -> bool:
        try:
            young = path.stat().st_mtime > cutoff
        except FileNotFoundError:
            return False
        report.kept_young += young
        return not young

    for partial in store.objects.partials():
        if partial.modified > cutoff:
            report.kept_young += 1
            continue
        report.partial_objects.append(partial.name)
        report.bytes += partial.size
        if not dry_run:
            store.objects.remove_partial(partial.name)

    for folder in [store.project_root, *(extra_folders or [])]:
        for part in staged_outputs(folder):
            if old_enough(part):
                report.partial_outputs.append(str(part))
                report.bytes += _size(part)
                if not dry_run:
                    _remove(part)

    refs = collect(store)
    report.unreadable_manifests = refs.unreadable
    if refs.unreadable:
        return report  # what an unreadable manifest names is unknown: keep every object
    keep = refs.addresses
    candidates = []
    for address in list(store.objects):
        if address in keep or len(address) != 64:
            continue
        try:
            young = store.objects.modified(address) > cutoff
        except StoreError:
            continue
        report.kept_young += young
        if not young:
            candidates.append(address)
    if candidates:
        # a run or push that finished after the references were read may just have named one
        keep = collect(store).addresses
    for address in candidates:
        if address in keep:
            continue
        report.orphans.append(address)
        report.bytes += store.objects.size(address)
        if not dry_run:
            store.objects.remove(address)
    return report
