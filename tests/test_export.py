"""``seedline export``: ONNX, MLflow and bundle exports predict as the original on the probe set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .conftest import git, make_project, run_cli
from .serving_support import add_custom_step, load_model, project_with_run


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Any]:
    """The penguins example registered as penguins@1, with its source and fitted model."""
    from seedline.records.tracking import Store
    from seedline.workflow.registration import register_run

    root, run_id = project_with_run(tmp_path_factory.mktemp("export"))
    register_run(Store.find(root), run_id, "penguins")
    source, model = load_model(root, "penguins@1")
    return root, source, model


def test_onnx_export_predicts_the_same_labels_and_reports_the_deviation(
    registered: tuple[Path, Any, Any],
) -> None:
    """The ONNX file, run by onnxruntime on the probe set, gives every label the model gives; the deviation is reported."""
    import onnxruntime as ort

    from seedline.workflow.export import onnx_feeds

    root, source, model = registered
    out = run_cli(root, "export", "penguins@1", "--format", "onnx", "-o", "model.onnx", "--json")
    report = json.loads(out.stdout)
    assert report["rows"] == 86 and report["labels_equal"] == 86
    assert report["parity"]["verdict"] == "bitwise"
    assert 0 <= report["max_abs_deviation"] < 0.5 and len(report["deviation_at"]) == 2
    sess = ort.InferenceSession(str(root / "model.onnx"), providers=["CPUExecutionProvider"])
    labels, proba = sess.run(None, onnx_feeds(source.schema, source.probe_input))
    assert np.array_equal(labels.astype(str), model.predict(source.probe_input).astype(str))
    assert np.abs(proba - model.predict_proba(source.probe_input)).max() == pytest.approx(
        report["max_abs_deviation"]
    )
    meta = {
        p.key: p.value for p in __import__("onnx").load(str(root / "model.onnx")).metadata_props
    }
    assert meta["seedline_ref"] == "penguins@1" and meta["seedline_run"] == source.run_id
    # an existing output is never overwritten silently
    again = run_cli(
        root, "export", "penguins@1", "--format", "onnx", "-o", "model.onnx", check=False
    )
    assert again.returncode == 2 and "already exists" in again.stderr


def test_mlflow_export_loads_in_mlflow_and_predicts_bitwise_the_same(
    registered: tuple[Path, Any, Any],
) -> None:
    """mlflow.pyfunc.load_model(PATH).predict(df) gives exactly the model's predictions on the probe set."""
    mlflow_pyfunc = pytest.importorskip("mlflow.pyfunc")
    from seedline.workflow.export import export_model

    root, source, model = registered
    target = root / "mlflow-model"
    report = export_model(model, source, "mlflow", target, parity=None)
    assert report.bitwise and report.rows == 86
    assert {
        "MLmodel",
        "conda.yaml",
        "python_env.yaml",
        "requirements.txt",
        "code/seedline_mlflow_pyfunc.py",
    } <= set(report.files)
    loaded = mlflow_pyfunc.load_model(str(target))
    X = source.probe_input
    got = loaded.predict(X)
    assert np.array_equal(np.asarray(got), model.predict(X))
    proba = loaded.predict(X, params={"predict_method": "predict_proba"})
    assert np.array_equal(np.asarray(proba), model.predict_proba(X))
    assert loaded.metadata.metadata["seedline_run"] == source.run_id
    requirements = (target / "requirements.txt").read_text()
    assert f"scikit-learn=={source.manifest.environment.packages['scikit-learn']}" in requirements


def test_bundle_holds_model_manifest_lock_dockerfile_and_card(
    registered: tuple[Path, Any, Any],
) -> None:
    """A bundle has the skops model, the manifest, a lock at the recorded versions, a Dockerfile and a model card; it serves as a reference."""
    root, source, model = registered
    out = run_cli(root, "export", "penguins@1", "--format", "bundle", "-o", "bundle", "--json")
    report = json.loads(out.stdout)
    bundle = root / "bundle"
    for name in (
        "model.skops",
        "manifest.json",
        "requirements.txt",
        "Dockerfile",
        "README.md",
        "seedline-bundle.json",
    ):
        assert (bundle / name).is_file(), name
    assert report["bitwise"]
    assert (bundle / "model.skops").read_bytes() == source.model_bytes
    assert json.loads((bundle / "manifest.json").read_text())["run_id"] == source.run_id
    packages = source.manifest.environment.packages
    lock = (bundle / "requirements.txt").read_text()
    for name in ("scikit-learn", "numpy", "pandas", "skops"):
        assert f"{name}=={packages[name]}" in lock
    docker = (bundle / "Dockerfile").read_text()
    assert (
        "FROM python:3." in docker
        and '"seedline", "serve", "/model"' in docker
        and "SEEDLINE_TOKEN" in docker
    )
    card = (bundle / "README.md").read_text()
    assert "## Intended use" in card and "TODO" in card and source.run_id in card
    assert "accuracy" in card and source.manifest.code.commit in card
    # the bundle folder is itself a model reference
    pred = run_cli(root, "predict", "bundle", "data/penguins.csv", "-o", "from-bundle.csv")
    assert "bitwise" in pred.stderr
    import pandas as pd

    written = pd.read_csv(root / "from-bundle.csv")
    frame = pd.read_csv(root / "data" / "penguins.csv")
    assert written["prediction"].tolist() == model.predict(frame.drop(columns=["species"])).tolist()


def test_onnx_export_names_an_unsupported_step(tmp_path: Path) -> None:
    """A pipeline with a user-defined step gets an error naming that step and its class."""
    from seedline.execution.runner import run

    root = make_project(tmp_path, "penguins")
    add_custom_step(root)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "custom step")
    run_id = run(root / "seedline.yaml", overrides=["pipeline.clf.n_estimators=5"]).run_id
    out = run_cli(
        root, "export", run_id, "--format", "onnx", "-o", "m.onnx", "--trust", check=False
    )
    assert out.returncode == 2
    assert "step 'pipeline/passthru' (passthru.Identity) has no ONNX converter" in out.stderr
    assert not (root / "m.onnx").exists()
    assert "--format mlflow" in out.stderr
