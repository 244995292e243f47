"""``data.sample_weight``: a column of row weights, passed to the final step's fit and to the metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import seedline
from seedline.core.errors import DataError, SpecError
from seedline.execution.runner import prepare
from seedline.records.tracking import Store


def table(n: int = 120, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n)})
    frame["w"] = rng.uniform(0.1, 5.0, size=n)
    frame["label"] = np.where(frame["x1"] + 0.8 * rng.normal(size=n) > 0, "up", "down")
    return frame


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("weights")
    table().to_csv(root / "train.csv", index=False)
    return root


def spec(
    weight: str | None = "w", split: dict[str, Any] | None = None, **data: Any
) -> seedline.Spec:
    return seedline.Spec.from_dict(
        {
            "name": "weights",
            "seed": 7,
            "data": {
                "source": "train.csv",
                "target": "label",
                "features": ["x1", "x2"],
                **({"sample_weight": weight} if weight else {}),
                **data,
            },
            "split": split or {"kind": "holdout"},
            "pipeline": [
                {"name": "scale", "class": "sklearn.preprocessing.StandardScaler"},
                {"name": "clf", "class": "sklearn.linear_model.LogisticRegression"},
            ],
            "metrics": ["accuracy", "neg_log_loss"],
        }
    )


def test_weights_change_the_model_and_the_metrics_and_reproduce(project: Path) -> None:
    """Weighted and unweighted runs differ; the weighted metric is sklearn's with the test rows' weights; bitwise."""
    from sklearn.metrics import accuracy_score

    store = Store.open(project)
    weighted = seedline.run(spec(), project_root=project, store=store)
    plain = seedline.run(spec(None), project_root=project, store=store)
    assert weighted.fingerprints["model"] != plain.fingerprints["model"]
    assert weighted.manifest.spec["data"]["sample_weight"] == "w"
    assert weighted.manifest.data.features == ["x1", "x2"]
    p = prepare(spec(), project_root=project)
    expected = accuracy_score(p.y_test, weighted.model.predict(p.X_test), sample_weight=p.w_test)
    assert weighted.metrics["accuracy"] == pytest.approx(expected)
    report = seedline.reproduce(weighted.run_id, project_root=project)
    assert report.verdict == "bitwise"


def test_weight_column_is_never_a_feature(project: Path) -> None:
    """Without data.features, the weight column is left out of the features, like the target."""
    p = prepare(
        seedline.Spec.from_dict(
            {
                **spec().to_dict(),
                "data": {"source": "train.csv", "target": "label", "sample_weight": "w"},
            }
        ),
        project_root=project,
    )
    assert p.features == ["x1", "x2"]
    assert len(p.w_train) == len(p.X_train) and len(p.w_test) == len(p.X_test)


def test_kfold_folds_are_weighted(project: Path) -> None:
    """Each fold fits and scores with its rows' weights: the fold metrics move with the weights."""
    store = Store.open(project)
    kf = {"kind": "kfold", "n_splits": 3}
    weighted = seedline.run(spec(split=kf), project_root=project, store=store, plots=False)
    plain = seedline.run(spec(None, split=kf), project_root=project, store=store, plots=False)
    assert weighted.manifest.cv.mean["neg_log_loss"] != plain.manifest.cv.mean["neg_log_loss"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([1.0, -0.5], r"sample_weight column 'w' has 10 negative values"),
        ([1.0, None], r"sample_weight column 'w' has 10 missing values"),
        (["a", "b"], r"sample_weight column 'w' .* must hold numbers"),
    ],
)
def test_bad_weights_are_refused_naming_the_column(
    tmp_path: Path, values: list[Any], message: str
) -> None:
    """Negative, missing or non-numeric weights stop the run before anything is fitted."""
    frame = table(20)
    frame["w"] = (values * 10)[:20]
    frame.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(DataError, match=message):
        prepare(spec(), project_root=tmp_path)


def test_weights_need_a_final_step_that_takes_them(project: Path) -> None:
    """A final step whose fit has no sample_weight, or a weight column named as a feature, is a spec error."""
    d = spec().to_dict()
    d["pipeline"][-1] = {"name": "clf", "class": "sklearn.neighbors.KNeighborsClassifier"}
    with pytest.raises(SpecError, match="takes no sample_weight in fit"):
        prepare(seedline.Spec.from_dict(d), project_root=project)
    with pytest.raises(SpecError, match=r"also listed in data\.features"):
        spec(features=["x1", "w"])
    with pytest.raises(DataError, match=r"'wt' is not in the data\. Did you mean"):
        prepare(spec("wt"), project_root=project)


def test_given_test_file_brings_its_own_weights(project: Path, tmp_path: Path) -> None:
    """With split kind 'given', the test rows' weights come from the test file's weight column."""
    table(30, seed=9).to_csv(project / "given.csv", index=False)
    p = prepare(spec(split={"kind": "given", "test": "given.csv"}), project_root=project)
    assert p.w_test.tolist() == table(30, seed=9)["w"].tolist()
    table(30, seed=9).drop(columns=["w"]).to_csv(project / "noweights.csv", index=False)
    with pytest.raises(DataError, match=r"'w' is not in split.test 'noweights.csv'"):
        prepare(spec(split={"kind": "given", "test": "noweights.csv"}), project_root=project)
