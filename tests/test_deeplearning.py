"""Deep-learning steps (PyTorch via skorch, Keras 3 on the torch backend) under the seed plan.

The proof that matters runs in fresh processes, as a user's shell starts them: two runs of
the digits CNN give bit-identical weights (per layer) and predictions, ``reproduce`` says
bitwise, and the same training without seedline's controls does not repeat itself.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import seedline
from seedline.core.errors import PipelineError
from seedline.core.fingerprint import fingerprint_estimator, fingerprint_value
from seedline.execution.persist import (
    ARCHIVE_MARKER,
    UntrustedModelError,
    dump_model,
    load_model,
    untrusted_types,
)
from seedline.execution.runner import prepare
from seedline.records.tracking import Store
from seedline.workflow.check import NONDETERMINISTIC, check
from seedline.workflow.reproduce import reproduce

from .conftest import clean_env, git, make_project, run_json

# the `dl` extra (`make test` installs it); looked up, not imported: Keras must not be
# imported before seedline picks its backend
_MISSING = [
    m for m in ("torch", "skorch", "keras", "safetensors") if importlib.util.find_spec(m) is None
]
if _MISSING and os.environ.get("CI"):
    # CI installs the dl extra through `make test`: a missing framework there is a failure
    raise RuntimeError(f"the dl extra is not installed in CI (no {', '.join(_MISSING)})")
if _MISSING:
    pytest.skip(
        f"the dl extra is not installed (no {', '.join(_MISSING)})", allow_module_level=True
    )

SPECS = {"torch": "seedline.yaml", "keras": "seedline-keras.yaml"}


@pytest.fixture
def digits_cnn(tmp_path: Path) -> Path:
    return make_project(tmp_path, "digits-cnn")


def _commit(project: Path, message: str) -> None:
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", message)


def test_importing_seedline_loads_no_deep_learning_framework() -> None:
    """seedline's own modules (fingerprints, seeding, determinism, scripts, persistence, the runner) import no framework."""
    code = (
        "import sys, seedline, seedline.core.fingerprint, seedline.core.seeding, "
        "seedline.core.deeplearning, seedline.execution.persist, seedline.execution.runner, "
        "seedline.core.determinism, seedline.workflow.scripts, seedline.keras; "
        "print(sorted({'torch', 'keras', 'skorch', 'safetensors', 'tensorflow', 'jax', 'h5py'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=clean_env()
    )
    assert out.stdout.strip() == "[]"


def test_torch_fingerprints_are_stable_and_canonical() -> None:
    """Tensor and module fingerprints are pinned, dtype-aware, layout-independent, and have one NaN."""
    import torch

    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    lin = torch.nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0]]))
        lin.bias.copy_(torch.tensor([0.5]))
    # hard-coded: a change here changes every stored network fingerprint (and empties caches)
    assert (
        fingerprint_value(t)
        == "value:b45b0bd0fc41f3c88e496cb4c4bcec203f1d6b0048bf64d2da6ffdb8e27bbaca"
    )
    assert (
        fingerprint_value(lin)
        == "value:129ff50d902449d14860daf8c35287b498cfe721e3135e0f844ce1e5cdc61144"
    )
    assert fingerprint_value(t) == fingerprint_value(t.t().contiguous().t())
    assert fingerprint_value(t) != fingerprint_value(t.double())
    nan = float("nan")
    assert fingerprint_value(torch.tensor([nan])) == fingerprint_value(torch.tensor([-nan]))


