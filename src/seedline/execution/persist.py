"""Saving and loading fitted models without pickle.

Every fitted object seedline stores (a run's pipeline, a cached step) goes through
``dump_model``/``load_model``. scikit-learn objects are written with skops. Objects that
seedline itself wrote and verified by content address are loaded trusting the types they
contain (``trusted_own``); anything coming from outside is loaded with an explicit trusted
type list and refused otherwise (serving, ``--trust``).

A model with deep-learning steps (a skorch net, a ``seedline.keras`` estimator) is saved
as a zip archive instead, still without pickle:

- ``seedline-archive.json``: format and version, and per network its step, framework,
  weights file and the rest of its fitted state as JSON (training history, classes);
- ``model.skops``: the scikit-learn parts, each network replaced by ``"passthrough"``, and
  each network's class and parameters, which rebuild its architecture as the spec did;
- ``weights/<index>-<name>.safetensors``: the network's weights (safetensors: a JSON
  header and raw little-endian tensors, nothing executable).

``load_model`` rebuilds each network from its class and parameters, loads the weights and
puts it back in its place. Models without networks are plain skops bytes, as before.

``load_model`` is the one loader of every model seedline reads: a cached step, a run's
model, a registered version, a bundle, an MLflow export. Its trust policy:

- ``trusted_own``: an object seedline wrote itself and read back from its content-addressed
  store (the cache, ``reproduce``): every type in it is loaded;
- otherwise only scikit-learn's and NumPy's state types (:data:`TRUSTED_TYPES`), the types
  a caller passes in ``trusted`` (a registered version's own project-local classes, the
  types approved at an MLflow export), or anything with ``trust=True`` (``--trust``);
  other types raise :class:`UntrustedModelError` before anything is imported.

A model whose steps come from project-local modules is given their recorded sources
(:class:`~seedline.execution.localcode.LocalCode`): they are checked against the hashes
the run recorded and imported from there, so the project folder is not needed.
"""

from __future__ import annotations

import copy
import io
import json
import zipfile
from collections.abc import Iterable, Mapping
from typing import Any

from seedline.core.deeplearning import DeepLearningError
from seedline.core.errors import SeedlineError
from seedline.execution import loadmemo
from seedline.execution.localcode import LocalCode, LocalCodeError
from seedline.execution.model_checks import check_model_structure
from seedline.execution.skops_types import ZIP_TIME, skops_dumps, skops_io
from seedline.execution.skops_types import untrusted_types as _skops_untrusted

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
        # pandas dtypes a fitted state may record (category_encoders): descriptions, no code
        "pandas.CategoricalDtype",
        "pandas.StringDtype",
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
    """Raised when a model file cannot be read back (damaged, a module it needs is missing, or an incompatible version)."""


ARCHIVE_MARKER = "seedline-archive.json"
ARCHIVE_FORMAT = "seedline-model-archive"
ARCHIVE_VERSION = 1
_SKOPS_NAME = "model.skops"


def has_networks(model: Any) -> list[tuple[int | None, str, Any]]:
    """The deep-learning steps of ``model`` (index, name, step): what an archive keeps apart."""
    from seedline.core.deeplearning import deep_learning_steps

    return deep_learning_steps(model)


def dump_model(model: Any) -> bytes:
    """Serialise a fitted estimator or pipeline (skops format; an archive with safetensors weights when it holds networks; never pickle)."""
    networks = has_networks(model)
    if not networks:
        return skops_dumps(model)
    return _dump_archive(model, networks)


