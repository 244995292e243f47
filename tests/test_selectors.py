"""ColumnTransformer groups whose columns a selector function chooses: ``selector: {function: PATH}``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import seedline
from seedline.core.errors import SpecError
from seedline.execution.runner import prepare
from seedline.records.tracking import Store

SELECTORS = '''
"""Project-local column selectors."""


def measured(X):
    return [c for c in X.columns if c.startswith("m_")]


def not_a_list(X):
    return "m_a"


def unknown(X):
    return ["m_a", "nope"]
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("selectors")
    rng = np.random.default_rng(4)
    n = 60
    frame = pd.DataFrame(
        {
            "m_a": rng.normal(size=n),
            "m_b": rng.normal(size=n),
            "other": rng.normal(size=n),
            "colour": rng.choice(["red", "blue"], size=n),
        }
    )
    frame["label"] = np.where(frame["m_a"] > 0, "up", "down")
    frame.to_csv(root / "train.csv", index=False)
    (root / "colsel.py").write_text(SELECTORS)
    return root


def spec(group: dict[str, Any]) -> seedline.Spec:
    return seedline.Spec.from_dict(
        {
            "name": "selectors",
            "seed": 1,
            "data": {"source": "train.csv", "target": "label"},
            "pipeline": [
                {
                    "name": "prep",
                    "class": "sklearn.compose.ColumnTransformer",
                    "transformers": [
                        {
                            "name": "measured",
                            "steps": [
                                {"name": "scale", "class": "sklearn.preprocessing.StandardScaler"}
                            ],
                            **group,
                        }
                    ],
                },
                {"name": "clf", "class": "sklearn.linear_model.LogisticRegression"},
            ],
            "metrics": ["accuracy"],
        }
    )


def test_selector_function_chooses_the_columns_and_is_recorded_as_local_code(
    project: Path,
) -> None:
    """A project-local selector picks the columns (recorded as the group's resolved columns); its module is local code."""
    s = spec({"selector": {"function": "colsel.measured"}, "exclude": ["m_b"]})
    assert s.to_dict()["pipeline"][0]["transformers"][0]["selector"] == {
        "function": "colsel.measured"
    }
    store = Store.open(project)
    result = seedline.run(s, project_root=project, store=store, plots=False)
    assert result.manifest.steps[0].resolved_columns == {"measured": ["m_a"]}
    assert "colsel" in result.manifest.code.local_modules
    assert seedline.Spec.from_dict(s.to_dict()).fingerprint() == s.fingerprint()


def test_groups_without_a_selector_keep_their_canonical_form() -> None:
    """The new key stays out of groups that do not use it (older spec fingerprints hold)."""
    group = spec({"columns": ["m_a"]}).to_dict()["pipeline"][0]["transformers"][0]
    assert "selector" not in group


@pytest.mark.parametrize(
    ("group", "error", "message"),
    [
        (
            {"columns": ["m_a"], "selector": {"function": "colsel.measured"}},
            SpecError,
            "exactly one of 'columns'.*found 'columns' and 'selector'",
        ),
        ({}, SpecError, "exactly one of 'columns'"),
        ({"selector": {"function": "measured"}}, SpecError, "full import path"),
    ],
)
def test_a_group_takes_exactly_one_way_to_choose(
    group: dict[str, Any], error: type[Exception], message: str
) -> None:
    """columns, dtype and selector exclude one another; a selector needs an import path."""
    with pytest.raises(error, match=message):
        spec(group)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("os.listdir", "standard library"),
        ("colsel.not_a_list", "returned a str; a selector returns a list of column names"),
        ("colsel.unknown", r"returned column\(s\) \['nope'\] that are not among the features"),
    ],
)
def test_bad_selectors_are_spec_errors(project: Path, path: str, message: str) -> None:
    """Selectors resolve like any spec function, and what they return is checked."""
    with pytest.raises(SpecError, match=message):
        prepare(spec({"selector": {"function": path}}), project_root=project)
