"""The libraries around scikit-learn: feature-engine, category_encoders, imbalanced-learn samplers, LightGBM and XGBoost.

Each runs from examples/ecosystem, reproduces bitwise, and serves through serve/predict/export;
seedline fills LightGBM's and XGBoost's determinism switches and check flags them turned off.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from seedline.core.library_controls import controls_missing
from seedline.execution.runner import fit_steps, prepare

from .conftest import make_project, run_cli, run_json


@pytest.fixture(scope="module")
def eco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("eco"), "ecosystem")


def test_lightgbm_and_xgboost_switches_are_filled_and_recorded(eco: Path) -> None:
    """Unset switches are filled; a value the spec sets is kept, and check names it when it is off."""
    p = prepare(eco / "lightgbm.yaml")
    assert p.controls == {
        "clf": {"deterministic": True, "force_row_wise": True, "n_jobs": 1, "verbose": -1}
    }
    clf = p.pipeline.named_steps["clf"]
    assert clf.get_params()["deterministic"] is True and clf.random_state is not None
    off = prepare(eco / "lightgbm.yaml", overrides=["pipeline.clf.deterministic=false"])
    assert "deterministic" not in off.controls["clf"]
    assert controls_missing(off.pipeline.named_steps["clf"]) == [
        "LightGBM's deterministic=False: set deterministic: true (or leave it unset)"
    ]
    x = prepare(eco / "xgboost.yaml")
    assert x.controls == {"clf": {"n_jobs": 1}}


def test_sampler_resamples_while_fitting_and_is_skipped_when_predicting(eco: Path) -> None:
    """The imbalanced-learn sampler adds rows for the classifier; predictions keep the input's rows."""
    p = prepare(eco / "lightgbm.yaml")
    assert type(p.pipeline).__module__.startswith("imblearn")
    records = fit_steps(p.pipeline, p.X_train, p.y_train)
    shapes = {r.name: r.output_shape for r in records}
    counts = p.y_train.value_counts()
    assert shapes["encode"][0] == len(p.X_train)
    assert shapes["balance"][0] == counts.max() * len(counts) > len(p.X_train)
    assert len(p.pipeline.predict(p.X_test)) == len(p.X_test)


@pytest.mark.slow
def test_lightgbm_example_reproduces_bitwise_and_predicts(eco: Path, tmp_path: Path) -> None:
    """Fresh processes: the same model twice, reproduce BITWISE, then predict, serve and export with --trust."""
    first = run_json(eco, "run", "lightgbm.yaml")
    second = run_json(eco, "run", "lightgbm.yaml", "--no-cache")
    assert first["fingerprints"]["model"] == second["fingerprints"]["model"]
    assert first["fingerprints"]["predictions"] == second["fingerprints"]["predictions"]
    rep = run_cli(eco, "reproduce", first["run_id"])
    assert "BITWISE" in rep.stdout
    run_cli(eco, "register", first["run_id"], "--name", "lgb")
    rows = (eco / "data" / "penguins.csv").read_text().splitlines()[:6]
    (tmp_path / "in.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out.csv"
    run_cli(eco, "predict", "lgb@1", str(tmp_path / "in.csv"), "-o", str(out), "--trust")
    assert len(out.read_text().splitlines()) == 6  # header + 5 rows
    # category_encoders keeps pandas objects in its fitted state: --trust is asked for the
    # foreign estimator types, not for pandas' own
    from seedline.workflow.registration import resolve_source

    source = resolve_source("lgb@1", start=eco)
    foreign = source.untrusted_types()
    assert "category_encoders.one_hot.OneHotEncoder" in foreign
    assert not [t for t in foreign if t.startswith("pandas.")], foreign
    rows = pd.read_csv(tmp_path / "in.csv").drop(columns=["species"])
    assert served_predictions(eco, "lgb@1", rows) == pd.read_csv(out)["prediction"].tolist()
    exported = run_cli(
        eco, "export", "lgb@1", "--format", "bundle", "-o", str(tmp_path / "b"), "--trust"
    )
    assert "bitwise identical predictions" in exported.stdout
    requirements = (tmp_path / "b" / "requirements.txt").read_text()
    assert "lightgbm" in requirements or "seedline" in requirements


def served_predictions(project: Path, ref: str, rows: pd.DataFrame) -> list[Any]:
    """What ``seedline serve REF --trust`` answers for ``rows`` (the server's app, in this process)."""
    from fastapi.testclient import TestClient

    from seedline.serving.app import ServeConfig, create_app
    from seedline.workflow.registration import resolve_source

    source = resolve_source(ref, start=project)
    app = create_app(ServeConfig(ref=ref, project=str(project), trust=True), source=source)
    with TestClient(app) as client:
        deadline = time.monotonic() + 120
        while app.state.served.status == "loading" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert app.state.served.status == "ready", app.state.served.reason
        answer = client.post(
            "/invocations", json={"dataframe_records": json.loads(rows.to_json(orient="records"))}
        )
        assert answer.status_code == 200, answer.text
        return list(answer.json()["predictions"])


@pytest.mark.slow
def test_xgboost_example_reproduces_bitwise_serves_and_exports(eco: Path, tmp_path: Path) -> None:
    """XGBoost with a feature-engine selector: two fresh runs agree, reproduce is BITWISE, it serves and exports."""
    from seedline.records.tracking import Store
    from seedline.workflow.export import export_model
    from seedline.workflow.registration import register_run, resolve_source

    first = run_json(eco, "run", "xgboost.yaml", "--no-cache")
    second = run_json(eco, "run", "xgboost.yaml", "--no-cache")
    assert first["fingerprints"]["model"] == second["fingerprints"]["model"]
    store = Store.open(eco)
    manifest = store.manifest(first["run_id"])
    assert manifest.settings.library_controls == {"clf": {"n_jobs": 1}}
    assert "BITWISE" in run_cli(eco, "reproduce", first["run_id"]).stdout
    ref = f"xgb@{register_run(store, first['run_id'], 'xgb').version}"
    source = resolve_source(ref, start=eco)
    model = source.load(trust=True)
    rows = source.probe_input.head(8)
    assert served_predictions(eco, ref, rows) == model.predict(rows).tolist()
    report = export_model(model, source, "bundle", tmp_path / "bundle", parity=None)
    assert report.bitwise
    requirements = (tmp_path / "bundle" / "requirements.txt").read_text()
    assert f"xgboost=={manifest.environment.packages['xgboost']}" in requirements, requirements
