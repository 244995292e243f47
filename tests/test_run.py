"""Running a spec through the Python API: what is fitted, what is recorded, what is stored."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.pipeline import Pipeline

import seedline
from seedline.core.errors import PipelineError, SpecError
from seedline.records.tracking import Store

from .conftest import git

BAD_MODULE = '''
"""A transformer that always fails, to test failed-run recording."""
from sklearn.base import BaseEstimator, TransformerMixin


class Exploder(TransformerMixin, BaseEstimator):
    def fit(self, X, y=None):
        raise RuntimeError("boom: this transformer always fails")

    def transform(self, X):
        return X
'''


def all_estimators(model: object) -> list[object]:
    found = [model]
    if hasattr(model, "get_params"):
        found += [
            v
            for v in model.get_params(deep=True).values()
            if hasattr(v, "get_params") and not isinstance(v, type)
        ]
    return found


def test_run_fits_a_plain_sklearn_pipeline_and_records_everything(penguins: Path) -> None:
    """A run returns a plain Pipeline and a complete manifest stored and indexed in the store."""
    result = seedline.run(penguins / "seedline.yaml")
    m = result.manifest
    assert result.status == "succeeded"
    assert isinstance(result.model, Pipeline)
    assert not [
        type(e).__module__
        for e in all_estimators(result.model)
        if type(e).__module__.startswith("seedline")
    ]
    assert (
        set(m.metrics) == {"accuracy", "balanced_accuracy", "f1_macro"}
        and m.metrics["accuracy"] > 0.9
    )
    # per step: fitted state and transformed output on the training data
    assert [s.name for s in m.steps] == ["prep", "clf"]
    assert (
        m.steps[0].fitted.startswith("estimator:")
        and m.steps[0].output
        and m.steps[0].output.startswith("output:")
    )
    assert m.steps[0].resolved_columns == {
        "num": ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"],
        "cat": ["island", "sex"],
    }
    assert m.steps[1].output is None
    # data, code and environment
    assert m.data is not None and m.data.sources[0].fingerprint.startswith("file:")
    assert m.data.sources[0].table["columns"].keys() >= {"species", "island"}
    assert m.data.split["train_rows"] + m.data.split["test_rows"] == 344
    assert m.code.commit == git(penguins, "rev-parse", "HEAD").strip() and m.code.dirty is False
    assert m.environment.packages["scikit-learn"] and m.environment.thread_pools
    assert all(p["num_threads"] == 1 for p in m.environment.thread_pools)
    assert m.settings.as_dict() == {
        "threads": 1,
        "executor": "serial",
        "workers": 1,
        "address": None,
        "cache": True,
    }
    for key in ("model", "predictions", "spec", "data", "environment"):
        assert m.fingerprints[key], key
    # stored: manifest object indexed in the database, model saved with skops
    store = Store.open(penguins, create=False)
    assert store.manifest(result.run_id) == m
    assert store.list_runs()[0].metrics == m.metrics


def test_every_filled_random_state_is_in_the_manifest(penguins: Path) -> None:
    """The forest's unset random_state is filled from the plan and recorded with the split and global seeds."""
    m = seedline.run(penguins / "seedline.yaml").manifest
    assert m.seeds is not None
    rs = m.seeds.random_states
    assert rs["clf__random_state"]["source"] == "plan"
    assert rs["clf__random_state"]["seed"] == m.seeds.derived["pipeline/clf__random_state"]
    assert m.seeds.derived["split"] == m.data.split["seed"]  # type: ignore[union-attr]
    assert {"python.random", "numpy.random"} <= set(m.seeds.globals)
    assert m.seeds.master == 20240611