def _dump_archive(model: Any, networks: list[tuple[int | None, str, Any]]) -> bytes:
    from seedline.core.deeplearning import export_step, state_json

    skeleton: Any = None
    if networks[0][0] is not None:
        skeleton = copy.copy(model)  # shallow: the other steps are shared, not copied
        replaced = {i for i, _, _ in networks}
        skeleton.steps = [
            (name, "passthrough" if i in replaced else est)
            for i, (name, est) in enumerate(model.steps)
        ]
    architectures: dict[str, Any] = {}
    entries: list[dict[str, Any]] = []
    files: dict[str, bytes] = {}
    for index, name, est in networks:
        key = f"{index if index is not None else 'model'}-{name}"
        architectures[key] = {"class": type(est), "params": est.get_params(deep=False)}
        framework, tensors, state = export_step(est)
        weights = f"weights/{key}.safetensors"
        files[weights] = _safetensors_bytes(framework, tensors)
        entries.append(
            {
                "key": key,
                "index": index,
                "name": name,
                "framework": framework,
                "class": f"{type(est).__module__}.{type(est).__qualname__}",
                "weights": weights,
                "tensors": len(tensors),
                "state": json.loads(state_json(state)),
            }
        )
    header = {
        "format": ARCHIVE_FORMAT,
        "version": ARCHIVE_VERSION,
        "skops": _SKOPS_NAME,
        "pipeline": skeleton is not None,
        "networks": entries,
    }
    payload = {"pipeline": skeleton, "networks": architectures}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        members = {
            ARCHIVE_MARKER: json.dumps(header, indent=2, sort_keys=True).encode(),
            _SKOPS_NAME: skops_dumps(payload),
            **files,
        }
        for member, data in members.items():
            info = zipfile.ZipInfo(member, date_time=ZIP_TIME)
            info.create_system = 3  # the same bytes wherever it is written
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()


def _safetensors_bytes(framework: str, tensors: dict[str, Any]) -> bytes:
    if framework == "torch":
        from safetensors.torch import save as save_torch

        return bytes(save_torch(tensors))
    from safetensors.numpy import save as save_numpy

    return bytes(save_numpy(tensors))


def _load_safetensors(framework: str, data: bytes) -> dict[str, Any]:
    if framework == "torch":
        from safetensors.torch import load as load_torch

        return dict(load_torch(data))
    from safetensors.numpy import load as load_numpy

    return dict(load_numpy(data))


def _archive(data: bytes) -> zipfile.ZipFile | None:
    """The zip archive, when ``data`` is one that ``dump_model`` wrote for a model with networks."""
    if not data.startswith(b"PK\x03\x04"):
        return None
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        return None
    if ARCHIVE_MARKER not in zf.namelist():
        zf.close()
        return None  # a plain skops file (skops files are zip archives too)
    return zf


def is_plain_skops(data: bytes) -> bool:
    """Whether ``dump_model`` wrote these bytes as a plain skops file (no networks, no archive)."""
    zf = _archive(data)
    if zf is None:
        return True
    zf.close()
    return False


def _header(zf: zipfile.ZipFile) -> dict[str, Any]:
    try:
        header: dict[str, Any] = json.loads(zf.read(ARCHIVE_MARKER))
    except (ValueError, KeyError) as exc:
        raise DeepLearningError(
            f"the model archive's {ARCHIVE_MARKER} is unreadable: {exc}"
        ) from exc
    if header.get("format") != ARCHIVE_FORMAT or not isinstance(header.get("version"), int):
        raise DeepLearningError(f"not a seedline model archive (format {header.get('format')!r})")
    if header["version"] > ARCHIVE_VERSION:
        raise DeepLearningError(
            f"model archive version {header['version']} is newer than this seedline reads ({ARCHIVE_VERSION})",
            hint="upgrade seedline to load it",
        )
    return header


# model_types of the last few files read: serve, predict and export ask it several times of
# one file (the trust check, then the load), and each answer is a full walk of skops' tree
_TYPES_SEEN: dict[str, list[str]] = {}
_TYPES_SEEN_MAX = 8


def model_types(data: bytes) -> list[str]:
    """Every type in a saved model outside skops' own defaults (of its skops part, for an archive)."""
    key = loadmemo.address_of(data)
    seen = _TYPES_SEEN.get(key)
    if seen is None:
        memo = _recall(data)
        seen = memo.types if memo is not None and memo.types is not None else _model_types(data)
        if len(_TYPES_SEEN) >= _TYPES_SEEN_MAX:
            _TYPES_SEEN.pop(next(iter(_TYPES_SEEN)))
        _TYPES_SEEN[key] = seen
    return list(seen)


def _model_types(data: bytes) -> list[str]:
    try:
        zf = _archive(data)
        if zf is not None:
            with zf:
                data = zf.read(_header(zf)["skops"])
        return sorted(_skops_untrusted(data))
    except DeepLearningError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"the model file is not a readable skops file or seedline model archive: {type(exc).__name__}: {exc}",
            hint="the file was damaged or is not a model seedline saved; export or register it again",
        ) from exc


