"""Registering runs as model versions, and finding a model by reference wherever it is kept.

A model leaves seedline (serving, batch prediction, export) from a ``ModelSource``: the
skops bytes, the manifest, the probe predictions made at training time and the probe
*input* rows, plus the input schema. Registration rebuilds the probe input from the
manifest (``prepare`` of the recorded spec on the project's data), checks that it hashes
to the fingerprint the run recorded, and stores it as a Parquet object: the data cannot
have changed since the run, and serving does not need the training data afterwards.

References: ``NAME`` (latest version), ``NAME@3``, ``NAME@alias``, a run id (or a unique
prefix) and the folder of an exported bundle.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seedline.core.errors import RunNotFoundError, SeedlineError, did_you_mean
from seedline.core.fingerprint import fingerprint_value
from seedline.execution.localcode import LocalCode
from seedline.execution.persist import (
    TRUSTED_TYPES,
    ModelLoadError,
    UntrustedModelError,
    load_model,
    model_types,
)
from seedline.execution.persist import untrusted_types as persist_untrusted
from seedline.records import reading
from seedline.records.manifest import Manifest
from seedline.records.recording import EmbeddedRecorder, RunRecords
from seedline.records.versions import (
    ModelNotFoundError,
    ModelVersion,
    RegistryError,
    find_version,
    has_model,
)
from seedline.storage.embedded import find_project
from seedline.workflow.schema import InputSchema

if TYPE_CHECKING:
    from seedline.records.registry import Registry
    from seedline.records.tracking import Store

BUNDLE_MARKER = "seedline-bundle.json"


class BundleError(SeedlineError):
    """Raised when a bundle folder is incomplete or its files no longer match their recorded hashes."""


def untrusted_types(model_bytes: bytes) -> list[str]:
    """Types in the model file that neither skops nor seedline trusts (see ``ModelSource.untrusted_types``)."""
    return persist_untrusted(model_bytes)


def load_estimator(model_bytes: bytes, *, trust: bool = False, where: str = "this model") -> Any:
    """Load a model file with no project-local code and no recorded trust (see ``ModelSource.load``)."""
    return load_model(model_bytes, trust=trust, where=where)


def load_probe(npz: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(npz), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def frame_to_parquet(frame: Any) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=True)
    return buf.getvalue()


def parquet_to_frame(data: bytes) -> Any:
    import pandas as pd

    return pd.read_parquet(io.BytesIO(data))


@dataclass
class ModelSource:
    """A model with what proves it: manifest, probe input and predictions, input schema."""

    ref: str
    name: str
    version: str | None
    manifest: Manifest
    model_bytes: bytes
    probe: dict[str, np.ndarray]
    probe_input: Any
    schema: InputSchema
    registered: ModelVersion | None = None
    store: RunRecords | None = None
    bundle: Path | None = None
    code: LocalCode = field(default_factory=LocalCode)
    """The project-local modules the model's steps come from, with their recorded sources."""
    trusted_local: list[str] = field(default_factory=list)
    """Project-local classes that may load without --trust: a registered version's recorded decision."""

    @property
    def run_id(self) -> str:
        return self.manifest.run_id

    def untrusted_types(self) -> list[str]:
        """Types that need --trust: outside seedline's trusted list and the recorded trust decision."""
        return persist_untrusted(self.model_bytes, self.trusted_local)

    def load(self, *, trust: bool = False) -> Any:
        """The fitted model, through the one loader, with its recorded local sources."""
        return load_model(
            self.model_bytes,
            trusted=self.trusted_local,
            trust=trust,
            code=self.code,
            where=self.ref,
            recorded_packages=self.manifest.environment.packages,
        )

    def lineage(self) -> dict[str, Any]:
        """Run, data fingerprints, commit, environment, seeds and metrics of this model."""
        return lineage(self.manifest, self.registered)


