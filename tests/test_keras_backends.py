"""Keras 3 on TensorFlow and JAX, as seedline runs it: the backend chosen, recorded, controlled and proven.

Each backend gets the proof that matters, in fresh processes as a shell starts them: two
trainings of the digits CNN (a run and its reproduction) give bit-identical weights per
layer and predictions, the manifest records the backend and its switches, ``reproduce``
says bitwise, the saved model predicts bit for bit from a fresh process on its recorded backend, and the same training
with only NumPy seeded does not repeat itself. Each test starts a few interpreters that
import TensorFlow or JAX: they are marked slow and sized to a one-epoch training.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from seedline.core.deeplearning import (
    DeepLearningError,
    framework_environment,
    frameworks_in_spec,
    keras_backend,
    prepare_frameworks,
)
from seedline.records.tracking import Store

from .conftest import clean_env, make_project, run_json

BACKENDS = {"tensorflow": "tensorflow", "jax": "jax"}
_MISSING = {b for b, module in BACKENDS.items() if importlib.util.find_spec(module) is None}
if _MISSING and os.environ.get("CI"):
    # CI installs the keras-tf and keras-jax extras: a missing backend there is a failure
    raise RuntimeError(f"the Keras backend extras are not installed in CI (no {sorted(_MISSING)})")

ONE_EPOCH = ["--set", "pipeline.net.epochs=1"]


def _needs(backend: str) -> Any:
    return pytest.mark.skipif(
        backend in _MISSING,
        reason=f"{backend} is not installed (pip install -e '.[keras-{backend[:3] if backend == 'tensorflow' else 'jax'}]')",
    )


def test_backend_comes_from_the_spec_then_the_variable_then_torch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The spec's execution.keras_backend wins over KERAS_BACKEND, which wins over the torch default; typos are refused."""
    monkeypatch.delitem(sys.modules, "keras", raising=False)
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert keras_backend({}) == "torch"
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert keras_backend({}) == "jax"
    assert keras_backend({"execution": {"keras_backend": "tensorflow"}}) == "tensorflow"
    monkeypatch.setenv("KERAS_BACKEND", "tensorfow")
    with pytest.raises(DeepLearningError, match="did you mean 'tensorflow'"):
        keras_backend({})
    (tmp_path / "net.py").write_text("from seedline.keras import KerasClassifier\n")
    spec = {"pipeline": [{"class": "net.Net"}], "execution": {"keras_backend": "jax"}}
    assert frameworks_in_spec(spec, tmp_path) == {"keras", "jax"}


def test_framework_environment_pins_what_frameworks_read_once() -> None:
    """TensorFlow gets its pools sized and op determinism; JAX gets XLA's deterministic and one-thread flags."""
    tf = framework_environment({"tensorflow"}, 1)
    assert tf["TF_NUM_INTRAOP_THREADS"] == "1" and tf["TF_NUM_INTEROP_THREADS"] == "1"
    assert tf["TF_DETERMINISTIC_OPS"] == "1"
    jax = framework_environment({"jax"}, 1)["XLA_FLAGS"].split()
    assert "--xla_cpu_multi_thread_eigen=false" in jax and "intra_op_parallelism_threads=1" in jax
    assert "--xla_gpu_deterministic_ops=true" in jax
    assert "intra_op_parallelism_threads=1" not in framework_environment({"jax"}, 2)["XLA_FLAGS"]


