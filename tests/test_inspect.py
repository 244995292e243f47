"""seedline inspect: each step's recomputed output and fitted attributes, and a cell-level compare of two runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import seedline
from seedline.core.errors import SeedlineError
from seedline.records.tracking import Store
from seedline.workflow.inspection import compare_step, describe_attribute, inspect_run

from .conftest import make_project, run_cli


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Penguins run three times: twice as shipped, once with mean instead of median imputation."""
    root = make_project(tmp_path_factory.mktemp("inspect"), "penguins")
    store = Store.open(root)
    fast = ["pipeline.clf.n_estimators=10"]
    a = seedline.run(root, store=store, overrides=fast, use_cache=False).run_id
    same = seedline.run(root, store=store, overrides=fast, use_cache=False).run_id
    b = seedline.run(
        root,
        store=store,
        overrides=[*fast, "pipeline.prep.num.impute.strategy=mean"],
        use_cache=False,
    ).run_id
    return {"root": root, "store": store, "a": a, "same": same, "b": b}


def test_inspect_recomputes_outputs_that_match_the_recorded_fingerprints(
    two_runs: dict[str, Any],
) -> None:
    """prep's output is recomputed from the stored model and equals what the run recorded."""
    views = inspect_run(two_runs["store"], two_runs["a"], rows=3)
    prep, clf = views
    assert prep.name == "prep" and clf.name == "clf"
    assert prep.output_matches is True
    manifest = two_runs["store"].manifest(two_runs["a"])
    assert prep.output == manifest.steps[0].output
    assert prep.shape == [258, 10]
    assert prep.columns[:2] == ["num__bill_length_mm", "num__bill_depth_mm"]
    assert len(prep.head) == 3 and len(prep.head[0]) == 10
    # scaled columns have mean 0 and std 1 on the training rows
    assert abs(prep.stats["num__body_mass_g"]["mean"]) < 1e-9
    assert prep.stats["num__body_mass_g"]["std"] == pytest.approx(1.0)
    assert prep.missing == {}
    assert "num.impute.statistics_" in prep.attributes
    assert prep.attributes["cat.onehot.categories_"].startswith("[['Biscoe', 'Dream', 'Torgersen']")
    assert clf.output_matches is None and clf.shape == [258]
    assert set(clf.head[0]) <= {"Adelie", "Chinstrap", "Gentoo"}
    assert clf.attributes["estimators_"] == "10 fitted DecisionTreeClassifier"
    assert clf.attributes["feature_importances_"].startswith("[")


def test_inspect_one_step_and_unknown_step(two_runs: dict[str, Any]) -> None:
    """--step keeps one step; a wrong name is an error that suggests the right one."""
    views = inspect_run(two_runs["store"], two_runs["a"], step="prep", rows=0)
    assert [v.name for v in views] == ["prep"] and views[0].head == []
    with pytest.raises(SeedlineError, match=r"no step 'prp'\. Did you mean 'prep'"):
        inspect_run(two_runs["store"], two_runs["a"], step="prp")


def test_compare_names_first_differing_column_and_row(two_runs: dict[str, Any]) -> None:
    """Mean vs median imputation: the numeric measurement columns differ, year and categories do not."""
    d = compare_step(two_runs["store"], two_runs["a"], two_runs["b"], "prep")
    assert not d.identical
    assert d.column == "num__bill_length_mm" and d.row == 0
    assert d.value_a != d.value_b
    assert set(d.differing_cells) == {
        "num__bill_length_mm",
        "num__bill_depth_mm",
        "num__flipper_length_mm",
        "num__body_mass_g",
    }
    same = compare_step(two_runs["store"], two_runs["a"], two_runs["same"], "prep")
    assert same.identical and same.column is None


def test_describe_attribute_summarises_large_arrays() -> None:
    """Small arrays are shown in full, large ones by shape and dtype."""
    import numpy as np

    assert describe_attribute(np.array([1.5, 2.0])) == "[1.5, 2. ]"
    assert describe_attribute(np.zeros((100, 3))) == "array of shape [100, 3], dtype float64"


@pytest.mark.slow
def test_cli_inspect_json_and_exit_status(two_runs: dict[str, Any]) -> None:
    """The CLI prints the same views as JSON, and a differing compare exits 1."""
    root: Path = two_runs["root"]
    out = json.loads(run_cli(root, "inspect", two_runs["a"], "--step", "prep", "--json").stdout)
    assert [s["name"] for s in out["steps"]] == ["prep"]
    assert out["steps"][0]["output_matches"] is True
    proc = run_cli(root, "inspect", two_runs["a"], two_runs["b"], "--step", "prep", check=False)
    assert proc.returncode == 1, proc.stderr
    assert "first difference: column num__bill_length_mm, row 0" in proc.stdout
    proc = run_cli(root, "inspect", two_runs["a"], two_runs["b"], check=False)
    assert proc.returncode == 2 and "needs --step" in proc.stderr
