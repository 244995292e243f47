"""``push`` and ``pull``: copy runs, sweeps and registered models between two stores.

The protocol, the same in both directions (``docs/remotes.md``):

1. **Select** what to copy in the source: runs (finished ones: a run still running or
   interrupted has no manifest to copy), sweeps with their trials, model versions with
   their runs and aliases.
2. **Skip** what the destination already has. Runs are identified by their id and
   objects by their content, so a run already at the destination is skipped whole,
   objects and all: pushing twice copies nothing twice.
3. **Copy objects**, each one streamed and verified against its address, only those the
   destination lacks: manifests, models, probes, diffs, data snapshots, and whatever else
   a manifest's ``artifacts`` names.
4. **Write records** (runs, metrics, tags, sweeps, model versions, aliases) in one transaction.
   Tags are labels, not content: the source's tags of every selected run are set at the
   destination, also on runs already there (a tag set after a first push travels with the
   next one); a tag deleted at the source is not deleted at the destination.

Records are written only after every object they name is in place, in one transaction,
so an interrupted transfer never leaves a half-visible run: the destination either has
the run and all of its objects, or no record of it. Running it again resumes: objects
already copied are found by content and skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from seedline.core.errors import SeedlineError, StoreError
from seedline.records.manifest import Manifest
from seedline.records.references import manifest_objects
from seedline.records.tracking import Store
from seedline.storage.metadata import (
    MetricRow,
    ModelAliasRow,
    ModelVersionRow,
    RunRow,
    RunTagRow,
    SweepRow,
)

# (bytes copied so far, bytes to copy in all, what is being copied)
TransferProgress = Callable[[int, int, str], None]


class TransferError(SeedlineError):
    """Raised when a push or pull cannot select what it was asked to copy."""


@dataclass
class Selection:
    """What to copy: run ids, sweep ids and model references (``NAME``, ``NAME@3``, ``NAME@alias``)."""

    runs: list[str] = field(default_factory=list)
    sweeps: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    everything: bool = False


@dataclass
class TransferReport:
    """What a push or pull did."""

    runs: list[str] = field(default_factory=list)
    sweeps: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    objects_copied: int = 0
    bytes_copied: int = 0
    objects_present: int = 0
    already_there: int = 0
    tags_set: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    conflicts: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["seconds"] = round(self.seconds, 6)
        return d


def _copy(row: Any) -> Any:
    """A detached copy of an ORM row, for another database."""
    cls = type(row)
    return cls(**{c.key: getattr(row, c.key) for c in cls.__table__.columns})


def _counted(chunks: Iterator[bytes], seen: Callable[[int], None]) -> Iterator[bytes]:
    for chunk in chunks:
        seen(len(chunk))
        yield chunk


def _select(
    src: Store, sel: Selection, report: TransferReport
) -> tuple[set[str], set[str], list[tuple[str, int]]]:
    """(run ids, sweep ids, model versions) that the selection names, in ``src``."""
    from seedline.records.registry import ModelRef, Registry

    registry = Registry(src)
    runs: set[str] = set()
    sweeps: set[str] = set()
    versions: list[tuple[str, int]] = []
    with src._session() as s:
        if sel.everything:
            runs |= set(s.scalars(select(RunRow.id)))
            sweeps |= set(s.scalars(select(SweepRow.id)))
            versions += list(s.execute(select(ModelVersionRow.name, ModelVersionRow.version)))
        for ref in sel.sweeps:
            hits = list(
                s.scalars(
                    select(SweepRow.id).where(SweepRow.id.startswith(ref.lower(), autoescape=True))
                )
            )
            if len(hits) != 1:
                raise TransferError(
                    f"{'no sweep matches' if not hits else 'several sweeps match'} {ref!r}",
                    hint="'seedline runs --sweep ID' shows a sweep; give more of its id",
                )
            sweeps.add(hits[0])
        if sweeps:
            runs |= set(s.scalars(select(RunRow.id).where(RunRow.sweep_id.in_(sweeps))))
    for ref in sel.runs:
        runs.add(src.resolve(ref))
    for text in sel.models:
        mref = ModelRef.parse(text)
        if mref.version is None and mref.alias is None and "@" not in text:
            versions += [(v.name, v.version) for v in registry.versions(mref.name)]
        else:
            v = registry.resolve(mref)
            versions.append((v.name, v.version))
    with src._session() as s:
        for name, version in versions:
            row = s.get(ModelVersionRow, (name, version))
            if row is not None:
                runs.add(row.run_id)
        # a run without a manifest (still running, or killed) has nothing to copy yet
        unfinished = set(
            s.scalars(
                select(RunRow.id).where(RunRow.id.in_(runs), RunRow.manifest_object.is_(None))
            )
        )
    for run_id in sorted(unfinished):
        report.skipped.append(
            {"run": run_id, "reason": "it has no manifest (running or interrupted)"}
        )
    return runs - unfinished, sweeps, sorted(set(versions))


def transfer(
    src: Store,
    dst: Store,
    selection: Selection,
    *,
    progress: TransferProgress | None = None,
    move_aliases: bool = False,
    check_objects: bool = False,
) -> TransferReport:
    """Copy the selected runs, sweeps and model versions from ``src`` to ``dst`` (see the module doc).

    With ``check_objects``, runs already at the destination have their objects looked up
    and any missing one copied (by default such runs are skipped whole, which is fast).
    """
    t0 = time.perf_counter()
    report = TransferReport()
    run_ids, sweep_ids, versions = _select(src, selection, report)

    # 2. what the destination already has
    with dst._session() as s:
        dst_tags = (
            {
                (t.run_id, t.key): t.value
                for t in s.scalars(select(RunTagRow).where(RunTagRow.run_id.in_(run_ids)))
            }
            if run_ids
            else {}
        )
        there = (
            set(s.scalars(select(RunRow.id).where(RunRow.id.in_(run_ids)))) if run_ids else set()
        )
        sweeps_there = (
            set(s.scalars(select(SweepRow.id).where(SweepRow.id.in_(sweep_ids))))
            if sweep_ids
            else set()
        )
        versions_there = (
            {
                (r.name, r.version): r
                for r in s.scalars(
                    select(ModelVersionRow).where(
                        ModelVersionRow.name.in_({n for n, _ in versions})
                    )
                )
            }
            if versions
            else {}
        )
        aliases_there = (
            {
                (a.name, a.alias): a.version
                for a in s.scalars(
                    select(ModelAliasRow).where(ModelAliasRow.name.in_({n for n, _ in versions}))
                )
            }
            if versions
            else {}
        )
    report.already_there = len(there)
    new_runs = sorted(run_ids - there)

    with src._session() as s:
        run_rows = [s.get(RunRow, rid) for rid in new_runs]
        # --check-objects: the objects of runs already there are looked up too (restores
        # what an fsck --repair quarantined, or what was deleted by hand)
        known_rows = [s.get(RunRow, rid) for rid in sorted(there)] if check_objects else []
        metric_rows = (
            list(s.scalars(select(MetricRow).where(MetricRow.run_id.in_(new_runs))))
            if new_runs
            else []
        )
        # every selected run's tags, those of runs already there included
        tag_rows = (
            list(s.scalars(select(RunTagRow).where(RunTagRow.run_id.in_(run_ids))))
            if run_ids
            else []
        )
        sweep_rows = [s.get(SweepRow, sid) for sid in sorted(sweep_ids - sweeps_there)]
        version_rows = [s.get(ModelVersionRow, key) for key in versions]
        alias_rows = (
            list(
                s.scalars(
                    select(ModelAliasRow).where(ModelAliasRow.name.in_({n for n, _ in versions}))
                )
            )
            if versions
            else []
        )

    new_versions: list[ModelVersionRow] = []
    for v in version_rows:
        if v is None:
            continue
        have = versions_there.get((v.name, v.version))
        if have is None:
            new_versions.append(v)
        elif (have.run_id, have.model_object) != (v.run_id, v.model_object):
            report.conflicts.append(
                {
                    "model": f"{v.name}@{v.version}",
                    "reason": f"the destination's {v.name}@{v.version} is run {have.run_id}, this one is run {v.run_id}",
                }
            )
    conflicted = {c["model"] for c in report.conflicts}
    wanted_versions = {
        (v.name, v.version)
        for v in version_rows
        if v is not None and f"{v.name}@{v.version}" not in conflicted
    }
    new_aliases: list[ModelAliasRow] = []
    moved_aliases: list[ModelAliasRow] = []
    for a in alias_rows:
        if (a.name, a.version) not in wanted_versions:
            continue
        have_version = aliases_there.get((a.name, a.alias))
        if have_version is None:
            new_aliases.append(a)
        elif have_version != a.version:
            if move_aliases:
                moved_aliases.append(a)
            else:
                report.conflicts.append(
                    {
                        "model": f"{a.name}@{a.alias}",
                        "reason": f"the destination's alias points at version {have_version}, this one at {a.version} (--move-aliases moves it)",
                    }
                )

    # 3. the objects every new record names
    needed: dict[str, str] = {}
    for row in [*run_rows, *known_rows]:
        if row is None or row.manifest_object is None:
            continue
        needed[row.manifest_object] = f"run {row.id} manifest"
        if row.model_object:
            needed[row.model_object] = f"run {row.id} model"
        manifest = Manifest.from_json(src.objects.get(row.manifest_object))
        for role, address in manifest_objects(manifest).items():
            needed.setdefault(address, f"run {row.id} {role}")
    for v in new_versions:
        named: tuple[tuple[str, str | None], ...] = (
            ("model", v.model_object),
            ("manifest", v.manifest_object),
            ("probe", v.probe_object),
            ("probe input", v.probe_input_object),
        )
        for role, maybe in named:
            if maybe:
                needed.setdefault(maybe, f"model {v.name}@{v.version} {role}")
    missing = [a for a in sorted(needed) if not dst.objects.exists(a)]
    report.objects_present = len(needed) - len(missing)
    sizes = {a: src.objects.size(a) for a in missing}
    total = sum(sizes.values())
    done = [0]

    def seen(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0], total, current[0])

    current = [""]
    for address in missing:
        current[0] = needed[address]
        # put_verified hashes what it receives and publishes nothing unless it matches the
        # address: a corrupt source object fails the copy, and each byte is hashed once
        dst.objects.put_verified(_counted(src.objects.iter_stored(address), seen), address)
        report.objects_copied += 1
        report.bytes_copied += sizes[address]

    # 4. every record in one transaction, after its objects
    try:
        with dst._transaction() as s:
            for row in run_rows:
                if row is not None:
                    s.add(_copy(row))
            s.flush()  # runs first: metrics and model versions refer to them
            for m in metric_rows:
                s.add(_copy(m))
            for t in tag_rows:
                if dst_tags.get((t.run_id, t.key)) != t.value:
                    s.merge(_copy(t))
                    report.tags_set += 1
            for sw in sweep_rows:
                if sw is not None:
                    s.add(_copy(sw))
            for v in new_versions:
                s.add(_copy(v))
            s.flush()
            for a in new_aliases:
                s.add(_copy(a))
            for a in moved_aliases:
                existing = s.get(ModelAliasRow, (a.name, a.alias))
                if existing is not None:
                    existing.version = a.version
                    existing.updated_at = a.updated_at
    except Exception as exc:  # SQLAlchemy's errors name the tables; wrap them as ours
        raise StoreError(
            f"could not write the records at the destination: {type(exc).__name__}: {exc}",
            hint="nothing was recorded there (one transaction); run the same command again to resume",
        ) from exc
    report.runs = [r.id for r in run_rows if r is not None]
    report.sweeps = [s.id for s in sweep_rows if s is not None]
    report.models = [f"{v.name}@{v.version}" for v in new_versions]
    report.aliases = [f"{a.name}@{a.alias}" for a in (*new_aliases, *moved_aliases)]
    report.seconds = time.perf_counter() - t0
    return report


def open_remote(remote: str, project_root: Any) -> Store:
    """The store a remote names: a remote declared in ``seedline.toml``, or a folder.

    A folder is a project (its ``.seedline/``) or a store folder of its own (created when
    missing, like ``git init --bare``), e.g. a shared drive. The environment's store
    variables never redirect a remote: its URLs are given explicitly.
    """
    from pathlib import Path

    path = Path(remote).expanduser()
    looks_like_path = remote.startswith((".", "/", "~")) or "/" in remote or path.exists()
    if not looks_like_path:
        return _named_remote(remote, Path(project_root))
    path = path.resolve()
    if (path / ".seedline").is_dir():
        path = path / ".seedline"
    elif path.exists() and not path.is_dir():
        raise TransferError(f"remote {remote!r} is a file, not a folder or a declared remote")
    path.mkdir(parents=True, exist_ok=True)
    return Store(path, f"sqlite:///{path / 'metadata.db'}", objects_url=str(path / "objects"))


def _named_remote(name: str, project_root: Any) -> Store:
    from seedline.storage.config import CONFIG_FILENAME, load_project_config

    location = load_project_config(project_root).remote(name)
    if not location.database or not location.objects:
        raise TransferError(
            f"remote {name!r} in {CONFIG_FILENAME} needs both 'database' and 'objects'",
            hint=f'[remotes.{name}] database = "postgresql://..." objects = "s3://bucket/prefix"',
        )
    # a local scratch folder for the remote's Store object; its data lives at the URLs
    scratch = project_root / ".seedline" / "remotes" / name
    scratch.mkdir(parents=True, exist_ok=True)
    return Store(
        scratch,
        location.database,
        objects_url=location.objects,
        objects_options=location.objects_options,
        project_root=project_root,
    )


def selection_from_items(src: Store, items: list[str], *, everything: bool = False) -> Selection:
    """Sort command-line items into runs, sweeps and models, as ``src`` knows them.

    ``NAME@...`` and registered model names are models; a sweep id (or unique prefix) is a
    sweep; anything else must be a run id or prefix.
    """
    from seedline.records.registry import Registry

    sel = Selection(everything=everything)
    registry = Registry(src)
    for item in items:
        if "@" in item or registry.has_model(item):
            sel.models.append(item)
            continue
        with src._session() as s:
            is_sweep = (
                s.scalar(
                    select(SweepRow.id)
                    .where(SweepRow.id.startswith(item.lower(), autoescape=True))
                    .limit(1)
                )
                is not None
            )
        if is_sweep:
            sel.sweeps.append(item)
        else:
            sel.runs.append(item)
    return sel