def lineage(m: Manifest, registered: ModelVersion | None = None) -> dict[str, Any]:
    env = m.environment
    packages = env.packages
    data = m.data
    return {
        "model": registered.to_dict() if registered is not None else None,
        "run": {
            "id": m.run_id,
            "spec": m.spec.get("name"),
            "created_at": m.created_at,
            "finished_at": m.finished_at,
            "status": m.status,
            "spec_fingerprint": m.spec_fingerprint,
            "overrides": m.overrides,
        },
        "data": {
            "table": (data.table or {}).get("digest") if data else None,
            "sources": [
                {"uri": s.uri, "fingerprint": s.fingerprint, "rows": s.rows} for s in data.sources
            ]
            if data
            else [],
            "target": data.target if data else None,
            "features": data.features if data else [],
            "split": {k: v for k, v in (data.split if data else {}).items() if k not in ("seed",)},
        },
        "code": {
            "commit": m.code.commit,
            "dirty": m.code.dirty if "dirty" in m.code.model_fields_set else None,
            "changed_files": m.code.changed_files,
        },
        "environment": {
            "fingerprint": env.fingerprint,
            "python": env.python.version or None,
            "platform": env.platform.platform or None,
            "packages": {
                k: packages[k]
                for k in ("scikit-learn", "numpy", "scipy", "pandas", "skops", "seedline")
                if k in packages
            },
        },
        "seeds": {
            "master": m.seeds.master if m.seeds else None,
            "hash_seed": (m.seeds.hash_seed if m.seeds else {}).get("PYTHONHASHSEED"),
            "derived": m.seeds.derived if m.seeds else {},
        },
        "metrics": dict(m.metrics),
        "fingerprints": dict(m.fingerprints),
        "probe": m.probe.as_dict(),
        # steps taken fitted from earlier models: what this model was built on
        "built_on": [
            {
                "step": s.name,
                "ref": s.frozen_from.ref,
                "run_id": s.frozen_from.run_id,
                "model": s.frozen_from.model,
                "source_step": s.frozen_from.step,
                "fitted": s.frozen_from.fitted,
            }
            for s in m.steps
            if s.frozen_from is not None
        ],
    }


# -- the probe input ----------------------------------------------------------------------------
def rebuild_probe_input(
    manifest: Manifest, root: Path, store: RunRecords | None = None
) -> tuple[Any, Any]:
    """(X_test, X_train) of a run, rebuilt from its manifest, the test part checked against its fingerprint.

    With ``store``, a data file that is missing or changed here is read from the run's data
    snapshot when it kept one (a teammate's clone without the data), as ``reproduce`` does.
    """
    from seedline.core.spec import Spec
    from seedline.execution.runner import prepare

    expected = manifest.probe.input or ""
    if not expected:
        raise RegistryError(
            f"run {manifest.run_id} recorded no probe input fingerprint",
            hint="run the spec again with this version of seedline",
        )
    try:
        spec = Spec.from_dict(manifest.spec)
        loaded = None
        if store is not None and manifest.data and any(s.snapshot for s in manifest.data.sources):
            from seedline.workflow.reproduce import check_data, use_snapshots

            _, reads = use_snapshots(manifest, store, check_data(manifest, root), [])
            loaded = reads.load(spec.data, root)
        p = prepare(spec, project_root=root, loaded=loaded)
    except SeedlineError as exc:
        raise RegistryError(
            f"cannot rebuild the probe set of run {manifest.run_id}: {exc.message}",
            hint=exc.hint or "the data or code the run used is no longer where it was",
        ) from exc
    kind = expected.split(":", 1)[0]
    found = fingerprint_value(p.X_test, kind=kind)
    if found != expected:
        from seedline.workflow.reproduce import check_data

        changes = check_data(manifest, root)
        what = (
            "; ".join(d.describe() for d in changes)
            or "the rows selected for the test split differ"
        )
        raise RegistryError(
            f"the data changed since run {manifest.run_id}: its probe rows no longer hash to the recorded "
            f"{expected[:24]}... (found {found[:24]}...): {what}",
            hint="restore the data the run used, or make a new run on the new data and register that",
        )
    return p.X_test, p.X_train


def local_classes(model_bytes: bytes, manifest: Manifest) -> list[str]:
    """The types in a model that come from the run's own project-local modules whose source it stored."""
    stored = [n for n, e in manifest.code.local_modules.items() if e.object]
    return [t for t in model_types(model_bytes) if any(t.startswith(f"{n}.") for n in stored)]


def local_code(manifest: Manifest, read: Any, where: str) -> LocalCode:
    """The run's project-local modules, their sources read from the store by address."""
    modules = {n: e.as_dict() for n, e in manifest.code.local_modules.items()}
    return LocalCode.from_record(modules, read, where=where)