def untrusted_types(data: bytes, trusted: Iterable[str] = ()) -> list[str]:
    """Types in a saved model that neither skops, :data:`TRUSTED_TYPES` nor ``trusted`` cover."""
    allowed = set(trusted)
    return [t for t in model_types(data) if t not in TRUSTED_TYPES and t not in allowed]


def load_model(
    data: bytes,
    *,
    trusted: Iterable[str] | None = None,
    trusted_own: bool = False,
    trust: bool = False,
    code: LocalCode | None = None,
    where: str = "this model",
    recorded_packages: Mapping[str, str] | None = None,
    facts: dict[str, str] | None = None,
) -> Any:
    """Load a model saved by ``dump_model`` (the one loader; see the module's docstring for the policy).

    ``code``: the model's project-local modules, verified and made importable first.
    ``recorded_packages``: the versions the run recorded, named in the error when loading
    fails with a different version installed here.

    A plain skops file loaded before by this user comes from its load memo
    (:mod:`~seedline.execution.loadmemo`), after the same trust check. ``facts``: a dict the
    memo's facts are copied into when the model came from it; a caller that passes one
    writes the memo itself once it has verified what it loaded (the step cache).
    """
    memo = _recall(data)
    if not (trusted_own or trust):
        offending = untrusted_types(data, trusted or ())
        if offending:
            raise UntrustedModelError(offending, where)
    if code:
        code.install()
    if memo is not None:
        model = loadmemo.revive(memo)
        if model is not None:
            check_model_structure(model, where)
            if facts is not None:
                facts.update(memo.facts)
            if memo.types is None and memo.address in _TYPES_SEEN:  # the walk is done: keep it
                loadmemo.remember(memo.address, model, _TYPES_SEEN[memo.address], memo.facts)
            return model
    zf = _archive(data)
    try:
        if zf is None:
            model = (
                _load_own(data)
                if trusted_own
                else skops_io().loads(data, trusted=model_types(data))
            )
        else:
            with zf:
                header = _header(zf)
                inner = zf.read(header["skops"])
                payload = (
                    _load_own(inner)
                    if trusted_own
                    else skops_io().loads(inner, trusted=_skops_untrusted(inner))
                )
                model = _restore(zf, header, payload)
    except (SeedlineError, LocalCodeError):
        raise
    except Exception as exc:
        raise _load_error(exc, where, recorded_packages) from exc
    # a crafted file can hold tree nodes that point out of range: refuse it before first use
    check_model_structure(model, where)
    if zf is None and facts is None:
        address = loadmemo.address_of(data)
        loadmemo.remember(address, model, _TYPES_SEEN.get(address))
    return model


def _recall(data: bytes) -> loadmemo.Memo | None:
    """The verified load memo of these bytes (only plain skops files have one)."""
    return loadmemo.recall(loadmemo.address_of(data))