def test_saved_model_is_skops_and_predicts_the_recorded_probe(penguins: Path) -> None:
    """The skops file loads into a pipeline that reproduces the stored probe predictions exactly."""
    from sklearn.model_selection import train_test_split

    from seedline.core.fingerprint import fingerprint_array
    from seedline.core.spec import load_spec
    from seedline.execution.data import load_data, select_columns

    result = seedline.run(penguins / "seedline.yaml")
    m = result.manifest
    store = Store.open(penguins, create=False)
    blob = store.model_bytes(result.run_id)
    assert blob[:2] == b"PK"  # a skops zip archive, not a pickle
    model = sio.loads(blob, trusted=sio.get_untrusted_types(data=blob))
    probe = np.load(io.BytesIO(store.objects.get(m.artifacts["probe"])), allow_pickle=False)

    spec = load_spec(penguins / "seedline.yaml")
    X, y, _ = select_columns(load_data(spec.data, penguins).frame, spec.data)
    assert m.data is not None
    _, test = train_test_split(
        np.arange(len(X)), test_size=0.25, random_state=m.data.split["seed"], stratify=y
    )
    pred = model.predict(X.iloc[test])
    assert np.array_equal(pred.astype(str), probe["predictions"])
    assert fingerprint_array(pred, kind="predictions") == m.probe.predictions
    assert probe["proba"].shape == (len(test), 3)


def test_same_spec_twice_in_one_process_is_bitwise_identical(digits: Path) -> None:
    """Two runs of the same spec give identical per-step fingerprints, predictions and metrics."""
    a = seedline.run(digits / "seedline.yaml").manifest
    b = seedline.run(digits / "seedline.yaml").manifest
    assert a.run_id != b.run_id
    assert [(s.fitted, s.output) for s in a.steps] == [(s.fitted, s.output) for s in b.steps]
    assert a.fingerprints["model"] == b.fingerprints["model"]
    assert a.fingerprints["predictions"] == b.fingerprints["predictions"]
    assert a.metrics == b.metrics


def test_a_different_seed_gives_a_different_model(digits: Path) -> None:
    """The seed really reaches the random consumers (PCA, forest, split)."""
    a = seedline.run(digits / "seedline.yaml").manifest
    b = seedline.run(digits / "seedline.yaml", overrides=["seed=8"]).manifest
    assert a.fingerprints["model"] != b.fingerprints["model"]
    assert b.overrides == ["seed=8"] and b.spec["seed"] == 8


def test_a_failed_run_is_recorded_as_failed_with_its_error(penguins: Path) -> None:
    """A step that raises while fitting leaves a failed run with the error and traceback, not nothing."""
    (penguins / "bad.py").write_text(BAD_MODULE)
    with pytest.raises(PipelineError, match="boom") as err:
        seedline.run(
            penguins / "seedline.yaml",
            overrides=["pipeline.clf.class=bad.Exploder", "pipeline.clf.params={}"],
        )
    result = err.value.result
    assert result is not None and result.status == "failed"
    store = Store.open(penguins, create=False)
    stored = store.manifest(result.run_id)
    assert stored.status == "failed"
    assert (
        stored.error is not None
        and stored.error["phase"] == "fit"
        and "boom" in stored.error["message"]
    )
    assert "Traceback" in stored.error["traceback"]
    assert stored.code.local_modules["bad"].path == "bad.py"
    assert stored.code.dirty is True and "bad.py" in stored.code.untracked_files
    row = store.list_runs()[0]
    assert (row.run_id, row.status) == (result.run_id, "failed") and "boom" in (
        row.error or {}
    ).get("message", "")


def test_errors_before_the_run_begins_store_nothing(penguins: Path) -> None:
    """A bad spec never creates a run record or an object."""
    seedline.run(penguins / "seedline.yaml")
    store = Store.open(penguins, create=False)
    runs_before, objects_before = len(store.list_runs()), sorted(store.objects)
    with pytest.raises(SpecError):
        seedline.run(penguins / "seedline.yaml", overrides=["pipeline.clf.n_estimatorz=3"])
    assert len(store.list_runs()) == runs_before
    assert sorted(store.objects) == objects_before