def register_run(
    store: Store,
    run_ref: str,
    name: str,
    *,
    description: str | None = None,
    trust_local: bool = True,
) -> ModelVersion:
    """Register run ``run_ref`` as the next version of ``name``.

    ``trust_local`` (the default) records the decision that this version may load the run's
    own project-local classes without ``--trust``: the classes whose module source the run
    stored, and only from that source, checked against its hash. Other types outside
    seedline's trusted list still need ``--trust``.
    """
    manifest = store.manifest(run_ref)
    if manifest.status != "succeeded":
        raise RegistryError(
            f"run {manifest.run_id} did not succeed (status {manifest.status!r}); only a fitted model can be registered"
        )
    model_object = manifest.artifacts.get("model")
    probe_object = manifest.artifacts.get("probe")
    if not model_object or not probe_object:
        raise RegistryError(
            f"run {manifest.run_id} has no saved {'model' if not model_object else 'probe predictions'}",
            hint="run the spec again with this version of seedline",
        )
    model_bytes = store.objects.get(model_object)  # present and intact
    trusted_local = local_classes(model_bytes, manifest) if trust_local else []
    for entry in manifest.code.local_modules.values():
        if entry.object:
            store.objects.get(entry.object)  # every stored source is there and intact
    X_test, X_train = rebuild_probe_input(manifest, store.project_root, store)
    probe_bytes = frame_to_parquet(X_test)
    kind = str(manifest.probe.input).split(":", 1)[0]
    if fingerprint_value(parquet_to_frame(probe_bytes), kind=kind) != manifest.probe.input:
        raise RegistryError(
            f"the probe rows of run {manifest.run_id} do not survive a Parquet round trip unchanged",
            hint="a column type Parquet cannot hold exactly; please report this with the spec",
        )
    schema = InputSchema.derive(X_train)
    manifest_object = store.objects.put(manifest.to_json().encode())
    from seedline.records.registry import Registry

    return Registry(store).create_version(
        name=name,
        run_id=manifest.run_id,
        model_object=model_object,
        manifest_object=manifest_object,
        probe_object=probe_object,
        probe_input_object=store.objects.put(probe_bytes),
        input_schema=schema.to_dict(),
        model_fingerprint=manifest.fingerprints.get("model"),
        predictions_fingerprint=manifest.fingerprints.get("predictions"),
        description=description,
        trusted_local=trusted_local,
    )


# -- resolving references -----------------------------------------------------------------------
def is_bundle(ref: str) -> bool:
    return (Path(ref) / BUNDLE_MARKER).is_file()


def open_model_store(start: str | Path = ".") -> RunRecords:
    """The store a model is read from: on the embedded default, with the standard library's
    ``sqlite3`` (``EmbeddedRecorder``: no SQLAlchemy to import, see ``records.versions``),
    under the conditions of the quick listing path; anywhere else through ``Store.find``."""
    project = find_project(start)
    if project is not None:
        recorder = EmbeddedRecorder.open(project)
        if recorder is not None:
            return recorder
    from seedline.records.tracking import Store

    return Store.find(start)


def _full_store(store: RunRecords) -> Store:
    """The same store through SQLAlchemy: for what only ``Store`` and ``Registry`` say."""
    from seedline.records.tracking import Store

    return store if isinstance(store, Store) else Store(store.root)


def _registry(store: RunRecords) -> Registry:
    from seedline.records.registry import Registry

    return Registry(_full_store(store))


def resolve_source(
    ref: str, *, store: RunRecords | None = None, start: str | Path = "."
) -> ModelSource:
    """A model by reference: bundle folder, NAME, NAME@N, NAME@alias, or a run id / prefix.

    A reference that exists is read as SQL text (``records.versions``, ``records.reading``);
    one that names nothing goes to ``Registry`` and ``Store``, which say what exists instead.
    """
    if is_bundle(ref):
        return load_bundle(Path(ref))
    if store is None:
        store = open_model_store(start)
    with store._reader() as rows:
        named = "@" in ref or has_model(rows, ref.strip())
        version = find_version(rows, ref) if named else None
    if named:
        return _from_version(store, version or _registry(store).resolve(ref))
    try:
        with store._reader() as rows:
            run_id = reading.resolve(rows, ref)
            address, _status = reading.manifest_object(rows, run_id)
    except RunNotFoundError as exc:
        if exc.candidates:
            raise
        names = _registry(store).names()
        raise ModelNotFoundError(
            f"{ref!r} is neither a registered model nor a run id.{did_you_mean(ref, names)}",
            hint=(f"registered models: {', '.join(names)}; " if names else "")
            + "'seedline models' lists models, 'seedline runs' lists runs",
        ) from None
    if address is None:  # still running, or interrupted: Store says which
        return _from_run(store, _full_store(store).manifest(run_id))
    return _from_run(store, Manifest.from_json(store.objects.get(address)))


