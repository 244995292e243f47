"""Which objects a store's records need: runs (manifests and everything they name), models, cache.

Maintenance (``cache prune``, ``gc``) keeps every object named here, and ``fsck`` checks
that each one exists. A manifest that cannot be read is reported, never fatal: its run's
own row still names its manifest and model objects, which are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from seedline.core.errors import SeedlineError
from seedline.records.manifest import Manifest
from seedline.records.tracking import Store
from seedline.storage.metadata import CacheRow, ModelAliasRow, ModelVersionRow, RunRow


@dataclass
class Reference:
    """One object a record needs: which object, who needs it, and in what role."""

    address: str
    owner: str  # "run 1m8n...", "model churn@3", "cache entry KEY"
    role: str  # manifest, model, probe, diff, snapshot data/x.csv, ...


@dataclass
class References:
    """Every object the records of a store name, and the manifests that could not be read."""

    items: list[Reference] = field(default_factory=list)
    unreadable: list[dict[str, str]] = field(default_factory=list)

    @property
    def addresses(self) -> set[str]:
        return {r.address for r in self.items}


def manifest_objects(manifest: Manifest) -> dict[str, str]:
    """Role -> address of every object a manifest names (artifacts, data snapshots, stored sources)."""
    out = {f"artifact {k}": v for k, v in manifest.artifacts.items() if v}
    for source in manifest.data.sources if manifest.data else []:
        if source.snapshot:
            out[f"snapshot {source.uri}"] = source.snapshot
    # the project-local modules the model loads from, without the project folder
    for name, module in sorted(manifest.code.local_modules.items()):
        if module.object:
            out[f"source of {name} ({module.path})"] = module.object
    if manifest.code.diff_object:
        out["diff"] = manifest.code.diff_object
    return out


def run_references(store: Store, run_id: str, manifest_object: str | None) -> list[Reference]:
    """The objects one run needs; raises SeedlineError when its manifest cannot be read."""
    if not manifest_object:
        return []
    owner = f"run {run_id}"
    refs = [Reference(manifest_object, owner, "manifest")]
    manifest = Manifest.from_json(store.objects.get(manifest_object))
    refs += [Reference(a, owner, role) for role, a in manifest_objects(manifest).items()]
    return refs


def collect(store: Store, *, include_cache: bool = True) -> References:
    """Every object referenced by a run, a registered model or (optionally) a cache entry."""
    out = References()
    with store._session() as s:
        runs = list(s.execute(select(RunRow.id, RunRow.manifest_object, RunRow.model_object)))
        versions = list(s.scalars(select(ModelVersionRow)))
        cache = list(s.scalars(select(CacheRow))) if include_cache else []
    for run_id, manifest_object, model_object in runs:
        if model_object:
            out.items.append(Reference(model_object, f"run {run_id}", "model"))
        try:
            out.items += run_references(store, run_id, manifest_object)
        except SeedlineError as exc:
            out.unreadable.append(
                {"run": run_id, "object": manifest_object or "", "error": exc.message}
            )
            if manifest_object:
                out.items.append(Reference(manifest_object, f"run {run_id}", "manifest"))
    for v in versions:
        owner = f"model {v.name}@{v.version}"
        for role, address in (
            ("model", v.model_object),
            ("manifest", v.manifest_object),
            ("probe", v.probe_object),
            ("probe input", v.probe_input_object),
        ):
            if address:
                out.items.append(Reference(address, owner, role))
    for c in cache:
        for role, address in (("fitted step", c.fitted_object), ("output", c.output_object)):
            if address:
                out.items.append(Reference(address, f"cache entry {c.key}", role))
    # objects other record kinds register (see tracking._REFERENCE_HOOKS)
    known = out.addresses
    for address in store.extra_references() - known:
        out.items.append(Reference(address, "registered hook", "object"))
    return out


def dangling_aliases(store: Store) -> list[tuple[str, str, int]]:
    """(name, alias, version) of every alias whose version does not exist."""
    with store._session() as s:
        versions = set(s.execute(select(ModelVersionRow.name, ModelVersionRow.version)))
        aliases = list(s.scalars(select(ModelAliasRow)))
    return [(a.name, a.alias, a.version) for a in aliases if (a.name, a.version) not in versions]
