"""Exporting a model: ONNX, an MLflow model directory, or a self-contained serving bundle.

Every export starts from a model that passed its parity check, and every format is checked
again after it is written, on the same probe set:

- ``onnx``: converted with skl2onnx, run with onnxruntime; class labels must agree on
  every probe row, and the largest deviation of probabilities (ONNX computes in float32)
  is reported. A step with no ONNX converter is named in the error.
- ``mlflow``: an MLflow model directory (``MLmodel`` with a ``python_function`` flavor whose
  loader module ships inside the directory, ``conda.yaml``, ``python_env.yaml``,
  ``requirements.txt``), written without importing MLflow; its loader is run on the probe
  set and must predict bit for bit what the model does. The sources of the model's
  project-local modules are in its ``code`` folder (MLflow's ``code_paths``).
- ``bundle``: the model, the manifest, the probe set, the input schema, the sources of the
  model's project-local modules (``code/``), the requirements, a Dockerfile that serves it
  with ``seedline serve`` and a model card (README.md). ``seedline serve BUNDLE_DIR``
  serves it; every file's hash is recorded and checked when it is loaded, and each local
  module's source against the hash its run recorded.

Requirements name seedline and every distribution the model's classes come from (found
with ``importlib.metadata.packages_distributions``' mapping, as ``core.environment`` reads
it: scikit-learn, xgboost, the user's own installed library...), pinned at the versions the
run recorded; pip resolves the rest.

Outputs are built in a temporary folder (or file) beside the target and renamed into
place at the end: a failed export leaves nothing behind. ``--force`` replaces only an
export of seedline's, atomically (``workflow.outputs``).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import importlib.metadata
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seedline.core.environment import packages_distributions
from seedline.core.errors import SeedlineError
from seedline.core.version import __version__
from seedline.execution.persist import model_types
from seedline.execution.persist import untrusted_types as persist_untrusted
from seedline.workflow.deviation import bitwise_equal, compare_arrays
from seedline.workflow.outputs import staged_folder, write_file_atomic
from seedline.workflow.parity import ParityReport, normalise_predictions
from seedline.workflow.registration import (
    BUNDLE_FILES,
    BUNDLE_MARKER,
    ModelSource,
    bundle_code_path,
    file_digest,
    frame_to_parquet,
)
from seedline.workflow.schema import InputSchema

FORMATS = ("onnx", "mlflow", "bundle")
ONNX_LABEL_TOLERANCE = 0  # probe rows whose class label may differ
# ONNX computes in float32: a regressor's predictions are bounded by this absolute deviation
# (``--atol`` overrides it); the comparison is the shared one of ``workflow.deviation``
ONNX_FLOAT32_ATOL = 1e-4


class ExportError(SeedlineError):
    """Raised when a model cannot be exported in the asked format, or the export does not predict as the model does."""


@dataclass
class ExportReport:
    """Where the export went and how it predicted on the probe set."""

    format: str
    path: str
    model: str
    run_id: str
    rows: int = 0
    labels_equal: int = 0
    max_abs_deviation: float = 0.0
    deviation_at: list[int] = field(default_factory=list)
    bitwise: bool = False
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    parity: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# -- helpers ------------------------------------------------------------------------------------
def _staged_dir(target: Path, *, force: bool) -> contextlib.AbstractContextManager[Path]:
    """A temporary folder beside ``target``, swapped in when the block succeeds (see ``workflow.outputs``)."""
    marker = {"written_by": "seedline export", "seedline_version": __version__}
    return staged_folder(target, force=force, marker=marker)


def _write_atomic(target: Path, data: bytes, *, force: bool) -> None:
    write_file_atomic(target, data, force=force)


def _fitted_steps(est: Any, path: str) -> Iterator[tuple[str, Any]]:
    """(path, estimator) of every fitted estimator inside ``est``, itself included."""
    yield path, est
    for name, sub in getattr(est, "steps", None) or []:
        if sub is not None and not isinstance(sub, str):
            yield from _fitted_steps(sub, f"{path}/{name}")
    for item in getattr(est, "transformers_", None) or []:
        name, sub = item[0], item[1]
        if sub is not None and not isinstance(sub, str):
            yield from _fitted_steps(sub, f"{path}/{name}")
    for name, sub in getattr(est, "transformer_list", None) or []:
        if sub is not None and not isinstance(sub, str):
            yield from _fitted_steps(sub, f"{path}/{name}")


# what loading and serving a model needs whatever its classes: seedline and its loader's libraries
_SERVING_DISTRIBUTIONS = ("seedline", "scikit-learn", "numpy", "scipy", "pandas", "skops")
_KERAS_BACKENDS = {"torch": "torch", "tensorflow": "tensorflow", "jax": "jax"}


def _canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))


def model_distributions(model: Any, source: ModelSource) -> tuple[list[str], list[str]]:
    """The distributions the model's classes come from, and the top-level modules no distribution provides.

    Classes are those of every fitted step and every type saved in the model file;
    modules of the standard library and the model's project-local modules (which travel
    as sources) need no distribution.
    """
    import sys

    local = set(source.code.names) | set(source.manifest.code.local_modules)
    modules = {t.split(".")[0] for t in model_types(source.model_bytes)}
    modules |= {type(est).__module__.split(".")[0] for _, est in _fitted_steps(model, "model")}
    from seedline.core.deeplearning import deep_learning_steps, framework_of

    for _, _, net in deep_learning_steps(model):
        framework = framework_of(net)
        if framework == "torch":
            modules |= {"torch", "skorch"}
        elif framework == "keras":
            # a Keras model runs on the backend the run recorded (torch unless set otherwise)
            env_vars = source.manifest.environment.env_vars
            backend = str(env_vars.get("KERAS_BACKEND") or "torch")
            modules |= {"keras", _KERAS_BACKENDS.get(backend, "torch")}
    providers = packages_distributions()  # importlib.metadata's mapping, read the cheap way
    dists: set[str] = set()
    unprovided: list[str] = []
    for module in sorted(modules):
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or top in local or top == "builtins":
            continue
        if any(m == top or m.startswith(f"{top}.") for m in local):
            continue
        found = providers.get(top)
        if not found:
            unprovided.append(top)
            continue
        dists.update(_canonical(d) for d in found if d)
    return sorted(dists), unprovided


def requirements_lock(source: ModelSource, model: Any = None) -> tuple[list[str], list[str]]:
    """Requirements for serving: seedline and every distribution of the model's classes, at the recorded versions.

    Returns (lines, notes). A distribution the run did not record is pinned at its version
    here and noted; a module no installed distribution provides is noted.
    """
    recorded = {_canonical(k): v for k, v in source.manifest.environment.packages.items()}
    notes: list[str] = []
    names = {_canonical(n) for n in _SERVING_DISTRIBUTIONS}
    if model is not None:
        dists, unprovided = model_distributions(model, source)
        names.update(dists)
        if unprovided:
            notes.append(
                f"module(s) {', '.join(unprovided)} of the model come from no installed distribution "
                "and are not project-local modules of the run: install them where the model is served"
            )
    lines: list[str] = []
    unrecorded: list[str] = []
    for name in sorted(names):
        version = recorded.get(name)
        if version is None:
            try:
                version = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                notes.append(
                    f"{name} is neither recorded by run {source.run_id} nor installed here"
                )
                lines.append(name)
                continue
            unrecorded.append(name)
        lines.append(f"{name}=={version}")
    if unrecorded:
        notes.append(
            f"{len(unrecorded)} package(s) were not recorded by run {source.run_id} (installed after it): "
            f"{', '.join(unrecorded)}; pinned at the versions installed here"
        )
    return lines, notes


def _model_card(source: ModelSource, report: ParityReport | None, requirements: list[str]) -> str:
    lin = source.lineage()
    run, data, code, env, seeds = (
        lin["run"],
        lin["data"],
        lin["code"],
        lin["environment"],
        lin["seeds"],
    )
    reg = lin["model"]
    title = f"{source.name}" + (f" version {source.version}" if source.version else "")
    lines = [
        f"# Model card: {title}",
        "",
        f"Exported by seedline {__version__} on {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} "
        f"from `{source.ref}` (run `{run['id']}`).",
        "",
        "## Intended use",
        "",
        "_TODO: who should use this model, for what decisions, on what population._",
        "",
        "## Out-of-scope uses",
        "",
        "_TODO: uses this model was not built or evaluated for._",
        "",
        "## Limitations and ethical considerations",
        "",
        "_TODO: known failure modes, groups it may serve worse, risks of misuse._",
        "",
        "## Metrics (on the held-out test split)",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {v:.6g} |" for k, v in sorted(source.manifest.metrics.items())],
        "",
        "## Lineage",
        "",
        f"- run: `{run['id']}` (spec `{run['spec']}`, created {run['created_at']}, spec fingerprint `{run['spec_fingerprint']}`)",
    ]
    if reg:
        lines.append(
            f"- registered as `{reg['ref']}` on {reg['created_at']}"
            + (f", aliases: {', '.join(reg['aliases'])}" if reg["aliases"] else "")
            + (f" — {reg['description']}" if reg.get("description") else "")
        )
    lines += [
        f"- data: table `{data['table']}`, target `{data['target']}`, features {', '.join(f'`{f}`' for f in data['features'])}",
        *[
            f"  - source `{s['uri']}`: `{s['fingerprint']}` ({s['rows']} rows)"
            for s in data["sources"]
        ],
        f"- split: {json.dumps(data['split'], sort_keys=True)}",
        f"- code: commit `{code['commit']}`"
        + (" (with uncommitted changes)" if code.get("dirty") else ""),
        f"- environment: `{env['fingerprint']}`, Python {env['python']}, "
        + ", ".join(f"{k} {v}" for k, v in env["packages"].items()),
        f"- seeds: master {seeds['master']}, PYTHONHASHSEED {seeds['hash_seed']}",
        f"- model fingerprint: `{source.manifest.fingerprints.get('model')}`",
        f"- probe predictions: `{source.manifest.probe.predictions}` on {source.manifest.probe.rows} rows",
        "",
        "## Parity at export",
        "",
        f"{report.summary() if report else 'not checked'}",
        "",
        "## Input schema",
        "",
        "| column | type | training dtype | missing seen | categories |",
        "|---|---|---|---|---|",
        *[
            f"| {c.name} | {c.kind} | {c.dtype} | {'yes' if c.nullable else 'no'} | "
            + (
                ", ".join(c.categories[:10]) + (" ..." if len(c.categories) > 10 else "")
                if c.categories
                else ""
            )
            + " |"
            for c in source.schema.columns
        ],
        "",
        "## Serving",
        "",
        "```",
        "docker build -t " + re.sub(r"[^a-z0-9._-]", "-", source.name.lower()) + " .",
        "docker run -p 8080:8080 -e SEEDLINE_TOKEN=change-me "
        + re.sub(r"[^a-z0-9._-]", "-", source.name.lower()),
        "curl -H 'Authorization: Bearer change-me' localhost:8080/v2/models/" + source.name,
        "```",
        "",
        f"Requirements ({len(requirements)} pinned packages) are in `requirements.txt`.",
        "",
    ]
    return "\n".join(lines)


def _dockerfile(source: ModelSource) -> str:
    py = source.manifest.environment.python.version or "3.11"
    cmd = ["seedline", "serve", "/model", "--host", "0.0.0.0", "--port", "8080"]
    # a bundle is a folder anyone can edit, so serving it never honours a recorded trust
    # decision: the export, which needed the same approval, writes it here, visibly
    untrusted = persist_untrusted(source.model_bytes)
    trust_lines = []
    if untrusted:
        cmd.append("--trust")
        trust_lines = [
            "# --trust: approved at export for the types outside seedline's trusted list:",
            *[f"#   {t}" for t in untrusted],
        ]
    hash_seed = (source.manifest.seeds.hash_seed if source.manifest.seeds else {}).get(
        "PYTHONHASHSEED"
    )
    return "\n".join(
        [
            f"# Serves {source.ref} (run {source.run_id}) with seedline, in the Python and packages the run recorded.",
            f"FROM python:{py}-slim",
            "ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1"
            + (f" PYTHONHASHSEED={hash_seed}" if hash_seed else ""),
            "WORKDIR /model",
            "COPY requirements.txt .",
            "RUN pip install --no-cache-dir -r requirements.txt",
            "COPY . .",
            "RUN useradd --create-home --uid 10001 seedline",
            "USER seedline",
            "EXPOSE 8080",
            "HEALTHCHECK --interval=10s --timeout=3s CMD python -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/v2/health/ready')\"",
            "# the server listens on every interface of the container, so it needs a token:",
            "# docker run -e SEEDLINE_TOKEN=... -p 8080:8080 IMAGE",
            *trust_lines,
            f"CMD {json.dumps(cmd)}",
            "",
        ]
    )


# -- formats ------------------------------------------------------------------------------------
def export_bundle(
    model: Any,
    source: ModelSource,
    target: Path,
    *,
    parity: ParityReport | None,
    force: bool = False,
) -> ExportReport:
    report = ExportReport(format="bundle", path=str(target), model=source.ref, run_id=source.run_id)
    requirements, notes = requirements_lock(source, model)
    report.notes += notes
    code_files = {str(bundle_code_path(m.path)): m.source for m in source.code.modules}
    files: dict[str, bytes] = {
        BUNDLE_FILES["model"]: source.model_bytes,
        BUNDLE_FILES["manifest"]: source.manifest.to_json().encode(),
        BUNDLE_FILES["probe"]: _probe_npz(source.probe),
        BUNDLE_FILES["probe_input"]: frame_to_parquet(source.probe_input),
        BUNDLE_FILES["schema"]: json.dumps(source.schema.to_dict(), indent=2).encode(),
        "requirements.txt": (
            f"# Serving requirements of {source.ref}, pinned at the versions run {source.run_id} recorded.\n"
            + "".join(f"# note: {n}\n" for n in notes)
            + "\n".join(requirements)
            + "\n"
        ).encode(),
        "Dockerfile": _dockerfile(source).encode(),
        "README.md": _model_card(source, parity, requirements).encode(),
        ".dockerignore": b"Dockerfile\n.dockerignore\n",
        **code_files,
    }
    meta = {
        "format": 1,
        "seedline_version": __version__,
        "ref": source.ref,
        "name": source.name,
        "version": source.version,
        "run_id": source.run_id,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model_fingerprint": source.manifest.fingerprints.get("model"),
        "files": {name: file_digest(files[name]) for name in [*BUNDLE_FILES.values(), *code_files]},
        "code": source.code.record(),
    }
    with _staged_dir(target, force=force) as tmp:
        for name, data in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
        (tmp / BUNDLE_MARKER).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        # the bundle must load back and predict bit for bit what the model predicts
        from seedline.workflow.registration import load_bundle

        back = load_bundle(tmp)
        again = back.load(trust=True)
        _compare_exact(model, again.predict, back.probe_input, report)
    report.files = sorted([*files, BUNDLE_MARKER])
    return report


def _probe_npz(probe: dict[str, np.ndarray]) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **probe)
    return buf.getvalue()


def _compare_exact(model: Any, predict: Any, X: Any, report: ExportReport) -> None:
    want = normalise_predictions(model.predict(X))
    got = normalise_predictions(predict(X))
    report.rows = len(X)
    report.labels_equal = (
        int(np.sum(got.astype(str) == want.astype(str))) if got.shape == want.shape else 0
    )
    report.bitwise = bitwise_equal(got, want)
    if not report.bitwise:
        raise ExportError(
            f"the exported {report.format} model predicts differently from the model on the probe set "
            f"({report.labels_equal} of {report.rows} rows agree)",
            hint="this is a bug in the export; please report it with the spec",
        )


def _mlflow_type(kind: str) -> str:
    return {
        "float": "double",
        "integer": "long",
        "boolean": "boolean",
        "string": "string",
        "datetime": "datetime",
    }[kind]


def export_mlflow(
    model: Any,
    source: ModelSource,
    target: Path,
    *,
    parity: ParityReport | None,
    force: bool = False,
) -> ExportReport:
    import yaml

    from seedline.workflow import mlflow_pyfunc

    report = ExportReport(format="mlflow", path=str(target), model=source.ref, run_id=source.run_id)
    requirements, notes = requirements_lock(source, model)
    report.notes += notes
    py = source.manifest.environment.python.version or "3.11"
    trusted = model_types(source.model_bytes)
    schema = source.schema
    inputs = [
        {"type": _mlflow_type(c.kind), "name": c.name, "required": not c.nullable}
        for c in schema.columns
    ]
    pred = source.probe.get("predictions")
    out_type = (
        "string"
        if pred is not None and pred.dtype.kind in "USO"
        else "double"
        if pred is not None and pred.dtype.kind == "f"
        else "long"
    )
    mlmodel = {
        "artifact_path": None,
        "flavors": {
            "python_function": {
                "loader_module": "seedline_mlflow_pyfunc",
                "code": "code",
                "data": "model.skops",
                "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
                "python_version": py,
            }
        },
        "model_uuid": uuid.uuid4().hex,
        "utc_time_created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
        "signature": {
            "inputs": json.dumps(inputs),
            "outputs": json.dumps([{"type": out_type, "required": True}]),
            "params": json.dumps(
                [{"name": "predict_method", "type": "string", "default": "predict", "shape": None}]
            ),
        },
        "metadata": {
            "seedline_ref": source.ref,
            "seedline_run": source.run_id,
            "seedline_version": __version__,
            "model_fingerprint": source.manifest.fingerprints.get("model"),
            "predictions_fingerprint": source.manifest.probe.predictions,
            "metrics": dict(source.manifest.metrics),
        },
    }
    conda = {
        "name": "mlflow-env",
        "channels": ["conda-forge"],
        "dependencies": [f"python={py}", "pip", {"pip": requirements}],
    }
    python_env = {
        "python": py,
        "build_dependencies": ["pip", "setuptools", "wheel"],
        "dependencies": ["-r requirements.txt"],
    }
    loader_source = Path(mlflow_pyfunc.__file__).read_bytes()
    with _staged_dir(target, force=force) as tmp:
        (tmp / "code").mkdir()
        (tmp / "code" / "seedline_mlflow_pyfunc.py").write_bytes(loader_source)
        for m in source.code.modules:  # MLflow puts code/ on sys.path; the loader checks them first
            path = tmp / bundle_code_path(m.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(m.source)
        (tmp / mlflow_pyfunc.LOCAL_CODE_FILE).write_text(
            json.dumps(source.code.record(), indent=2, sort_keys=True) + "\n"
        )
        (tmp / "model.skops").write_bytes(source.model_bytes)
        (tmp / mlflow_pyfunc.TRUSTED_TYPES_FILE).write_text(json.dumps(trusted, indent=2) + "\n")
        (tmp / mlflow_pyfunc.SCHEMA_FILE).write_text(json.dumps(schema.to_dict(), indent=2) + "\n")
        (tmp / "MLmodel").write_text(yaml.safe_dump(mlmodel, sort_keys=False))
        (tmp / "conda.yaml").write_text(yaml.safe_dump(conda, sort_keys=False))
        (tmp / "python_env.yaml").write_text(yaml.safe_dump(python_env, sort_keys=False))
        (tmp / "requirements.txt").write_text("\n".join(requirements) + "\n")
        (tmp / "input_example.json").write_text(
            json.dumps(_input_example(source), default=str) + "\n"
        )
        loaded = mlflow_pyfunc._load_pyfunc(str(tmp / "model.skops"))
        _compare_exact(model, loaded.predict, source.probe_input, report)
        report.files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
    return report


def _input_example(source: ModelSource) -> dict[str, Any]:
    head = source.probe_input.head(2)
    rows = [[None if _isnan(v) else v for v in row] for row in head.itertuples(index=False)]
    return {"dataframe_split": {"columns": [str(c) for c in head.columns], "data": rows}}


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and v != v


# -- ONNX ---------------------------------------------------------------------------------------
def _onnx_unsupported(model: Any) -> list[tuple[str, str]]:
    from skl2onnx._supported_operators import sklearn_operator_name_map

    out: list[tuple[str, str]] = []
    for path, est in _fitted_steps(model, "pipeline"):
        if type(est) not in sklearn_operator_name_map:
            out.append((path, f"{type(est).__module__}.{type(est).__qualname__}"))
    return out


def _onnx_ready_copy(model: Any, notes: list[str]) -> Any:
    """A copy adjusted where skl2onnx needs it: string imputers match '' (sent for a missing value) instead of NaN."""
    from sklearn.impute import SimpleImputer

    twin = copy.deepcopy(model)
    for path, est in _fitted_steps(twin, "pipeline"):
        stats = getattr(est, "statistics_", None)
        if (
            isinstance(est, SimpleImputer)
            and stats is not None
            and np.asarray(stats).dtype == object
            and isinstance(est.missing_values, float)
            and np.isnan(est.missing_values)
        ):
            est.missing_values = ""
            notes.append(
                f"{path}: a missing text value is sent to the ONNX model as an empty string (skl2onnx imputes strings only)"
            )
    return twin


def onnx_feeds(schema: InputSchema, X: Any) -> dict[str, np.ndarray]:
    """The ONNX model's inputs for a table: one [rows, 1] tensor per column."""
    feeds: dict[str, np.ndarray] = {}
    for c in schema.columns:
        s = X[c.name]
        if c.kind == "float":
            feeds[c.name] = s.to_numpy(dtype=np.float32, na_value=np.nan).reshape(-1, 1)
        elif c.kind == "integer":
            feeds[c.name] = s.to_numpy(dtype=np.int64).reshape(-1, 1)
        elif c.kind == "boolean":
            feeds[c.name] = s.to_numpy(dtype=np.bool_).reshape(-1, 1)
        else:
            feeds[c.name] = (
                s.astype(object).where(s.notna(), "").to_numpy(dtype=object).reshape(-1, 1)
            )
    return feeds


