"""Functions where scikit-learn takes functions: {function: PATH} parameters and custom metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import seedline
from seedline.core.errors import SpecError
from seedline.execution.cache import code_versions
from seedline.execution.compile import compile_pipeline, resolve_function
from seedline.records.tracking import Store

LOCAL = '''
"""A project-local function used by a spec."""
import numpy as np


def signed_log(X):
    return np.sign(X) * np.log1p(np.abs(X))
'''


def spec(
    pipeline: list[dict[str, Any]], metrics: list[Any], source: str = "sklearn:load_iris"
) -> seedline.Spec:
    return seedline.Spec.from_dict(
        {
            "name": "functions",
            "seed": 5,
            "data": {"source": source, "target": "target"},
            "pipeline": pipeline,
            "metrics": metrics,
        }
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("functions")
    (root / "localfuncs.py").write_text(LOCAL)
    return root


def test_function_transformer_and_custom_metric_run(project: Path) -> None:
    """FunctionTransformer(func=numpy.log1p) fits; an fbeta custom metric equals fbeta_score on the test rows."""
    from sklearn.metrics import fbeta_score

    s = spec(
        [
            {
                "name": "log",
                "class": "sklearn.preprocessing.FunctionTransformer",
                "params": {"func": {"function": "numpy.log1p"}},
            },
            {
                "name": "clf",
                "class": "sklearn.linear_model.LogisticRegression",
                "params": {"max_iter": 500},
            },
        ],
        [
            "accuracy",
            {
                "name": "f2",
                "function": "sklearn.metrics.fbeta_score",
                "params": {"beta": 2, "average": "macro"},
            },
        ],
    )
    store = Store.open(project)
    result = seedline.run(s, project_root=project, store=store)
    m = store.manifest(result.run_id)
    assert m.spec["pipeline"][0]["params"]["func"] == {"function": "numpy.log1p"}
    assert set(m.metrics) == {"accuracy", "f2"}
    from seedline.execution.runner import prepare

    p = prepare(s, project_root=project)
    from seedline.execution.persist import load_model

    model = load_model(store.model_bytes(result.run_id), trusted_own=True)
    assert model.steps[0][1].func is np.log1p
    expected = fbeta_score(p.y_test, model.predict(p.X_test), beta=2, average="macro")
    assert m.metrics["f2"] == pytest.approx(expected)


def test_transformed_target_regressor_with_function_pair(project: Path) -> None:
    """TransformedTargetRegressor takes func and inverse_func by import path; a lower-is-better metric is negated."""
    s = spec(
        [
            {
                "name": "reg",
                "class": "sklearn.compose.TransformedTargetRegressor",
                "params": {
                    "regressor": {"class": "sklearn.linear_model.Ridge"},
                    "func": {"function": "numpy.log1p"},
                    "inverse_func": {"function": "numpy.expm1"},
                },
            }
        ],
        [
            {
                "name": "mae",
                "function": "sklearn.metrics.mean_absolute_error",
                "greater_is_better": False,
            }
        ],
        source="sklearn:load_diabetes",
    )
    result = seedline.run(s, project_root=project, store=Store.open(project))
    assert result.status == "succeeded"
    assert result.metrics["mae"] < 0  # scikit-learn's convention: scorers are maximised


def test_project_local_function_is_hashed_like_local_code(project: Path) -> None:
    """A local function's module is recorded in the manifest's code, and it versions the step's cache key."""
    s = spec(
        [
            {
                "name": "log",
                "class": "sklearn.preprocessing.FunctionTransformer",
                "params": {"func": {"function": "localfuncs.signed_log"}},
            },
            {
                "name": "clf",
                "class": "sklearn.linear_model.LogisticRegression",
                "params": {"max_iter": 500},
            },
        ],
        ["accuracy"],
    )
    store = Store.open(project)
    result = seedline.run(s, project_root=project, store=store)
    m = store.manifest(result.run_id)
    assert "localfuncs" in m.code.local_modules
    pipeline, _ = compile_pipeline(s, __import__("pandas").DataFrame({"a": [1.0]}))
    versions = code_versions(pipeline.steps[0][1], project)
    assert versions["localfuncs.signed_log"].startswith("code:")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("os.system", "standard library"),
        ("subprocess.run", "standard library"),
        ("builtins.eval", "standard library"),
        ("sklearn.linear_model.Ridge", "not a Python function"),
        ("numpy.log1px", r"has no function 'log1px'\. Did you mean one of 'log1p'"),
        ("log1p", "full import path"),
    ],
)
def test_functions_that_are_refused(path: str, message: str) -> None:
    """Standard-library callables, classes and unknown names are refused before anything is called."""
    with pytest.raises(SpecError, match=message):
        resolve_function(path, "pipeline.log.params.func")


def test_refused_function_in_a_spec_is_a_spec_error(project: Path) -> None:
    """The refusal happens when the spec is compiled, naming the parameter."""
    s = spec(
        [
            {
                "name": "log",
                "class": "sklearn.preprocessing.FunctionTransformer",
                "params": {"func": {"function": "os.system"}},
            }
        ],
        ["accuracy"],
    )
    with pytest.raises(SpecError, match=r"pipeline\.log\.params\.func"):
        seedline.run(s, project_root=project, store=Store.open(project))


def test_custom_metric_named_like_a_scorer_or_twice_is_refused() -> None:
    """A custom metric cannot shadow a scikit-learn scorer name, and names are unique."""
    from seedline.execution.compile import check_metrics

    clash = spec(
        [{"name": "clf", "class": "sklearn.dummy.DummyClassifier"}],
        [{"name": "accuracy", "function": "sklearn.metrics.accuracy_score"}],
    )
    with pytest.raises(SpecError, match="is the name of a scikit-learn scorer"):
        check_metrics(clash.metrics)
    with pytest.raises(SpecError, match="used twice"):
        spec([{"name": "clf", "class": "sklearn.dummy.DummyClassifier"}], ["accuracy", "accuracy"])