def test_uncommitted_changes_are_stored_as_a_diff_object(penguins: Path) -> None:
    """A dirty tree is flagged and the exact uncommitted diff is kept as an object."""
    spec = penguins / "seedline.yaml"
    spec.write_text(spec.read_text().replace("n_estimators: 200", "n_estimators: 50"))
    m = seedline.run(spec).manifest
    assert m.code.dirty is True and m.code.changed_files == ["seedline.yaml"]
    diff = Store.open(penguins, create=False).objects.get(m.artifacts["diff"])
    assert b"-    params: {n_estimators: 200" in diff and b"+    params: {n_estimators: 50" in diff
    assert str(m.code.diff).startswith("diff:")


def test_environment_records_determinism_variables_but_no_secrets(
    penguins: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thread and determinism variables are recorded; anything that looks like a secret is not."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("SEEDLINE_TOKEN", "s3cret")
    monkeypatch.setenv("MKL_API_KEY", "s3cret")
    m = seedline.run(penguins / "seedline.yaml").manifest
    env_vars = m.environment.env_vars
    assert env_vars["OMP_NUM_THREADS"] == "1"
    assert "SEEDLINE_TOKEN" not in env_vars and "MKL_API_KEY" not in env_vars
    assert "s3cret" not in m.to_json()
    assert m.environment.python.version and m.environment.cpu.machine


def test_local_module_source_hash_ignores_comments_and_docstrings(tmp_path: Path) -> None:
    """Editing prose in a user's module keeps its source hash; editing code changes it."""
    from seedline.core.environment import source_fingerprint

    code = 'def f(x):\n    """Doc."""\n    return x + 1  # add one\n'
    assert source_fingerprint(code) == source_fingerprint(
        'def f(x):\n    """Other doc."""\n    return x + 1\n'
    )
    assert source_fingerprint(code) != source_fingerprint(
        'def f(x):\n    """Doc."""\n    return x + 2\n'
    )


def test_run_outside_a_git_repository_says_so(tmp_path: Path) -> None:
    """Without git the run still works and the manifest says the code is not versioned."""
    import shutil

    from .conftest import EXAMPLES

    shutil.copytree(EXAMPLES / "digits", tmp_path / "d")
    m = seedline.run(tmp_path / "d" / "seedline.yaml").manifest
    assert m.code.repository is False and "not inside a git repository" in str(m.code.reason)
    assert os.path.isdir(tmp_path / "d" / ".seedline")


def test_stratified_splits_of_text_labels_are_scikit_learns() -> None:
    """Text labels are stratified through their sorted class numbers: the rows drawn are exactly
    those scikit-learn draws from the labels themselves (holdout, k folds, repeated folds)."""
    import pandas as pd
    from sklearn.model_selection import (
        RepeatedStratifiedKFold,
        StratifiedKFold,
        train_test_split,
    )

    from seedline.execution.runner import _strata

    rng = np.random.default_rng(3)
    labels = np.array(["Gentoo", "Adélie", "Chinstrap", "adelie", "日本"], dtype=object)
    drawn = labels[rng.integers(0, len(labels), 2000)]
    idx = np.arange(len(drawn))
    for y in (pd.Series(drawn, dtype="str"), pd.Series(drawn, dtype=object)):
        assert isinstance(_strata(y), np.ndarray)
        for a, b in zip(
            train_test_split(idx, test_size=0.25, random_state=5, stratify=y),
            train_test_split(idx, test_size=0.25, random_state=5, stratify=_strata(y)),
            strict=True,
        ):
            assert np.array_equal(a, b)
        for cv in (
            StratifiedKFold(5, shuffle=True, random_state=5),
            RepeatedStratifiedKFold(n_splits=3, n_repeats=2, random_state=5),
        ):
            for (a_tr, a_te), (b_tr, b_te) in zip(
                cv.split(idx, y), cv.split(idx, _strata(y)), strict=True
            ):
                assert np.array_equal(a_tr, b_tr) and np.array_equal(a_te, b_te)
    numbers = pd.Series(rng.integers(0, 3, 50))
    missing = pd.Series(["a", None, "b"], dtype=object)
    assert _strata(numbers) is numbers and _strata(missing) is missing


def test_plot_confusion_matrix_is_scikit_learns_for_text_labels() -> None:
    """The stored confusion matrix, counted on label positions, equals scikit-learn's, values
    outside the labels left out as scikit-learn leaves them out."""
    from sklearn.metrics import confusion_matrix

    from seedline.execution.plots import classifier_plots

    rng = np.random.default_rng(4)
    labels = ["Adélie", "Chinstrap", "Gentoo"]
    y = np.array([*labels, "other"], dtype=object)[rng.integers(0, 4, 500)]
    pred = np.array(labels, dtype=object)[rng.integers(0, 3, 500)]
    counts = classifier_plots(y, pred, None, labels)["confusion_matrix"]["counts"]
    assert counts == confusion_matrix(y, pred, labels=labels).tolist()
    numbers = classifier_plots(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), None, [0, 1, 2])
    assert numbers["confusion_matrix"]["counts"] == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]


