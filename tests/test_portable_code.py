"""Code that travels with the model: project-local modules stored by the run, loaded from there by one loader.

A pipeline with ``features.Interactions`` (in ``features.py``, which imports ``featlib.py``)
runs and registers; then the module files are gone, and ``predict``, ``serve`` and
``export`` still load the model, from the sources the run stored, checked against the
hashes it recorded. The registration records the decision to trust the run's own classes;
anything else still needs ``--trust``.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import seedline
from seedline.execution.localcode import LocalCode, LocalCodeError, LocalModule, file_fingerprint
from seedline.execution.persist import ModelLoadError, UntrustedModelError, load_model

from .conftest import git, make_project, run_cli
from .serving_support import serving
from .test_workers_anywhere import project_with_features


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Any]:
    """penguins + features.Interactions, run and registered as pen@1; the module files then removed."""
    from seedline.records.tracking import Store
    from seedline.workflow.registration import register_run

    root = project_with_features(tmp_path_factory.mktemp("portable"))
    result = seedline.run(root / "seedline.yaml", overrides=["pipeline.clf.n_estimators=5"])
    store = Store.find(root)
    version = register_run(store, result.run_id, "pen")
    store.close()
    for name in ("features.py", "featlib.py"):
        (root / name).unlink()
    shutil.rmtree(root / "__pycache__", ignore_errors=True)
    for name in ("features", "featlib"):  # as in a fresh process: imported from nowhere yet
        sys.modules.pop(name, None)
    git(root, "commit", "-q", "-am", "the local modules are gone")
    return root, result.run_id, version


def test_a_run_stores_every_local_module_it_imported(registered: tuple[Path, str, Any]) -> None:
    """The manifest records features and the featlib it imports, each with its stored source; registration trusts only the run's own classes."""
    from seedline.records.tracking import Store

    root, run_id, version = registered
    store = Store.find(root)
    manifest = store.manifest(run_id)
    modules = manifest.code.local_modules
    assert set(modules) == {"features", "featlib"}
    for entry in modules.values():
        assert entry.object is not None
        source = store.objects.get(entry.object)
        assert file_fingerprint(source) == entry.file
    features_object = modules["features"].object
    assert features_object is not None
    assert b"class Interactions" in store.objects.get(features_object)
    assert version.trusted_local == ["features.Interactions"]
    store.close()


@pytest.mark.slow
def test_predict_serve_and_export_without_the_project_modules(
    registered: tuple[Path, str, Any], tmp_path: Path
) -> None:
    """predict and serve load pen@1 from its stored sources; the bundle carries them and loads in a bare folder."""
    root, _, _ = registered
    assert not (root / "features.py").exists()
    out = run_cli(root, "predict", "pen@1", "data/penguins.csv", "-o", "pred.csv")
    assert "bitwise" in out.stderr
    with serving(root, "pen@1") as server:
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200

    bundle = tmp_path / "bundle"
    run_cli(root, "export", "pen@1", "--format", "bundle", "-o", str(bundle))
    assert (bundle / "code" / "features.py").is_file() and (
        bundle / "code" / "featlib.py"
    ).is_file()
    docker = (bundle / "Dockerfile").read_text()
    assert '"--trust"' in docker and "#   features.Interactions" in docker
    lock = (bundle / "requirements.txt").read_text()
    assert "seedline==" in lock and "scikit-learn==" in lock and "features" not in lock
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(root / "data" / "penguins.csv", bare / "in.csv")
    # a bundle is a folder anyone can edit: its local classes need --trust
    refused = run_cli(bare, "predict", str(bundle), "in.csv", "-o", "o.csv", check=False)
    assert refused.returncode == 2 and "--trust" in refused.stderr
    run_cli(bare, "predict", str(bundle), "in.csv", "-o", "o.csv", "--trust")
    assert (bare / "o.csv").read_text() == (root / "pred.csv").read_text()


def test_mlflow_export_ships_the_local_sources(
    registered: tuple[Path, str, Any], tmp_path: Path
) -> None:
    """The MLflow model's code folder holds the local sources; its loader checks them and predicts exactly."""
    from seedline.workflow import mlflow_pyfunc
    from seedline.workflow.export import export_model
    from seedline.workflow.registration import resolve_source

    root, _, _ = registered
    source = resolve_source("pen@1", start=root)
    model = source.load()
    report = export_model(model, source, "mlflow", tmp_path / "mlf", parity=None)
    assert report.bitwise and {"code/features.py", "code/featlib.py"} <= set(report.files)
    record = json.loads((tmp_path / "mlf" / mlflow_pyfunc.LOCAL_CODE_FILE).read_text())
    assert set(record) == {"features", "featlib"}
    loaded = mlflow_pyfunc._load_pyfunc(str(tmp_path / "mlf" / "model.skops"))
    X = source.probe_input
    assert np.array_equal(loaded.predict(X), model.predict(X))


