"""Training scripts outside a pipeline: ``seedline.determinism``, ``seedline exec`` and its reproduction.

The headline proof is the classic Keras ``mnist_cnn.py`` (on the 8x8 digits, TensorFlow
backend): two ``seedline exec`` runs save bit-identical weights and predictions and
``reproduce`` says bitwise, while two plain ``python mnist_cnn.py`` runs differ. The
verdicts themselves (bitwise, tolerance, failed with the first differing file and tensor)
are checked on a NumPy-only script that starts in a second.
"""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import seedline
from seedline.cli.exec_cmd import parse_exec_args
from seedline.core.deeplearning import DeepLearningError, weight_tensors
from seedline.core.errors import SeedlineError
from seedline.records.tracking import Store

from .conftest import clean_env, git, make_project, run_cli, run_json

HAS_TF = importlib.util.find_spec("tensorflow") is not None


def test_exec_arguments_pass_through_to_the_script() -> None:
    """Seedline's options are taken wherever they are; everything else, and all after '--', is the script's."""
    opts = parse_exec_args(
        [
            "train.py",
            "--epochs",
            "3",
            "--outputs",
            "w.keras",
            "p.npy",
            "--seed=7",
            "-v",
            "--",
            "--seed",
            "1",
        ]
    )
    assert opts["script"] == "train.py"
    assert opts["args"] == ["--epochs", "3", "-v", "--seed", "1"]
    assert opts["outputs"] == ["w.keras", "p.npy"] and opts["seed"] == 7 and opts["threads"] == 1


def test_determinism_seeds_records_and_restores() -> None:
    """determinism(seed) seeds Python and NumPy from the plan, returns a typed record, and as a context manager restores the generators."""
    random.seed(123)
    before = random.random()
    random.seed(123)
    with seedline.determinism(5, threads=1) as record:
        first = np.random.rand(3)
    assert random.random() == before  # restored on exit
    with seedline.determinism(5, threads=1) as again:
        np.testing.assert_array_equal(np.random.rand(3), first)
    assert record.seed == 5 and record.threads == 1
    assert record.seeds["numpy.random"] == again.seeds["numpy.random"]
    assert set(record.seeds) >= {"python.random", "numpy.random", "jax"}
    assert json.dumps(record.to_dict())  # JSON-able, for the run's manifest
    with pytest.raises(SeedlineError, match="must be an int in the range"):
        seedline.determinism(-1)
    with pytest.raises(SeedlineError, match="did you mean 'torch'"):
        seedline.determinism(1, frameworks=["troch"])


def test_weight_tensors_of_each_format(tmp_path: Path) -> None:
    """safetensors, .h5 and .pt state dicts are read tensor by tensor, without pickle; other files are not weights."""
    from safetensors.numpy import save_file

    tensors = {"a": np.arange(3.0), "b": np.ones((2, 2), dtype=np.float32)}
    save_file(tensors, str(tmp_path / "w.safetensors"))
    got = weight_tensors(tmp_path / "w.safetensors")
    assert got is not None and set(got) == {"a", "b"}
    np.testing.assert_array_equal(got["b"], tensors["b"])

    import h5py

    with h5py.File(tmp_path / "w.h5", "w") as h5:
        h5.create_dataset("layers/dense/vars/0", data=tensors["b"])
    assert list(weight_tensors(tmp_path / "w.h5") or {}) == ["layers/dense/vars/0"]

    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.save({"fc.weight": torch.ones(2, 3)}, tmp_path / "w.pt")
        assert (weight_tensors(tmp_path / "w.pt") or {})["fc.weight"].shape == (2, 3)
        torch.save({"obj": object()}, tmp_path / "evil.pt")
        with pytest.raises(DeepLearningError, match="could not read the tensors"):
            weight_tensors(tmp_path / "evil.pt")
    assert weight_tensors(tmp_path / "notes.txt") is None


SCRIPT = """
import os, sys
import numpy as np
from safetensors.numpy import save_file

rows = open("data.csv").read().count("\\n")
weights = {"a.weight": np.random.rand(3, 4) * rows, "b.weight": np.random.rand(2)}
weights["b.weight"] = weights["b.weight"] + float(os.environ.get("SEEDLINE_TEST_JITTER", "0"))
save_file(weights, sys.argv[1])
print("saved", sys.argv[1])
"""