def _schema_types(data: bytes) -> list[str]:
    """Every ``module.Class`` named in a skops file's schema: all the types skops checks, and more.

    Read from the schema's JSON, without building skops' tree of nodes (which reads every
    array): for a file seedline wrote itself, where every type is trusted anyway.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return _types_named(json.loads(zf.read("schema.json")))


def _load_own(data: bytes) -> Any:
    """Load skops bytes seedline wrote and verified itself (``trusted_own``: every type in them).

    skops only loads with its list of the file's types in hand; the types the schema names
    are taken for it, and only if skops still finds one outside them (a type it reaches
    another way) is the file walked a second time for the exact list.
    """
    sio = skops_io()  # first: importing skops.io.exceptions would import skops the stock way
    from skops.io.exceptions import UntrustedTypesFoundException

    try:
        return sio.loads(data, trusted=_schema_types(data))
    except UntrustedTypesFoundException:
        return sio.loads(data, trusted=model_types(data))


def load_own_step(data: bytes, name: str, where: str = "this model") -> Any:
    """The step ``name`` of the pipeline in plain skops bytes seedline wrote and verified
    itself (``trusted_own``), loading only that step's part of the schema.

    skops writes each object's whole state wherever it occurs (an object met twice is
    written twice, under the same ``__id__``), so a step's part of the schema stands on its
    own: its arrays are read from the same zip, and nothing of the other steps is built.
    Loading a model's first, small step no longer builds its forest of trees. The step comes
    out as a whole load would give it; an object it shared with another step is its own
    copy. Raises ``KeyError`` when the bytes hold no pipeline with such a step (a caller
    then loads the whole file), and what skops raises for a part it cannot load.
    """
    skops_io()  # first: importing skops.io.exceptions would import skops the stock way
    from skops.io._audit import audit_tree, get_tree
    from skops.io._utils import read_schema

    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        schema, context = read_schema(zf)
        part = _step_state(schema, name)
        trusted = _types_named(part)
        tree = get_tree(part, context, trusted=trusted)
        audit_tree(tree, trusted=trusted)
        step = tree.construct()
    check_model_structure(step, where)
    return step


def _step_state(schema: dict[str, Any], name: str) -> dict[str, Any]:
    """The schema's state of the pipeline step ``name`` (``KeyError`` when there is none)."""
    if schema.get("__module__") != "sklearn.pipeline" or schema.get("__class__") != "Pipeline":
        raise KeyError(f"not a pipeline: {schema.get('__module__')}.{schema.get('__class__')}")
    steps = schema["content"]["content"]["steps"]
    if steps.get("__loader__") != "ListNode":
        raise KeyError("the pipeline's steps are not a list")
    for pair in steps["content"]:
        if pair.get("__loader__") != "TupleNode" or len(pair["content"]) != 2:
            raise KeyError("a pipeline step is not a (name, estimator) pair")
        label, state = pair["content"]
        if (
            isinstance(label, dict)
            and label.get("__loader__") == "JsonNode"
            and isinstance(label.get("content"), str)
            and json.loads(label["content"]) == name
            and isinstance(state, dict)
        ):
            return state
    raise KeyError(f"the pipeline has no step {name!r}")


def _types_named(state: Any) -> list[str]:
    """Every ``module.Class`` a part of a skops schema names (see ``_schema_types``)."""
    stack: list[Any] = [state]
    found: set[str] = set()
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            module, name = node.get("__module__"), node.get("__class__")
            if isinstance(module, str) and isinstance(name, str):
                found.add(f"{module}.{name}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return sorted(found)


def _load_error(exc: Exception, where: str, recorded: Mapping[str, str] | None) -> ModelLoadError:
    """A load failure explained: a missing module, or the libraries that moved since the run."""
    import importlib.metadata

    message = f"cannot load the model of {where}: {type(exc).__name__}: {exc}"
    if isinstance(exc, ImportError):
        module = getattr(exc, "name", None) or "?"
        return ModelLoadError(
            message,
            hint=f"module {module!r} is not importable here: install the distribution that provides it "
            "(an exported bundle's requirements.txt names them), or, for a project-local module, load "
            "the model from a registered version or run of this seedline, which stores its source",
        )
    moved = []
    for name, version in sorted((recorded or {}).items()):
        if name not in ("scikit-learn", "numpy", "scipy", "skops", "torch", "keras", "skorch"):
            continue
        try:
            here = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            here = "not installed"
        if here != version:
            moved.append(f"{name} {version} at training, {here} here")
    hint = (
        "the model was saved with other library versions ("
        + "; ".join(moved)
        + "): install the recorded versions"
        if moved
        else "the file may be damaged; export or register the model again from the store"
    )
    return ModelLoadError(message, hint=hint)


def _restore(zf: zipfile.ZipFile, header: dict[str, Any], payload: dict[str, Any]) -> Any:
    from seedline.core.deeplearning import restore_step

    model = payload["pipeline"]
    for entry in header["networks"]:
        arch = payload["networks"][entry["key"]]
        tensors = _load_safetensors(entry["framework"], zf.read(entry["weights"]))
        est = restore_step(
            entry["framework"], arch["class"], arch["params"], tensors, entry["state"]
        )
        if entry["index"] is None:
            return est
        model.steps[entry["index"]] = (entry["name"], est)
    return model