def _manifest(project: Path, run_id: str) -> Any:
    return Store.open(project).manifest(run_id)


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_two_runs_in_fresh_processes_are_bitwise_and_reproduce(
    framework: str, digits_cnn: Path
) -> None:
    """A `seedline run` and its `seedline reproduce`, each a fresh process, train identical per-layer weights and predictions; reproduce says bitwise.

    The reproduction is the second training: a fresh interpreter that fits the network
    again from the manifest and stores its own run, whose fingerprints are compared here
    with the original's (a third interpreter for a second `run` would prove nothing more).
    """
    spec = SPECS[framework]
    first = run_json(digits_cnn, "run", spec, "--no-cache")
    assert first["status"] == "succeeded"
    report = run_json(digits_cnn, "reproduce", first["run_id"])
    assert report["verdict"] == "bitwise", report
    assert report["first_divergent_layer"] is None
    a, b = (_manifest(digits_cnn, r) for r in (first["run_id"], report["reproduction"]))
    assert b.status == "succeeded" and b.run_id != a.run_id
    assert a.fingerprints["model"] == b.fingerprints["model"]
    assert a.fingerprints["predictions"] == b.fingerprints["predictions"]
    net_a, net_b = a.steps[-1], b.steps[-1]
    assert net_a.layers and net_a.layers == net_b.layers
    assert list(net_a.layers) == (
        ["conv", "hidden", "out"] if framework == "torch" else ["1:Conv2D", "5:Dense", "6:Dense"]
    )
    assert a.metrics["accuracy"] > 0.8

    controls = a.seeds.globals["deep_learning"]
    torch_controls = controls["torch"]
    assert torch_controls["deterministic_algorithms"] is True
    assert torch_controls["cudnn"] == {
        **torch_controls["cudnn"],
        "deterministic": True,
        "benchmark": False,
    }
    assert torch_controls["num_threads"] == 1  # execution.threads
    assert controls["gpu"] is False and controls["steps"]["pipeline/net"]["device"] == "cpu"
    assert a.environment.env_vars["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    if framework == "torch":
        assert "torch/pipeline/net" in a.seeds.derived
        assert (
            controls["steps"]["pipeline/net"]["seeds"]["torch"]
            == a.seeds.derived["torch/pipeline/net"]
        )
    else:
        assert controls["keras"]["backend"] == "torch"
        assert a.seeds.random_states["net__random_state"]["source"] == "plan"


NEGATIVE_CONTROL = """
import json, sys
import numpy as np
from sklearn.datasets import load_digits
from sklearn.preprocessing import MinMaxScaler
sys.path.insert(0, ".")
import cnn
import keras_cnn
from seedline.core.deeplearning import layer_fingerprints

np.random.seed(0)  # what a careful script does, and all it does
X, y = load_digits(return_X_y=True)
X = MinMaxScaler().fit_transform(X)
nets = {
    "torch": cnn.TorchDigitsCNN(max_epochs=1),
    "keras": keras_cnn.KerasDigitsCNN(epochs=1),
}
print(json.dumps({name: layer_fingerprints(net.fit(X, y)) for name, net in nets.items()}))
"""


@pytest.mark.slow
def test_negative_control_without_seedlines_controls_training_differs(digits_cnn: Path) -> None:
    """The same networks trained in two fresh processes with only numpy.random.seed get different weights."""
    results = []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", NEGATIVE_CONTROL],
            cwd=digits_cnn,
            env=clean_env(KERAS_BACKEND="torch"),
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for framework in ("torch", "keras"):
        first, second = results[0][framework], results[1][framework]
        assert first.keys() == second.keys()
        assert first != second, (
            f"{framework}: unseeded training repeated itself, so the proof proves nothing"
        )


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_models_with_networks_are_saved_as_skops_plus_safetensors(
    framework: str, digits_cnn: Path
) -> None:
    """A pipeline with a network is saved as skops + safetensors (no pickle) and loads back bit for bit."""
    spec = digits_cnn / SPECS[framework]
    result = seedline.run(spec, use_cache=False)
    blob = dump_model(result.model)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        names = zf.namelist()
        header = json.loads(zf.read(ARCHIVE_MARKER))
    assert names == [ARCHIVE_MARKER, "model.skops", "weights/1-net.safetensors"]
    assert header["networks"][0]["framework"] == framework
    assert all(not t.startswith(("builtins.", "pickle", "__main__")) for t in untrusted_types(blob))

    loaded = load_model(blob, trusted_own=True)
    p = prepare(spec)
    for (name, original), (_, restored) in zip(result.model.steps, loaded.steps, strict=True):
        assert fingerprint_estimator(restored) == fingerprint_estimator(original), name
    np.testing.assert_array_equal(
        loaded.predict_proba(p.X_test), result.model.predict_proba(p.X_test)
    )
    with pytest.raises(UntrustedModelError, match=r"outside seedline's trusted list"):
        load_model(blob)  # outside seedline's own store, types must be named
    # a pipeline without a network is still a plain skops file
    plain = dump_model(result.model.steps[0][1])
    with zipfile.ZipFile(io.BytesIO(plain)) as zf:
        assert ARCHIVE_MARKER not in zf.namelist()


def test_a_cache_hit_on_a_model_archive_writes_it_no_load_memo(digits_cnn: Path) -> None:
    """Cache entries of a pipeline with a network are steps of its model archive; a hit loads
    the archive, checks each step's fingerprint and writes no memo for it: an archive always
    loads through its weights (predict, serve and export read the same file)."""
    from seedline.execution import loadmemo

    first = seedline.run(digits_cnn / "seedline.yaml")
    address = first.manifest.artifacts["model"]
    hit = seedline.run(digits_cnn / "seedline.yaml")
    assert [s.cache for s in hit.manifest.steps] == ["hit", "hit"]
    assert hit.fingerprints == first.fingerprints
    assert loadmemo.recall(address) is None


JITTER = '''
"""The digits CNN, with an offset read from the environment added to the output layer after training."""
import os

import torch

from cnn import TorchDigitsCNN


class JitterCNN(TorchDigitsCNN):
    def fit(self, X, y=None, **kwargs):
        super().fit(X, y, **kwargs)
        with torch.no_grad():
            self.module_.out.bias += float(os.environ.get("SEEDLINE_TEST_JITTER", "0"))
        return self
'''


@pytest.mark.slow
def test_reproduce_names_the_first_divergent_layer(
    digits_cnn: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a network's weights diverge, reproduce names its first divergent layer, and only that one."""
    (digits_cnn / "jitter.py").write_text(JITTER)
    spec = digits_cnn / "seedline.yaml"
    spec.write_text(
        spec.read_text().replace("class: cnn.TorchDigitsCNN", "class: jitter.JitterCNN")
    )
    _commit(digits_cnn, "jitter the output layer")
    monkeypatch.delenv("SEEDLINE_TEST_JITTER", raising=False)
    original = seedline.run(spec, use_cache=False)
    monkeypatch.setenv("SEEDLINE_TEST_JITTER", "0.001")
    report = reproduce(original.run_id, project_root=digits_cnn)
    assert report.verdict == "failed"
    assert report.first_divergent_step == "net"
    assert report.first_divergent_layer == "out"
    assert "layer 'out'" in report.likely_cause
    net = next(s for s in report.steps if s["name"] == "net")
    assert net["first_divergent_layer"] == "out"
    assert "out" in net["fitted_deviation"]["where"]


UNPOOL = '''
"""The digits CNN with a max-unpooling in front: an operation without a deterministic implementation."""
import torch
from torch import nn

from cnn import DigitsCNN, TorchDigitsCNN


class UnpooledCNN(DigitsCNN):
    def forward(self, x):
        x = x.to(torch.float32).reshape(-1, 1, 8, 8)
        pooled, where = nn.functional.max_pool2d(x, 2, return_indices=True)
        return super().forward(nn.functional.max_unpool2d(pooled, where, 2))


class UnpooledNet(TorchDigitsCNN):
    def __init__(self, module=UnpooledCNN, **kwargs):
        super().__init__(module, **kwargs)
'''


@pytest.mark.slow
def test_check_flags_nondeterministic_torch_ops_and_measures_threads(digits_cnn: Path) -> None:
    """check names the torch op without a deterministic implementation, and compares thread counts; run refuses it."""
    (digits_cnn / "unpool.py").write_text(UNPOOL)
    spec = digits_cnn / "seedline.yaml"
    spec.write_text(
        spec.read_text()
        .replace("class: cnn.TorchDigitsCNN", "class: unpool.UnpooledNet")
        .replace("    params: {max_epochs: 6, lr: 0.01, batch_size: 64}\n", "")
    )
    _commit(digits_cnn, "unpooling")
    report = check(spec, sample=300)
    net = next(s for s in report.steps if s.name == "net")
    assert net.verdict == NONDETERMINISTIC
    assert "max_unpooling2d_forward_out" in net.reasons[0]
    assert any(
        h.kind == "nondeterministic_op" and "max_unpooling2d_forward_out" in h.message
        for h in report.hygiene
    )
    threads = report.comparisons["threads"]
    assert threads.skipped is None and "net" in threads.steps
    assert report.comparisons["repeat"].steps["net"].differs is False  # reseeded per step
    with pytest.raises(
        PipelineError, match="max_unpooling2d_forward_out does not have a deterministic"
    ):
        seedline.run(spec, use_cache=False)