@pytest.fixture
def script_project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "train.py").write_text(SCRIPT)
    (root / "data.csv").write_text("x\n1\n2\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


@pytest.mark.slow
def test_exec_records_and_reproduce_gives_each_verdict(script_project: Path) -> None:
    """exec records outputs per tensor; reproduce says bitwise, tolerance for a tiny drift, failed naming file and tensor, and refuses changed data."""
    env = clean_env(SEEDLINE_TEST_JITTER=None)
    args = ["exec", "train.py", "w.safetensors", "--outputs", "w.safetensors", "--data", "data.csv"]
    runs = [run_json(script_project, *args, env=env) for _ in range(2)]
    assert {r["status"] for r in runs} == {"succeeded"}
    assert runs[0]["outputs"] == runs[1]["outputs"]
    manifest = Store.open(script_project).manifest(runs[0]["run_id"])
    assert manifest.spec["kind"] == "script" and manifest.spec["args"] == ["w.safetensors"]
    assert list(manifest.steps[0].layers or {}) == ["a.weight", "b.weight"]
    assert manifest.seeds is not None and manifest.seeds.globals["numpy.random"]
    assert (
        manifest.environment.env_vars["PYTHONHASHSEED"]
        == manifest.seeds.hash_seed["PYTHONHASHSEED"]
    )
    assert "data:data.csv" in manifest.fingerprints

    run_id = runs[0]["run_id"]
    assert run_json(script_project, "reproduce", run_id, env=env)["verdict"] == "bitwise"
    tiny = run_json(
        script_project, "reproduce", run_id, env=clean_env(SEEDLINE_TEST_JITTER="1e-12")
    )
    assert tiny["verdict"] == "tolerance", tiny
    assert tiny["first_differing_tensor"] == "b.weight"
    big = run_cli(
        script_project,
        "reproduce",
        run_id,
        "--json",
        env=clean_env(SEEDLINE_TEST_JITTER="0.5"),
        check=False,
    )
    report = json.loads(big.stdout)
    assert big.returncode == 1 and report["verdict"] == "failed"
    assert (report["first_differing_file"], report["first_differing_tensor"]) == (
        "w.safetensors",
        "b.weight",
    )
    assert "b.weight" in report["likely_cause"]

    (script_project / "data.csv").write_text("x\n1\n2\n3\n")
    changed = run_cli(script_project, "reproduce", run_id, "--json", env=env, check=False)
    assert json.loads(changed.stdout)["likely_cause"] == "data file data.csv changed"


READS_THROUGH_SEEDLINE = """
import sys
import numpy as np
import seedline
from safetensors.numpy import save_file

rows = open(seedline.data_file("inputs/table.csv")).read().count("\\n")
save_file({"w": np.random.rand(2) * rows}, sys.argv[1])
"""


@pytest.mark.slow
def test_data_read_through_seedline_is_recorded_and_checked_by_reproduce(
    script_project: Path,
) -> None:
    """seedline.data_file in the script: the file is recorded like --data, and a changed copy stops reproduce."""
    (script_project / "inputs").mkdir()
    (script_project / "inputs" / "table.csv").write_text("x\n1\n2\n")
    (script_project / "reads.py").write_text(READS_THROUGH_SEEDLINE)
    git(script_project, "add", "-A")
    git(script_project, "commit", "-q", "-m", "a script that declares its data as it reads it")
    run = run_json(
        script_project, "exec", "reads.py", "w.safetensors", "--outputs", "w.safetensors"
    )
    assert run["status"] == "succeeded"
    manifest = Store.open(script_project).manifest(run["run_id"])
    assert "data:inputs/table.csv" in manifest.fingerprints
    assert run_json(script_project, "reproduce", run["run_id"])["verdict"] == "bitwise"
    (script_project / "inputs" / "table.csv").write_text("x\n1\n2\n3\n")
    changed = run_cli(script_project, "reproduce", run["run_id"], "--json", check=False)
    assert json.loads(changed.stdout)["likely_cause"] == "data file inputs/table.csv changed"
    # outside seedline exec it only checks the path
    with pytest.raises(SeedlineError, match="does not exist"):
        seedline.data_file(script_project / "inputs" / "missing.csv")


@pytest.mark.slow
def test_exec_refuses_what_it_cannot_record(script_project: Path) -> None:
    """No outputs, a missing script or a missing data file: a clear error before anything runs."""
    out = run_cli(script_project, "exec", "train.py", check=False)
    assert out.returncode == 2 and "--outputs" in out.stderr
    out = run_cli(script_project, "exec", "trian.py", "--outputs", "w", check=False)
    assert out.returncode == 2 and "does not exist" in out.stderr


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TF, reason="tensorflow is not installed (pip install -e '.[keras-tf]')")
def test_mnist_cnn_is_bitwise_under_exec_and_not_without(tmp_path: Path) -> None:
    """The classic Keras mnist_cnn.py on TensorFlow: bitwise under seedline exec (and reproduce), different as a plain script."""
    project = make_project(tmp_path, "digits-cnn")
    env = clean_env(KERAS_BACKEND="tensorflow")
    args = [
        "exec",
        "mnist_cnn.py",
        "--epochs",
        "1",
        "--outputs",
        "mnist_cnn.keras",
        "predictions.npy",
    ]
    # the second training under seedline is the reproduction: a fresh interpreter that runs
    # the script again in a copy of the project and is stored as its own run
    first = run_json(project, *args, env=env)
    assert first["status"] == "succeeded"
    report = run_json(project, "reproduce", first["run_id"], env=env)
    assert report["verdict"] == "bitwise", report
    store = Store.open(project)
    manifest, again = (store.manifest(r) for r in (first["run_id"], report["reproduction"]))
    assert again.status == "succeeded" and again.run_id != manifest.run_id
    assert {k: v for k, v in again.fingerprints.items() if k.startswith("output")} == {
        k: v for k, v in manifest.fingerprints.items() if k.startswith("output")
    }
    assert manifest.fingerprints["output:mnist_cnn.keras"]
    assert first["outputs"] == {
        k.removeprefix("output:"): v
        for k, v in again.fingerprints.items()
        if k.startswith("output:")
    }
    controls = manifest.seeds.globals["deep_learning"] if manifest.seeds else {}
    assert controls["tensorflow"]["op_determinism"] is True
    assert controls["keras"]["backend"] == "tensorflow"
    assert manifest.seeds is not None and manifest.seeds.globals["too_late"] == []

    plain = []
    for _ in range(2):
        plain_run = subprocess.run(
            [sys.executable, "mnist_cnn.py", "--epochs", "1", "--out", "plain.keras"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert plain_run.returncode == 0, plain_run.stderr[-3000:]
        plain.append(weight_tensors(project / "plain.keras") or {})
    assert plain[0].keys() == plain[1].keys()
    assert any(not np.array_equal(plain[0][k], plain[1][k]) for k in plain[0]), (
        "the unseeded script repeated itself, so the proof proves nothing"
    )
