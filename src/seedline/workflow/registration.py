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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seedline.core.errors import RunNotFoundError, SeedlineError, did_you_mean
from seedline.core.fingerprint import fingerprint_value
from seedline.records.manifest import Manifest
from seedline.records.registry import ModelNotFoundError, ModelVersion, Registry, RegistryError
from seedline.records.tracking import Store
from seedline.workflow.schema import InputSchema

BUNDLE_MARKER = "seedline-bundle.json"

# Types beyond skops' own defaults that a scikit-learn model may hold and that seedline
# trusts: scikit-learn's and NumPy's internal state types, listed one by one. Anything else
# (a user's class, a function, an object from another library) needs --trust.
TRUSTED_TYPES: frozenset[str] = frozenset(
    {
        "builtins.slice",
        "collections.OrderedDict",
        "collections.defaultdict",
        "numpy.dtype",
        "numpy.float32",
        "numpy.float64",
        "numpy.int32",
        "numpy.int64",
        "numpy.ndarray",
        "numpy.random._mt19937.MT19937",
        "numpy.random._pcg64.PCG64",
        "numpy.random.mtrand.RandomState",
        "scipy.interpolate._bsplines.BSpline",
        "scipy.sparse._csr.csr_matrix",
        "scipy.sparse._csc.csc_matrix",
        "sklearn._loss.link.IdentityLink",
        "sklearn._loss.link.Interval",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.link.LogLink",
        "sklearn._loss.link.MultinomialLogit",
        "sklearn._loss.loss.AbsoluteError",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.loss.HalfMultinomialLoss",
        "sklearn._loss.loss.HalfPoissonLoss",
        "sklearn._loss.loss.HalfSquaredError",
        "sklearn._loss.loss.PinballLoss",
        "sklearn._loss._loss.CyHalfBinomialLoss",
        "sklearn._loss._loss.CyHalfMultinomialLoss",
        "sklearn._loss._loss.CyHalfPoissonLoss",
        "sklearn._loss._loss.CyHalfSquaredError",
        "sklearn._loss._loss.CyAbsoluteError",
        "sklearn._loss._loss.CyPinballLoss",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.ensemble._gb_losses.BinomialDeviance",
        "sklearn.ensemble._gb_losses.LeastSquaresError",
        "sklearn.ensemble._gb_losses.MultinomialDeviance",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.feature_selection._univariate_selection.chi2",
        "sklearn.feature_selection._univariate_selection.f_classif",
        "sklearn.feature_selection._univariate_selection.f_regression",
        "sklearn.gaussian_process.kernels.ConstantKernel",
        "sklearn.gaussian_process.kernels.DotProduct",
        "sklearn.gaussian_process.kernels.Matern",
        "sklearn.gaussian_process.kernels.Product",
        "sklearn.gaussian_process.kernels.RBF",
        "sklearn.gaussian_process.kernels.Sum",
        "sklearn.gaussian_process.kernels.WhiteKernel",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.metrics._dist_metrics.ManhattanDistance64",
        "sklearn.metrics._dist_metrics.MinkowskiDistance64",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        "sklearn.tree._tree.Tree",
        "sklearn.utils._bunch.Bunch",
    }
)


class UntrustedModelError(SeedlineError):
    """Raised when a model file holds types outside seedline's trusted list and --trust was not given."""

    def __init__(self, types: list[str], where: str) -> None:
        super().__init__(
            f"the model of {where} holds types outside seedline's trusted list: {', '.join(types)}",
            hint="loading them can run their code; if you trust this model, pass --trust (the override is logged)",
        )
        self.types = types


class ModelLoadError(SeedlineError):
    """Raised when a model file cannot be read by skops (damaged, or from an incompatible version)."""


class BundleError(SeedlineError):
    """Raised when a bundle folder is incomplete or its files no longer match their recorded hashes."""


def untrusted_types(model_bytes: bytes) -> list[str]:
    """Types in the skops file that neither skops nor seedline trusts."""
    from seedline.execution.skops_types import untrusted_types as skops_untrusted

    try:
        found = skops_untrusted(model_bytes)
    except Exception as exc:
        raise ModelLoadError(
            f"the model file is not a readable skops file: {type(exc).__name__}: {exc}"
        ) from exc
    return sorted(t for t in found if t not in TRUSTED_TYPES)


def load_estimator(model_bytes: bytes, *, trust: bool = False, where: str = "this model") -> Any:
    """Load a skops model, refusing types outside the trusted list unless ``trust``."""
    from seedline.execution.skops_types import skops_io
    from seedline.execution.skops_types import untrusted_types as skops_untrusted

    sio = skops_io()
    offending = untrusted_types(model_bytes)
    if offending and not trust:
        raise UntrustedModelError(offending, where)
    try:
        found = skops_untrusted(model_bytes)
        allowed = found if trust else [t for t in found if t in TRUSTED_TYPES]
        return sio.loads(model_bytes, trusted=allowed)
    except Exception as exc:
        raise ModelLoadError(
            f"cannot load the model of {where}: {type(exc).__name__}: {exc}",
            hint="the skops file may come from an incompatible scikit-learn version",
        ) from exc


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
    store: Store | None = None
    bundle: Path | None = None

    @property
    def run_id(self) -> str:
        return self.manifest.run_id

    def lineage(self) -> dict[str, Any]:
        """Run, data fingerprints, commit, environment, seeds and metrics of this model."""
        return lineage(self.manifest, self.registered)


