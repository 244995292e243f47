"""seedline ui and seedline report: the workflow functions, the HTTP API, and real Chromium.

One project (several runs, a reproduction, a sweep, a registered model, a stored check report)
is built through the real API once for the module. Browser tests drive Debian's chromium with
Playwright; screenshots go to $SEEDLINE_UI_ARTIFACTS (default: the test's tmp folder).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ui_support import CHROMIUM, UIProject, build_project, launch_chromium, loopback_page


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> UIProject:
    return build_project(tmp_path_factory.mktemp("ui") / "proj")


@pytest.fixture(scope="module")
def store(project: UIProject) -> Iterator[Any]:
    from seedline.records.tracking import Store

    s = Store.find(project.root)
    yield s
    s.close()


@pytest.fixture(scope="module")
def client(store: Any) -> Any:
    from fastapi.testclient import TestClient

    from seedline.ui.app import create_app

    return TestClient(create_app(store))


# -- plots stored with runs ---------------------------------------------------------------------
def test_plots_change_no_fingerprint_or_metric(tmp_path: Path) -> None:
    """A run with plots and one without record the same fingerprints and metrics."""
    import seedline
    from tests.ui_support import SPEC

    spec = tmp_path / "seedline.yaml"
    spec.write_text(SPEC)
    a = seedline.run(spec, use_cache=False)
    b = seedline.run(spec, use_cache=False, plots=False)
    assert a.fingerprints == b.fingerprints
    assert a.metrics == b.metrics
    assert "plots" in a.manifest.artifacts and "plots" not in b.manifest.artifacts
    assert a.manifest.seeds is not None
    assert "plots/permutation" in a.manifest.seeds.derived


def test_stored_plots_hold_classifier_curves(store: Any, project: UIProject) -> None:
    """A classifier's plot document has a confusion matrix over the test rows, curves and seeded importances."""
    from seedline.workflow.browse import load_plots

    m = store.manifest(project.runs[0])
    doc = load_plots(store, m)
    assert doc is not None and doc["kind"] == "classifier" and doc["split"] == "test split"
    cm = doc["confusion_matrix"]
    assert sum(map(sum, cm["counts"])) == m.data.split["test_rows"] == doc["rows"]
    assert len(doc["roc"]) == 3 and all(0 <= c["auc"] <= 1 for c in doc["roc"])
    assert doc["calibration"]["mean_predicted"]
    imp = doc["permutation_importance"]
    assert imp["seed"] == m.seeds.derived["plots/permutation"]
    assert sorted(imp["features"]) == sorted(m.data.features)


def test_kfold_plots_are_out_of_fold(tmp_path: Path) -> None:
    """A k-fold run's plots cover every row once, from the folds' held-out predictions."""
    import seedline
    from seedline.records.tracking import Store
    from seedline.workflow.browse import load_plots
    from tests.ui_support import SPEC

    spec = tmp_path / "seedline.yaml"
    spec.write_text(SPEC.replace("kind: holdout\n  test_size: 0.3", "kind: kfold\n  n_splits: 3"))
    r = seedline.run(spec, use_cache=False)
    doc = load_plots(Store.find(tmp_path), r.manifest)
    assert doc is not None and doc["split"] == "out-of-fold" and doc["rows"] == 150
    assert sum(map(sum, doc["confusion_matrix"]["counts"])) == 150
    assert doc["permutation_importance"]["folds"] == 3