def _from_version(store: RunRecords, v: ModelVersion) -> ModelSource:
    manifest = Manifest.from_json(store.objects.get(v.manifest_object))
    if not v.probe_object or not v.probe_input_object:
        raise RegistryError(f"{v.ref} has no stored probe set", hint="register the run again")
    probe_input = parquet_to_frame(store.objects.get(v.probe_input_object))
    return ModelSource(
        ref=v.ref,
        name=v.name,
        version=str(v.version),
        manifest=manifest,
        model_bytes=store.objects.get(v.model_object),
        probe=load_probe(store.objects.get(v.probe_object)),
        probe_input=probe_input,
        schema=InputSchema.from_dict(v.input_schema),
        registered=v,
        store=store,
        code=local_code(manifest, store.objects.get, v.ref),
        trusted_local=list(v.trusted_local),
    )


def _from_run(store: RunRecords, manifest: Manifest) -> ModelSource:
    if manifest.status != "succeeded":
        raise RegistryError(
            f"run {manifest.run_id} did not succeed (status {manifest.status!r}): it has no model"
        )
    model_object, probe_object = manifest.artifacts.get("model"), manifest.artifacts.get("probe")
    if not model_object or not probe_object:
        raise RegistryError(f"run {manifest.run_id} has no saved model and probe predictions")
    X_test, X_train = rebuild_probe_input(manifest, store.project_root, store)
    return ModelSource(
        ref=manifest.run_id,
        name=str(manifest.spec.get("name") or "model"),
        version=None,
        manifest=manifest,
        model_bytes=store.objects.get(model_object),
        probe=load_probe(store.objects.get(probe_object)),
        probe_input=X_test,
        schema=InputSchema.derive(X_train),
        store=store,
        code=local_code(manifest, store.objects.get, f"run {manifest.run_id}"),
    )


# -- bundles ------------------------------------------------------------------------------------
BUNDLE_FILES = {
    "model": "model.skops",
    "manifest": "manifest.json",
    "probe": "probe.npz",
    "probe_input": "probe_input.parquet",
    "schema": "input_schema.json",
}


def file_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def load_bundle(folder: Path) -> ModelSource:
    """A model from an exported bundle folder, each file checked against the hash recorded at export."""
    try:
        meta = json.loads((folder / BUNDLE_MARKER).read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{folder / BUNDLE_MARKER} is not readable: {exc}") from exc
    contents: dict[str, bytes] = {}
    for key, filename in BUNDLE_FILES.items():
        path = folder / filename
        if not path.is_file():
            raise BundleError(f"bundle {folder} lacks {filename}", hint="export the bundle again")
        data = path.read_bytes()
        recorded = meta.get("files", {}).get(filename)
        if recorded != file_digest(data):
            raise BundleError(
                f"{path} does not match the hash recorded when the bundle was exported (expected {recorded}, found {file_digest(data)})",
                hint="the file was modified or damaged; export the bundle again from the store",
            )
        contents[key] = data
    manifest = Manifest.from_json(contents["manifest"])
    ref = str(meta.get("ref") or folder)
    return ModelSource(
        ref=ref,
        name=str(meta.get("name") or manifest.spec.get("name") or "model"),
        version=str(meta["version"]) if meta.get("version") is not None else None,
        manifest=manifest,
        model_bytes=contents["model"],
        probe=load_probe(contents["probe"]),
        probe_input=parquet_to_frame(contents["probe_input"]),
        schema=InputSchema.from_dict(json.loads(contents["schema"])),
        bundle=folder,
        code=local_code(manifest, _bundle_code_reader(folder, manifest), f"bundle {folder}"),
    )


BUNDLE_CODE_DIR = "code"
"""Where a bundle keeps the sources of the model's project-local modules, by their project path."""


def bundle_code_path(path: str) -> Path:
    """The relative path of a recorded module inside a bundle's code folder; refuses paths that leave it."""
    rel = Path(path)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise BundleError(
            f"the manifest records a local module at {path!r}, which is not a relative path"
        )
    return Path(BUNDLE_CODE_DIR) / rel


def _bundle_code_reader(folder: Path, manifest: Manifest) -> Any:
    by_address = {
        str(e.object): bundle_code_path(e.path)
        for e in manifest.code.local_modules.values()
        if e.object
    }

    def read(address: str) -> bytes:
        path = folder / by_address[address]
        try:
            return path.read_bytes()
        except OSError as exc:
            raise BundleError(
                f"bundle {folder} lacks {by_address[address]}, the source of a project-local module of its model",
                hint="export the bundle again with this seedline",
            ) from exc

    return read


__all__ = [
    "TRUSTED_TYPES",
    "BundleError",
    "ModelLoadError",
    "ModelSource",
    "UntrustedModelError",
    "lineage",
    "load_estimator",
    "local_classes",
    "register_run",
    "resolve_source",
    "untrusted_types",
]