def export_onnx(
    model: Any,
    source: ModelSource,
    target: Path,
    *,
    parity: ParityReport | None,
    force: bool = False,
    atol: float | None = None,
    allow_deviation: bool = False,
) -> ExportReport:
    report = ExportReport(format="onnx", path=str(target), model=source.ref, run_id=source.run_id)
    try:
        import onnxruntime as ort
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import (
            BooleanTensorType,
            FloatTensorType,
            Int64TensorType,
            StringTensorType,
        )
    except ImportError as exc:
        raise ExportError(
            f"ONNX export needs skl2onnx and onnxruntime: {exc}",
            hint="pip install 'skl2onnx>=1.16,<2' 'onnxruntime>=1.17,<2'",
        ) from exc
    unsupported = _onnx_unsupported(model)
    if unsupported:
        path, cls = unsupported[0]
        raise ExportError(
            f"step {path!r} ({cls}) has no ONNX converter in skl2onnx, so the model cannot be exported to ONNX"
            + (
                f" (other unsupported steps: {', '.join(p for p, _ in unsupported[1:])})"
                if len(unsupported) > 1
                else ""
            ),
            hint="export with --format mlflow or --format bundle instead, or register a skl2onnx converter for that class",
        )
    types = {
        "float": FloatTensorType,
        "integer": Int64TensorType,
        "boolean": BooleanTensorType,
        "string": StringTensorType,
    }
    initial = []
    for c in source.schema.columns:
        if c.kind not in types:
            raise ExportError(
                f"column {c.name!r} holds {c.kind} values, which have no ONNX input type here",
                hint="convert it to a number or a string in the spec's data, or export another format",
            )
        initial.append((c.name, types[c.kind]([None, 1])))
    twin = _onnx_ready_copy(model, report.notes)
    final = twin.steps[-1][1] if hasattr(twin, "steps") else twin
    options = {id(final): {"zipmap": False}} if hasattr(final, "predict_proba") else {}
    try:
        onx = convert_sklearn(twin, initial_types=initial, options=options)
    except Exception as exc:
        raise ExportError(
            f"skl2onnx could not convert the model: {type(exc).__name__}: {exc}",
            hint="export with --format mlflow or --format bundle instead",
        ) from exc
    meta = {
        "seedline_ref": source.ref,
        "seedline_run": source.run_id,
        "model_fingerprint": str(source.manifest.fingerprints.get("model")),
        "missing_text": "empty string",
    }
    for k, v in meta.items():
        entry = onx.metadata_props.add()
        entry.key, entry.value = k, v
    data = onx.SerializeToString()

    # verification with onnxruntime on the probe set
    try:
        sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        outputs = sess.run(None, onnx_feeds(source.schema, source.probe_input))
    except Exception as exc:
        raise ExportError(
            f"onnxruntime cannot run the converted model: {type(exc).__name__}: {exc}",
            hint="export with --format mlflow or --format bundle instead",
        ) from exc
    X = source.probe_input
    want = normalise_predictions(model.predict(X))
    got = np.asarray(outputs[0]).reshape(want.shape[0], *want.shape[1:])
    report.rows = len(X)
    if want.dtype.kind in "fc":
        bound = ONNX_FLOAT32_ATOL if atol is None else atol
        cmp = compare_arrays(got, want, rtol=0.0, atol=bound)
        report.labels_equal = int(np.sum(got.astype(np.float64) == want.astype(np.float64)))
        report.max_abs_deviation = cmp["max_abs"]
        report.deviation_at = cmp["at"][:1]
        ok = cmp["within"]
        problem = f"predictions deviate by up to {report.max_abs_deviation:.3g} (bound {bound})"
    else:
        same = got.astype(str) == want.astype(str)
        report.labels_equal = int(same.sum())
        ok = report.rows - report.labels_equal <= ONNX_LABEL_TOLERANCE
        problem = f"{report.rows - report.labels_equal} of {report.rows} class labels differ"
        if len(outputs) > 1 and hasattr(model, "predict_proba"):
            proba = np.asarray(model.predict_proba(X), dtype=np.float64)
            cmp = compare_arrays(
                np.asarray(outputs[1], dtype=np.float64),
                proba,
                rtol=0.0,
                atol=np.inf if atol is None else atol,
            )
            report.max_abs_deviation = cmp["max_abs"]
            report.deviation_at = cmp["at"]
            if not cmp["within"]:
                ok = False
                problem = f"probabilities deviate by up to {report.max_abs_deviation:.3g} (row {report.deviation_at[0]}), beyond --atol {atol}"
    report.bitwise = False
    if not ok and not allow_deviation:
        raise ExportError(
            f"the ONNX model does not predict as the original on the probe set: {problem}",
            hint="ONNX computes in float32; pass --allow-deviation to write it anyway, or export --format mlflow/bundle",
        )
    if not ok:
        report.notes.append(f"written despite a deviation (--allow-deviation): {problem}")
    _write_atomic(target, data, force=force)
    report.files = [target.name]
    return report


def export_model(
    model: Any,
    source: ModelSource,
    fmt: str,
    target: str | Path,
    *,
    parity: ParityReport | None,
    force: bool = False,
    atol: float | None = None,
    allow_deviation: bool = False,
) -> ExportReport:
    """Export ``model`` (already checked for parity) in ``fmt`` to ``target``."""
    path = Path(target)
    if fmt == "onnx":
        report = export_onnx(
            model,
            source,
            path,
            parity=parity,
            force=force,
            atol=atol,
            allow_deviation=allow_deviation,
        )
    elif fmt == "mlflow":
        report = export_mlflow(model, source, path, parity=parity, force=force)
    elif fmt == "bundle":
        report = export_bundle(model, source, path, parity=parity, force=force)
    else:
        raise ExportError(
            f"unknown export format {fmt!r}", hint="use one of: " + ", ".join(FORMATS)
        )
    report.parity = parity.to_dict() if parity is not None else None
    return report


__all__ = [
    "FORMATS",
    "ExportError",
    "ExportReport",
    "export_model",
    "onnx_feeds",
    "requirements_lock",
]