def test_regressor_plots_and_importances() -> None:
    """A regressor gets predicted-vs-actual and residuals; shuffling the informative column costs R²."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline

    from seedline.execution.plots import compute_plots, permutation_importance

    rng = np.random.RandomState(0)
    X = pd.DataFrame({"signal": rng.normal(size=200), "noise": rng.normal(size=200)})
    y = pd.Series(3 * X["signal"] + 0.01 * rng.normal(size=200))
    model = Pipeline([("lr", LinearRegression())]).fit(X, y)
    imp = permutation_importance(model, X, y, seed=5, is_classifier=False)
    assert imp["features"][0] == "signal" and imp["mean"][0] > 1.0
    assert imp == permutation_importance(model, X, y, seed=5, is_classifier=False)
    doc = compute_plots(model, y, model.predict(X), None, importance=imp, split="test split")
    assert doc["kind"] == "regressor" and len(doc["residuals"]["residual"]) == 200
    assert max(abs(r) for r in doc["residuals"]["residual"]) < 0.1


# -- workflow functions -------------------------------------------------------------------------
def test_runs_query_sorts_filters_and_pages(store: Any, project: UIProject) -> None:
    """Sort by a metric, filter by a parameter and by kind, page through: all in the database."""
    from seedline.records.browsing import Condition, RunQuery, query_runs

    rows, total = query_runs(store, RunQuery(sort="metric:accuracy", descending=False))
    values = [r.metrics["accuracy"] for r in rows]
    assert total == 7 and values == sorted(values)
    rows, total = query_runs(
        store, RunQuery(params=[Condition.parse("pipeline.clf.params.max_depth=5")])
    )
    assert total == 1 and rows[0].run_id == project.runs[2]
    rows, total = query_runs(store, RunQuery(kind="trial"))
    assert total == 3 and {r.sweep_id for r in rows} == {project.sweep}
    first, total = query_runs(store, RunQuery(limit=2))
    second, _ = query_runs(store, RunQuery(limit=2, offset=2))
    assert len(first) == 2 and not {r.run_id for r in first} & {r.run_id for r in second}
    rows, _ = query_runs(store, RunQuery(metrics=[Condition.parse("accuracy>=0.9")]))
    assert rows and all(r.metrics["accuracy"] >= 0.9 for r in rows)
    rows, total = query_runs(store, RunQuery(tags={"team": "vision"}))
    assert total == 1 and rows[0].run_id == project.runs[1]


def test_bad_filter_is_a_clear_error() -> None:
    """A filter without an operator says what it expected."""
    from seedline.core.errors import SeedlineError
    from seedline.records.browsing import Condition

    with pytest.raises(SeedlineError, match="NAME OP VALUE"):
        Condition.parse("max_depth")


def test_sweep_ranking_is_shared_by_cli_and_ui(store: Any, project: UIProject) -> None:
    """ranked_trials puts the sweep's best run first, as 'seedline runs --sweep' shows it."""
    from seedline.workflow.browse import ranked_trials
    from seedline.workflow.sweep import sweep_info

    ranked = ranked_trials(store, project.sweep)
    assert ranked["trials"][0]["summary"].run_id == sweep_info(store, project.sweep)["best_run"]
    assert [t["values"]["pipeline.clf.params.max_depth"] for t in ranked["trials"]]


def test_compare_highlights_the_changed_parameter(store: Any, project: UIProject) -> None:
    """Two runs differing in max_depth: the param is the one changed and the likely cause, clf diverges first."""
    from seedline.workflow.browse import compare_runs

    cmp = compare_runs(store, project.runs[:2])
    changed = [p["name"] for p in cmp["params"] if p["changed"]]
    assert changed == ["pipeline.clf.params.max_depth"]
    assert cmp["first_divergent_step"] == "clf"
    assert "max_depth" in cmp["likely_cause"]
    assert cmp["diffs"][0]["groups"][0]["category"] == "params"


def test_lineage_has_reproductions_and_versions(store: Any, project: UIProject) -> None:
    """A model's lineage names its run, the reproduction's verdict, and its versions."""
    from seedline.workflow.browse import model_lineage

    info = model_lineage(store, "iris@production")
    assert info["run"]["id"] == project.runs[0]
    assert info["reproductions"][0]["verdict"] == "bitwise"
    assert info["versions"][0]["aliases"] == ["production"]


# -- the HTTP API -------------------------------------------------------------------------------
def test_api_runs_page(client: Any, project: UIProject) -> None:
    """/api/runs pages on the server and shows reproductions next to the run they reproduce."""
    body = client.get("/api/runs", params={"limit": 3, "sort": "metric:accuracy"}).json()
    assert body["total"] == 7 and len(body["runs"]) == 3
    everything = client.get("/api/runs", params={"limit": 50}).json()["runs"]
    original = next(r for r in everything if r["run_id"] == project.runs[0])
    assert original["reproductions"][0]["run_id"] == project.reproduction
    tagged = client.get("/api/runs", params={"tag": "team=vision"}).json()
    assert [r["run_id"] for r in tagged["runs"]] == [project.runs[1]]
    assert tagged["tag_keys"] == ["team"] and tagged["runs"][0]["tags"] == {"team": "vision"}
    bad = client.get("/api/runs", params={"tag": "my team=x"})
    assert bad.status_code == 400 and "only letters, digits" in bad.json()["error"]
    assert "team=vision" in client.get(f"/runs/{project.runs[1]}").text


def test_api_errors_are_clear(client: Any) -> None:
    """An unknown run is a 404 with a hint; a bad sort a 400 naming the choices."""
    r = client.get("/api/runs/zzzzzz")
    assert r.status_code == 404 and "no run matches" in r.json()["error"]
    r = client.get("/api/runs", params={"sort": "colour"})
    assert r.status_code == 400 and "metric:NAME" in r.json()["hint"]


