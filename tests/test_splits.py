"""Splits people need: a given test file, a time-ordered holdout, TimeSeriesSplit, a predefined column, repeated k-fold."""

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


def table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    days = pd.date_range("2024-01-01", periods=n, freq="D")
    frame = pd.DataFrame(
        {
            # shuffled: the file is not in time order
            "day": rng.permutation(days).astype("datetime64[ns]").astype(str),
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "segment": rng.choice(["train", "test"], size=n, p=[0.7, 0.3]),
        }
    )
    frame["label"] = (frame["x1"] + 0.3 * rng.normal(size=n) > 0).map({True: "up", False: "down"})
    return frame


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    table(120, 1).to_csv(tmp_path / "data" / "train.csv", index=False)
    table(40, 2).drop(columns=["segment"]).to_csv(tmp_path / "data" / "test.csv", index=False)
    return tmp_path


def spec(split: dict[str, Any], features: list[str] | None = None) -> seedline.Spec:
    data: dict[str, Any] = {"source": "data/train.csv", "target": "label"}
    if features is not None:
        data["features"] = features
    return seedline.Spec.from_dict(
        {
            "name": "splits",
            "seed": 3,
            "data": data,
            "split": split,
            "pipeline": [
                {
                    "name": "prep",
                    "class": "sklearn.compose.ColumnTransformer",
                    "transformers": [
                        {"name": "num", "columns": ["x1", "x2"], "steps": "passthrough"}
                    ],
                },
                {"name": "clf", "class": "sklearn.linear_model.LogisticRegression"},
            ],
            "metrics": ["accuracy"],
        }
    )


def test_old_specs_keep_their_canonical_form() -> None:
    """The new split keys default to None and stay out of a spec that does not use them."""
    s = spec({"kind": "holdout"})
    assert s.to_dict()["split"] == {
        "kind": "holdout",
        "test_size": 0.25,
        "stratify": False,
        "n_splits": 5,
    }


def test_time_holdout_tests_on_the_latest_rows(project: Path) -> None:
    """The test part is the last quarter by time, whatever the file's order."""
    p = prepare(spec({"kind": "time", "column": "day"}), project_root=project)
    assert p.split["kind"] == "time" and p.split["test_rows"] == 30 and p.split["train_rows"] == 90
    assert pd.to_datetime(p.X_train["day"]).max() < pd.to_datetime(p.X_test["day"]).min()


def test_timeseries_folds_never_test_on_the_past(project: Path) -> None:
    """Each TimeSeriesSplit fold trains on earlier days than it tests on; the gap is kept."""
    p = prepare(
        spec({"kind": "timeseries", "column": "day", "n_splits": 4, "gap": 2}), project_root=project
    )
    days = pd.to_datetime(p.loaded.frame["day"]).to_numpy()
    assert len(p.folds) == 4
    for tr, te in p.folds:
        assert days[tr].max() < days[te].min()
        gap = (days[te].min() - days[tr].max()) / np.timedelta64(1, "D")
        assert gap == 3  # two whole days skipped between train and test
    assert p.split["kind"] == "timeseries" and p.split["gap"] == 2


def test_predefined_column_chooses_test_rows_and_is_not_a_feature(project: Path) -> None:
    """Rows marked 'test' are the test part; the marking column is dropped from the features."""
    p = prepare(spec({"kind": "predefined", "column": "segment"}), project_root=project)
    frame = p.loaded.frame
    assert p.split["test_rows"] == int((frame["segment"] == "test").sum())
    assert "segment" not in p.features and "segment" not in p.X_train.columns
    with pytest.raises(SpecError, match="predefined split column"):
        prepare(
            spec({"kind": "predefined", "column": "segment"}, features=["x1", "segment"]),
            project_root=project,
        )


def test_predefined_column_with_other_values_is_refused(project: Path) -> None:
    """A column that is not train/test says what it found."""
    with pytest.raises(SpecError, match="must hold 'train' or 'test'"):
        prepare(spec({"kind": "predefined", "column": "label"}), project_root=project)


def test_repeated_kfold_makes_repeats_times_folds(project: Path) -> None:
    """n_repeats=3 with 4 splits gives 12 folds, each row tested once per repeat."""
    p = prepare(
        spec({"kind": "kfold", "n_splits": 4, "n_repeats": 3, "stratify": True}),
        project_root=project,
    )
    assert len(p.folds) == 12 and p.split["n_repeats"] == 3
    tested = np.concatenate([te for _, te in p.folds])
    assert np.bincount(tested).tolist() == [3] * 120


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ({"kind": "given"}, "split kind 'given' needs 'test'"),
        ({"kind": "time"}, "split kind 'time' needs 'column'"),
        ({"kind": "holdout", "gap": 1}, "'gap' applies to split kind 'timeseries'"),
        ({"kind": "holdout", "n_repeats": 2}, "'n_repeats' applies to split kind 'kfold'"),
        ({"kind": "time", "column": "day", "stratify": True}, "stratify applies to split kind"),
    ],
)
def test_split_keys_that_do_not_fit_the_kind_are_refused(
    split: dict[str, Any], message: str
) -> None:
    """Each kind's keys are checked, with a message naming the key."""
    with pytest.raises(SpecError, match=message):
        spec(split)


def test_given_test_file_is_scored_and_recorded(project: Path) -> None:
    """Every data row trains; metrics come from the given file, which the manifest lists as a source."""
    store = Store.open(project)
    result = seedline.run(
        spec({"kind": "given", "test": "data/test.csv"}, features=["x1", "x2"]),
        project_root=project,
        store=store,
    )
    m = store.manifest(result.run_id)
    assert m.data is not None
    assert m.data.split["kind"] == "given"
    assert (m.data.split["train_rows"], m.data.split["test_rows"]) == (120, 40)
    assert [s.uri for s in m.data.sources] == ["data/train.csv", "data/test.csv"]
    assert m.data.split["test_fingerprint"] == m.data.sources[1].fingerprint
    assert 0.5 < m.metrics["accuracy"] <= 1.0
    (project / "data" / "bad.csv").write_text("x1,label\n1,up\n")
    with pytest.raises(DataError, match=r"lacks column\(s\) \['x2'"):
        prepare(
            spec({"kind": "given", "test": "data/bad.csv"}, features=["x1", "x2"]),
            project_root=project,
        )
