"""seedline check --api: scikit-learn's estimator checks on a spec's project-local classes, in plain words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seedline.workflow.api_check import FIT_CHANGES_INPUT, api_check

from .conftest import git, make_project, run_cli

FEATURES = '"""Transformers that break scikit-learn\'s estimator API in the ways users do, and one that follows it."""\nimport numpy as np\nfrom sklearn.base import BaseEstimator, TransformerMixin\nfrom sklearn.utils.validation import check_is_fitted, validate_data\n\n\nclass Sloppy(TransformerMixin, BaseEstimator):\n    def __init__(self, factor=2):\n        self.factor = float(factor)\n        self.cache = {}\n\n    def fit(self, X, y=None):\n        X.iloc[:, 0] = 0\n        return self\n\n    def transform(self, X):\n        return X\n\n\nclass Tidy(TransformerMixin, BaseEstimator):\n    def __init__(self, factor=2.0):\n        self.factor = factor\n\n    def fit(self, X, y=None):\n        X = validate_data(self, X, ensure_all_finite="allow-nan")\n        self.scale_ = np.full(X.shape[1], self.factor)\n        return self\n\n    def transform(self, X):\n        check_is_fitted(self)\n        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan")\n        return X * self.scale_\n\n    def __sklearn_tags__(self):\n        tags = super().__sklearn_tags__()\n        tags.input_tags.allow_nan = True\n        return tags\n'

SPEC = """
name: apicheck
seed: 1
data: {source: data/penguins.csv, target: species}
pipeline:
  - name: prep
    class: sklearn.compose.ColumnTransformer
    transformers:
      - name: num
        columns: [bill_length_mm, bill_depth_mm]
        steps:
          - {name: local, class: apicheck_features.CLASS}
          - {name: impute, class: sklearn.impute.SimpleImputer}
  - {name: clf, class: sklearn.linear_model.LogisticRegression}
metrics: [accuracy]
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # one project for the module: its features.py is imported once per process
    root = make_project(tmp_path_factory.mktemp("apicheck"), "penguins")
    (root / "apicheck_features.py").write_text(FEATURES)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "features")
    return root


def spec_with(root: Path, cls: str) -> Path:
    path = root / f"{cls.lower()}.yaml"
    path.write_text(SPEC.replace("CLASS", cls))
    return path


def test_sloppy_transformer_violations_are_explained(project: Path) -> None:
    """Attributes set in __init__ and an input changed by fit are each named in plain words."""
    report = api_check(spec_with(project, "Sloppy"))
    [cls] = report.classes
    assert cls.cls == "apicheck_features.Sloppy" and cls.step == "prep__num__local"
    by_check = {v.check: v for v in cls.violations}
    init = by_check["check_no_attributes_set_in_init"]
    assert init.meaning.startswith("__init__ sets attributes other than its parameters")
    assert "cache" in init.detail
    assert by_check[FIT_CHANGES_INPUT].meaning.startswith("fit modifies its input (X) in place")
    # the many checks that fail on the same error from the estimator's own code are said once
    crashes = [
        v for v in cls.violations if "same error raised by the estimator itself" in v.meaning
    ]
    assert len(crashes) >= 1 and "'iloc'" in crashes[0].detail
    assert report.violations == len(cls.violations) > 3


def test_well_behaved_transformer_passes(project: Path) -> None:
    """A transformer written to the estimator API has no violation."""
    report = api_check(spec_with(project, "Tidy"))
    [cls] = report.classes
    assert cls.violations == [], [v.to_dict() for v in cls.violations]
    assert cls.passed > 30


def test_spec_without_local_classes_checks_nothing(project: Path) -> None:
    """scikit-learn's own classes are not re-checked."""
    report = api_check(project / "seedline.yaml")
    assert report.classes == [] and report.violations == 0


@pytest.mark.slow
def test_cli_check_api_exit_status_and_json(project: Path) -> None:
    """--api exits 1 on violations and 0 without; --json carries the same report."""
    bad = run_cli(project, "check", "--api", str(spec_with(project, "Sloppy")), check=False)
    assert bad.returncode == 1, bad.stderr
    assert "__init__ sets attributes other than its parameters" in bad.stdout
    good = run_cli(project, "check", "--api", str(spec_with(project, "Tidy")), "--json")
    assert json.loads(good.stdout)["violations"] == 0