def test_pages_render(client: Any, project: UIProject) -> None:
    """Every page answers 200 with its content, and plotly.js comes from the app itself."""
    assert "Runs" in client.get("/runs").text
    run_page = client.get(f"/runs/{project.runs[0]}").text
    assert "sk-estimator" in run_page and "Seed plan" in run_page  # sklearn's diagram
    assert client.get("/checks").status_code == 200
    assert client.get(f"/sweeps/{project.sweep}").status_code == 200
    assert client.get(f"/models/{project.model}").status_code == 200
    js = client.get("/static/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000


def test_token_is_required_when_set(store: Any) -> None:
    """With a token, requests without it get 401; ?token= sets a cookie that later requests use."""
    from fastapi.testclient import TestClient

    from seedline.ui.app import create_app

    c = TestClient(create_app(store, token="s3cret"))
    assert c.get("/api/runs").status_code == 401
    assert c.get("/api/runs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert c.get("/runs?token=s3cret").status_code == 200
    assert c.get("/api/runs").status_code == 200  # the cookie


def test_non_loopback_needs_a_token(store: Any) -> None:
    """Binding beyond loopback without a token is refused, as for 'seedline serve'."""
    from seedline.core.errors import SeedlineError
    from seedline.ui.app import serve_ui

    with pytest.raises(SeedlineError, match="without a bearer token"):
        serve_ui(store, host="0.0.0.0", port=1)


def test_report_is_self_contained(store: Any, project: UIProject, tmp_path: Path) -> None:
    """The report inlines every asset: no src= or href= to anything but the page itself."""
    import re

    from seedline.ui.app import report_html

    for refs in ([project.runs[0]], project.runs[:2]):
        html = report_html(store, refs)
        assert not re.search(r"""<(script|link)[^>]+(src|href)=""", html)
        assert "Plotly" in html and "sl-data" in html


@pytest.mark.slow
def test_cli_report_and_check_are_stored(project: UIProject, store: Any) -> None:
    """'seedline report' writes the file atomically; 'seedline check' stores its report in the store."""
    import subprocess
    import sys

    from seedline.records.browsing import list_check_reports

    before = len(list_check_reports(store))
    out = project.root / "two.html"
    cli = [sys.executable, "-m", "seedline"]
    done = subprocess.run(
        [*cli, "report", *project.runs[:2], "-o", str(out)],
        cwd=project.root,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 1_000_000 and not list(project.root.glob(".two.html*"))
    bad = subprocess.run(
        [*cli, "report", *project.runs, "-o", str(out)],
        cwd=project.root,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "one run or two runs" in bad.stderr
    checked = subprocess.run(
        [*cli, "check", "--sample", "60", "--json"],
        cwd=project.root,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr
    reports = list_check_reports(store)
    assert len(reports) == before + 1 and reports[0]["spec"] == "iris-tree"


# -- a real browser -----------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(store: Any) -> Iterator[str]:
    import uvicorn

    from seedline.ui.app import create_app

    port = _free_port()
    srv = uvicorn.Server(
        uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("SEEDLINE_UI_ARTIFACTS") or tmp_path_factory.mktemp("shots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser_page(server: str) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        page, foreign = loopback_page(browser)
        page.errors = []  # type: ignore[attr-defined]
        page.foreign = foreign  # type: ignore[attr-defined]
        page.on(
            "console",
            lambda m: page.errors.append(m.text) if m.type == "error" else None,  # type: ignore[attr-defined]
        )
        page.on("pageerror", lambda e: page.errors.append(str(e)))  # type: ignore[attr-defined]
        yield page
        browser.close()


def _ready(page: Any) -> None:
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)


def _clean(page: Any) -> None:
    assert page.errors == [], page.errors
    assert page.foreign == [], page.foreign


@pytest.mark.slow
def test_browser_runs_page_sort_and_filter(
    browser_page: Any, server: str, project: UIProject, artifacts: Path
) -> None:
    """Load the runs page, sort by a metric, filter by a parameter; no errors, nothing off loopback."""
    page = browser_page
    page.goto(f"{server}/runs")
    _ready(page)
    assert page.locator("#runs-table tbody tr").count() == 7
    page.screenshot(path=str(artifacts / "ui-runs.png"), full_page=True)
    page.click("th a[data-sort='metric:accuracy']")
    _ready(page)
    values = [float(v) for v in page.locator("td[data-metric='accuracy']").all_inner_texts()]
    assert values == sorted(values, reverse=True)
    page.fill("input[name=param]", "pipeline.clf.params.max_depth=5")
    page.click("#filters button[type=submit]")
    _ready(page)
    rows = page.locator("#runs-table tbody tr")
    assert rows.count() == 1 and rows.first.get_attribute("data-run") == project.runs[2]
    page.fill("input[name=param]", "")
    page.fill("input[name=tag]", "team=vision")
    page.click("#filters button[type=submit]")
    _ready(page)
    rows = page.locator("#runs-table tbody tr")
    assert rows.count() == 1 and rows.first.get_attribute("data-run") == project.runs[1]
    assert rows.first.locator("a.tag").inner_text() == "team=vision"
    _clean(page)


@pytest.mark.slow
def test_browser_run_page(
    browser_page: Any, server: str, project: UIProject, artifacts: Path
) -> None:
    """Open a run: metrics, the reproduction's verdict, the diagram and the plots are drawn."""
    page = browser_page
    page.goto(f"{server}/runs")
    _ready(page)
    page.click(f"a[href='/runs/{project.runs[0]}']")
    _ready(page)
    assert "bitwise" in page.locator("h1").inner_text()
    assert page.locator(".diagram .sk-estimator").count() >= 2
    page.wait_for_selector("#confusion-0 .main-svg")
    assert page.locator("#plot-area .plot").count() >= 4
    page.fill("#package-search", "scikit-learn")
    assert page.locator("#packages tr:visible").count() >= 1
    page.screenshot(path=str(artifacts / "ui-run.png"), full_page=True)
    _clean(page)


@pytest.mark.slow
def test_browser_compare_marks_param_and_divergent_step(
    browser_page: Any, server: str, project: UIProject, artifacts: Path
) -> None:
    """Select two runs differing in max_depth: it is highlighted, and clf is marked on the diagram."""
    page = browser_page
    page.goto(f"{server}/runs?kind=run&sort=created&order=asc")
    _ready(page)
    page.check(f"input[value='{project.runs[0]}']")
    assert page.is_disabled("#compare-button")
    page.check(f"input[value='{project.runs[1]}']")
    page.click("#compare-button")
    _ready(page)
    changed = page.locator("#params tr.changed")
    assert changed.count() == 1
    assert changed.first.get_attribute("data-param") == "pipeline.clf.params.max_depth"
    assert page.locator("#steps tr.divergent").get_attribute("data-step") == "clf"
    assert page.locator(".diagram label.sl-divergent").count() >= 1
    assert "max_depth" in page.locator("#likely-cause").inner_text()
    page.wait_for_selector("#roc .main-svg")
    page.screenshot(path=str(artifacts / "ui-compare.png"), full_page=True)
    _clean(page)


@pytest.mark.slow
def test_browser_sweep_and_model_lineage(
    browser_page: Any, server: str, project: UIProject, artifacts: Path
) -> None:
    """A sweep's parallel coordinates are drawn; a model's lineage goes alias -> version -> run -> data."""
    page = browser_page
    page.goto(f"{server}/sweeps")
    _ready(page)
    page.click(f"a[href='/sweeps/{project.sweep}']")
    _ready(page)
    page.wait_for_selector("#parcoords .parcoords")
    page.wait_for_selector("#scatter .main-svg")
    page.screenshot(path=str(artifacts / "ui-sweep.png"), full_page=True)
    page.goto(f"{server}/models")
    _ready(page)
    page.click(f"a[href='/models/{project.model}']")
    _ready(page)
    lineage = page.locator("#lineage").inner_text()
    for expected in ("iris@production", project.model, project.runs[0], "load_iris", "bitwise"):
        assert expected in lineage
    page.screenshot(path=str(artifacts / "ui-model.png"), full_page=True)
    page.goto(f"{server}/checks")
    _ready(page)
    page.locator("table a").first.click()
    _ready(page)
    assert "deterministic" in page.locator("main").inner_text()
    _clean(page)


@pytest.mark.slow
def test_browser_report_opens_offline(
    browser_page: Any, store: Any, project: UIProject, tmp_path: Path, artifacts: Path
) -> None:
    """The report file, opened from disk, draws its plots with nothing fetched."""
    from seedline.ui.app import report_html

    out = tmp_path / "report.html"
    out.write_text(report_html(store, project.runs[:2]))
    page = browser_page
    page.goto(out.as_uri())
    _ready(page)
    page.wait_for_selector("#roc .main-svg")
    assert page.locator("#params tr.changed").count() == 1
    shutil.copy(out, artifacts / "report.html")
    _clean(page)