def lineage(m: Manifest, registered: ModelVersion | None = None) -> dict[str, Any]:
    env = m.environment or {}
    packages = env.get("packages", {})
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
            "commit": m.code.get("commit"),
            "dirty": m.code.get("dirty"),
            "changed_files": m.code.get("changed_files", []),
        },
        "environment": {
            "fingerprint": env.get("fingerprint"),
            "python": (env.get("python") or {}).get("version"),
            "platform": (env.get("platform") or {}).get("platform"),
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
        "probe": dict(m.probe),
    }


# -- the probe input ----------------------------------------------------------------------------
def rebuild_probe_input(manifest: Manifest, root: Path) -> tuple[Any, Any]:
    """(X_test, X_train) of a run, rebuilt from its manifest, the test part checked against its fingerprint."""
    from seedline.core.spec import Spec
    from seedline.execution.runner import prepare

    expected = str(manifest.probe.get("input") or "")
    if not expected:
        raise RegistryError(
            f"run {manifest.run_id} recorded no probe input fingerprint",
            hint="run the spec again with this version of seedline",
        )
    try:
        p = prepare(Spec.from_dict(manifest.spec), project_root=root)
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


def register_run(
    store: Store, run_ref: str, name: str, *, description: str | None = None
) -> ModelVersion:
    """Register run ``run_ref`` as the next version of ``name``."""
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
    store.objects.get(model_object)  # present and intact
    X_test, X_train = rebuild_probe_input(manifest, store.project_root)
    probe_bytes = frame_to_parquet(X_test)
    kind = str(manifest.probe["input"]).split(":", 1)[0]
    if fingerprint_value(parquet_to_frame(probe_bytes), kind=kind) != manifest.probe["input"]:
        raise RegistryError(
            f"the probe rows of run {manifest.run_id} do not survive a Parquet round trip unchanged",
            hint="a column type Parquet cannot hold exactly; please report this with the spec",
        )
    schema = InputSchema.derive(X_train)
    manifest_object = store.objects.put(manifest.to_json().encode())
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
    )


# -- resolving references -----------------------------------------------------------------------
def is_bundle(ref: str) -> bool:
    return (Path(ref) / BUNDLE_MARKER).is_file()


def resolve_source(ref: str, *, store: Store | None = None, start: str | Path = ".") -> ModelSource:
    """A model by reference: bundle folder, NAME, NAME@N, NAME@alias, or a run id / prefix."""
    if is_bundle(ref):
        return load_bundle(Path(ref))
    if store is None:
        store = Store.find(start)
    registry = Registry(store)
    if "@" in ref or registry.has_model(ref.strip()):
        return _from_version(store, registry.resolve(ref))
    try:
        run_id = store.resolve(ref)
    except RunNotFoundError as exc:
        if exc.candidates:
            raise
        names = registry.names()
        raise ModelNotFoundError(
            f"{ref!r} is neither a registered model nor a run id.{did_you_mean(ref, names)}",
            hint=(f"registered models: {', '.join(names)}; " if names else "")
            + "'seedline models' lists models, 'seedline runs' lists runs",
        ) from None
    return _from_run(store, store.manifest(run_id))


def _from_version(store: Store, v: ModelVersion) -> ModelSource:
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
    )


def _from_run(store: Store, manifest: Manifest) -> ModelSource:
    if manifest.status != "succeeded":
        raise RegistryError(
            f"run {manifest.run_id} did not succeed (status {manifest.status!r}): it has no model"
        )
    model_object, probe_object = manifest.artifacts.get("model"), manifest.artifacts.get("probe")
    if not model_object or not probe_object:
        raise RegistryError(f"run {manifest.run_id} has no saved model and probe predictions")
    X_test, X_train = rebuild_probe_input(manifest, store.project_root)
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
    return ModelSource(
        ref=str(meta.get("ref") or folder),
        name=str(meta.get("name") or manifest.spec.get("name") or "model"),
        version=str(meta["version"]) if meta.get("version") is not None else None,
        manifest=manifest,
        model_bytes=contents["model"],
        probe=load_probe(contents["probe"]),
        probe_input=parquet_to_frame(contents["probe_input"]),
        schema=InputSchema.from_dict(json.loads(contents["schema"])),
        bundle=folder,
    )


__all__ = [
    "TRUSTED_TYPES",
    "BundleError",
    "ModelLoadError",
    "ModelSource",
    "UntrustedModelError",
    "lineage",
    "load_estimator",
    "register_run",
    "resolve_source",
    "untrusted_types",
]