def test_a_spec_cannot_switch_the_backend_of_an_imported_keras(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Keras reads its backend once: a spec asking another one than the process has is refused, with the fix."""

    class FakeKeras:
        class backend:
            @staticmethod
            def backend() -> str:
                return "torch"

    monkeypatch.setitem(sys.modules, "keras", FakeKeras)
    (tmp_path / "net.py").write_text("from seedline.keras import KerasClassifier\n")
    spec = {"pipeline": [{"class": "net.Net"}], "execution": {"keras_backend": "jax"}}
    with pytest.raises(DeepLearningError, match="already imported Keras on 'torch'") as info:
        prepare_frameworks(spec, tmp_path)
    assert "fresh process" in (info.value.hint or "")


@pytest.mark.slow
@pytest.mark.parametrize("backend", [pytest.param(b, marks=_needs(b)) for b in BACKENDS])
def test_digits_cnn_is_bitwise_on_each_backend(backend: str, tmp_path: Path) -> None:
    """A fresh run on the backend and its fresh reproduction: same per-layer weights and predictions, backend and switches recorded, reproduce bitwise, the saved model predicts bit for bit.

    The reproduction is the second training (a fresh interpreter fitting again from the
    manifest, stored as its own run); a second `run` would start a third interpreter that
    imports the framework to prove nothing more.
    """
    project = make_project(tmp_path, "digits-cnn")
    args = ["run", "seedline-keras.yaml", "--no-cache", *ONE_EPOCH]
    args += ["--set", f"execution.keras_backend={backend}"]
    first = run_json(project, *args, env=clean_env(KERAS_BACKEND=None))
    assert first["status"] == "succeeded", first

    # the shell's KERAS_BACKEND says otherwise: the spec (recorded in the manifest) wins
    report = run_json(project, "reproduce", first["run_id"], env=clean_env(KERAS_BACKEND="torch"))
    assert report["verdict"] == "bitwise", report
    store = Store.open(project)
    a, b = (store.manifest(r) for r in (first["run_id"], report["reproduction"]))
    assert b.status == "succeeded" and b.run_id != a.run_id
    assert a.fingerprints["model"] == b.fingerprints["model"]
    assert a.fingerprints["predictions"] == b.fingerprints["predictions"]
    assert a.steps[-1].layers and a.steps[-1].layers == b.steps[-1].layers
    assert b.seeds is not None
    assert b.seeds.globals["deep_learning"]["keras"]["backend"] == backend
    assert list(a.steps[-1].layers) == ["1:Conv2D", "5:Dense", "6:Dense"]

    controls = a.seeds.globals["deep_learning"]
    assert controls["keras"]["backend"] == backend
    assert controls["steps"]["pipeline/net"]["backend"] == backend
    assert a.environment.env_vars["KERAS_BACKEND"] == backend
    assert "torch" not in controls  # the Keras example imports no torch on another backend
    if backend == "tensorflow":
        tf = controls["tensorflow"]
        assert tf["op_determinism"] is True
        assert (tf["intra_op_threads"], tf["inter_op_threads"]) == (1, 1)
        assert a.environment.env_vars["TF_NUM_INTRAOP_THREADS"] == "1"
    else:
        jax = controls["jax"]
        assert jax["default_backend"] == "cpu" and jax["prng_impl"] == "threefry2x32"
        assert "--xla_cpu_multi_thread_eigen=false" in a.environment.env_vars["XLA_FLAGS"]

    # the saved model (skops + safetensors) loads in a fresh process whose shell names
    # another backend: the archive's recorded backend is used, it predicts bit for bit, the
    # server's app is ready and answers as the model does, and the exported bundle passes
    load = subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT, first["run_id"]],
        cwd=project,
        env=clean_env(KERAS_BACKEND="torch"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert load.returncode == 0, load.stderr[-2000:]
    assert json.loads(load.stdout.strip().splitlines()[-1]) == {
        "backend": backend,
        "proba": a.probe.proba,
        "status": "ready",
        "served_equal": True,
        "export_bitwise": True,
    }


LOAD_AND_PREDICT = """
import json, sys
from seedline.core.fingerprint import fingerprint_array
from seedline.core.spec import Spec
from seedline.execution.persist import load_model
from seedline.execution.runner import prepare
from seedline.records.tracking import Store

store = Store.open(".")
manifest = store.manifest(sys.argv[1])
model = load_model(store.model_bytes(sys.argv[1]), trusted_own=True)
import keras
p = prepare(Spec.from_dict(manifest.spec), project_root=".")
proba = fingerprint_array(model.predict_proba(p.X_test), kind="proba")

# serve (in this process, through the app seedline serve runs) and export, on this backend
import tempfile, time
from pathlib import Path
from fastapi.testclient import TestClient
from seedline.serving.app import ServeConfig, create_app
from seedline.workflow.export import export_model
from seedline.workflow.registration import register_run, resolve_source

version = register_run(store, sys.argv[1], "cnn")
source = resolve_source(f"cnn@{version.version}", start=".")
config = ServeConfig(ref=source.ref, project=".", trust=bool(source.untrusted_types()))
app = create_app(config, source=source)
X = p.X_test.iloc[:8]
with TestClient(app) as client:
    deadline = time.monotonic() + 300
    while app.state.served.status == "loading" and time.monotonic() < deadline:
        time.sleep(0.2)
    body = {"dataframe_split": {"columns": list(X.columns), "data": X.values.tolist()}}
    served = client.post("/invocations", json=body).json()["predictions"]
bundle = Path(tempfile.mkdtemp()) / "bundle"
report = export_model(source.load(trust=True), source, "bundle", bundle, parity=None)
print(json.dumps({
    "backend": keras.backend.backend(),
    "proba": proba,
    "status": app.state.served.status,
    "served_equal": served == model.predict(X).tolist(),
    "export_bitwise": report.bitwise,
}))
"""


NEGATIVE_CONTROL = """
import json, sys
import numpy as np
from sklearn.datasets import load_digits
from sklearn.preprocessing import MinMaxScaler
sys.path.insert(0, ".")
import keras_cnn
from seedline.core.deeplearning import layer_fingerprints

np.random.seed(0)  # what a careful script does, and all it does
X, y = load_digits(return_X_y=True)
X = MinMaxScaler().fit_transform(X)
print(json.dumps(layer_fingerprints(keras_cnn.KerasDigitsCNN(epochs=1).fit(X, y))))
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", [pytest.param(b, marks=_needs(b)) for b in BACKENDS])
def test_negative_control_only_numpy_seeded_differs(backend: str, tmp_path: Path) -> None:
    """The same network trained in two fresh processes with only numpy.random.seed gets different weights."""
    project = make_project(tmp_path, "digits-cnn")
    results = []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", NEGATIVE_CONTROL],
            cwd=project,
            env=clean_env(KERAS_BACKEND=backend),
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert results[0].keys() == results[1].keys()
    assert results[0] != results[1], f"{backend}: unseeded training repeated itself"