def test_recorded_sources_are_checked_before_import(tmp_path: Path) -> None:
    """A source that does not hash to its record is refused before it runs; a clash with an imported module is named."""
    good = b"VALUE = 1\n"
    module = LocalModule(
        name="travel_probe_mod", path="travel_probe_mod.py", source=b"raise SystemExit('ran')\n",
        file=file_fingerprint(good),
    )  # fmt: skip
    with pytest.raises(LocalCodeError, match="does not match the hash recorded"):
        LocalCode((module,), where="test").install()
    assert "travel_probe_mod" not in sys.modules
    ok = LocalModule(
        name="travel_probe_ok", path="travel_probe_ok.py", source=good, file=file_fingerprint(good)
    )
    LocalCode((ok,), where="test").install()
    import travel_probe_ok  # type: ignore[import-not-found]

    assert travel_probe_ok.VALUE == 1
    other = LocalModule(
        name="travel_probe_ok", path="travel_probe_ok.py", source=b"VALUE = 2\n",
        file=file_fingerprint(b"VALUE = 2\n"),
    )  # fmt: skip
    with pytest.raises(LocalCodeError, match="already loaded another version"):
        LocalCode((other,), where="test").install()


def test_a_missing_module_is_named_not_blamed_on_scikit_learn(tmp_path: Path) -> None:
    """Loading a model whose local module is nowhere names the module in the hint, not a scikit-learn version."""
    from seedline.execution.persist import dump_model

    root = make_project(tmp_path, "penguins")
    (root / "travel_gone.py").write_text(
        "from sklearn.preprocessing import StandardScaler\n\nclass Gone(StandardScaler):\n    pass\n"
    )
    sys.path.insert(0, str(root))
    try:
        import travel_gone  # type: ignore[import-not-found]

        est = travel_gone.Gone().fit(np.arange(6.0).reshape(3, 2))
        blob = dump_model(est)
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("travel_gone", None)
    (root / "travel_gone.py").unlink()
    with pytest.raises(UntrustedModelError, match=r"travel_gone\.Gone"):
        load_model(blob)
    with pytest.raises(ModelLoadError) as info:
        load_model(blob, trust=True)
    assert "'travel_gone'" in (info.value.hint or "") and "scikit-learn" not in (
        info.value.hint or ""
    )


DL_SPECS = {"torch": ("seedline.yaml", "pipeline.net.max_epochs=1", "skorch", "cnn"),
            "keras": ("seedline-keras.yaml", "pipeline.net.epochs=1", "keras", "keras_cnn")}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_deep_learning_models_predict_serve_and_export_through_the_one_loader(
    framework: str, tmp_path: Path
) -> None:
    """A skorch or Keras CNN whose network class is in the project's cnn.py predicts, serves and exports with cnn.py gone."""
    from seedline.records.tracking import Store
    from seedline.workflow.export import export_model
    from seedline.workflow.registration import register_run, resolve_source

    spec, epochs, library, module = DL_SPECS[framework]
    pytest.importorskip(library)
    root = make_project(tmp_path, "digits-cnn")
    result = seedline.run(root / spec, overrides=[epochs], use_cache=False)
    store = Store.find(root)
    version = register_run(store, result.run_id, "cnn")
    store.close()
    assert version.trusted_local and all(t.startswith(f"{module}.") for t in version.trusted_local)
    (root / f"{module}.py").unlink()
    shutil.rmtree(root / "__pycache__", ignore_errors=True)
    git(root, "commit", "-q", "-am", f"{module}.py is gone")
    sys.modules.pop(module, None)

    source = resolve_source("cnn@1", start=root)
    source.probe_input.to_csv(root / "in.csv", index=False)
    # the framework's own classes (optimizers, losses) are foreign types: they need --trust
    trust = ["--trust"] if source.untrusted_types() else []
    run_cli(root, "predict", "cnn@1", "in.csv", "-o", "out.csv", *trust)
    import pandas as pd

    written = pd.read_csv(root / "out.csv")["prediction"].to_numpy()
    assert np.array_equal(written, result.model.predict(source.probe_input))
    # the server's start-up load, in this process (a torch import is slow in a fresh one)
    from fastapi.testclient import TestClient

    from seedline.serving.app import ServeConfig, create_app

    config = ServeConfig(ref="cnn@1", project=str(root), trust=bool(trust), single_row_checks=2)
    app = create_app(config, source=source)
    with TestClient(app) as client:
        # the model loads in a thread after startup: ready answers 503 until it is done
        deadline = time.monotonic() + 300
        while app.state.served.status == "loading" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert app.state.served.status == "ready", (
            app.state.served.reason,
            app.state.served.parity,
        )
        assert client.get("/v2/health/ready").status_code == 200

    model = source.load(trust=True)
    report = export_model(model, source, "bundle", tmp_path / "bundle", parity=None)
    assert report.bitwise and f"code/{module}.py" in report.files
    packages = source.manifest.environment.packages
    lock = (tmp_path / "bundle" / "requirements.txt").read_text()
    for name in ("torch", library):
        assert f"{name}=={packages[name]}" in lock, lock