def test_plot_curves_are_scikit_learns_exactly() -> None:
    """The ROC and precision-recall curves from one sort are scikit-learn's arrays, value for
    value and dtype for dtype: continuous scores, scores with many ties, tiny sets; and a
    classifier's stored curves with the AUC scikit-learn gives. Scores that are not finite
    go to scikit-learn, whose error the plot document then records."""
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    from seedline.execution.plots import _binary_curves, classifier_plots

    rng = np.random.default_rng(5)
    for trial in range(200):
        n = int(rng.integers(2, 200))
        hit = rng.integers(0, 2, n)
        hit[0], hit[-1] = 0, 1
        score = rng.random(n)
        if trial % 2:
            score = np.round(score * int(rng.integers(1, 5))) / 4  # ties
        fpr, tpr, _ = roc_curve(hit, score)
        precision, recall, _ = precision_recall_curve(hit, score)
        theirs_all = (fpr, tpr, precision, recall)
        for ours, theirs in zip(_binary_curves(hit, score), theirs_all, strict=True):
            assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs), trial
    y = rng.integers(0, 3, 300)
    proba = rng.dirichlet(np.ones(3), 300)
    doc = classifier_plots(y, proba.argmax(axis=1), proba, [0, 1, 2])
    for k, curve in enumerate(doc["roc"]):
        fpr, tpr, _ = roc_curve(y == k, proba[:, k])
        assert curve["auc"] == float(auc(fpr, tpr))
    proba[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        classifier_plots(y, proba.argmax(axis=1), proba, [0, 1, 2])


def test_a_run_imports_its_own_module_not_one_another_project_imported_in_this_process(
    tmp_path: Path,
) -> None:
    """Two projects with a shadowmod.py, run one after the other in one process: each run uses and records its own."""
    import sys

    from seedline.execution.runner import prepare

    spec = (
        "name: shadow\nseed: 3\ndata: {source: 'sklearn:load_iris', target: target}\n"
        "pipeline:\n  - {name: mark, class: shadowmod.Marker}\n"
        "  - {name: clf, class: sklearn.linear_model.LogisticRegression}\n"
        "metrics: [accuracy]\n"
    )
    marker = (
        "from sklearn.preprocessing import FunctionTransformer\n\n"
        "class Marker(FunctionTransformer):\n    PROJECT = {name!r}\n"
    )
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "seedline.yaml").write_text(spec)
        (tmp_path / name / "shadowmod.py").write_text(marker.format(name=name))
    try:
        for name in ("a", "b"):
            p = prepare(tmp_path / name / "seedline.yaml")
            found = type(p.pipeline.named_steps["mark"]).PROJECT
            assert found == name
            assert Path(sys.modules["shadowmod"].__file__ or "").parent == tmp_path / name
    finally:
        sys.modules.pop("shadowmod", None)
        for name in ("a", "b"):
            if str(tmp_path / name) in sys.path:
                sys.path.remove(str(tmp_path / name))
