"""Specs: validation, round-trips, overrides, and errors that name the file, the line and a fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from seedline.core.errors import DataError, SpecError
from seedline.core.spec import Spec, apply_overrides, load_spec

from .conftest import EXAMPLES

PENGUINS = EXAMPLES / "penguins" / "seedline.yaml"
DIGITS = EXAMPLES / "digits" / "seedline.yaml"


@pytest.mark.parametrize("path", [PENGUINS, DIGITS])
def test_spec_round_trips_with_the_same_fingerprint(path: Path) -> None:
    """from_dict(to_dict()) gives an equal spec with the same fingerprint, also through YAML."""
    s = load_spec(path)
    again = Spec.from_dict(s.to_dict())
    assert again == s
    assert again.fingerprint() == s.fingerprint()
    via_yaml = Spec.from_dict(yaml.safe_load(s.to_yaml()))
    assert via_yaml == s and via_yaml.fingerprint() == s.fingerprint()
    assert s.fingerprint().startswith("spec:")


def test_spec_fingerprint_changes_with_any_value() -> None:
    """Any change of value, however small, changes the fingerprint."""
    s = load_spec(PENGUINS)
    assert load_spec(PENGUINS, ["pipeline.clf.n_estimators=201"]).fingerprint() != s.fingerprint()
    assert load_spec(PENGUINS, ["seed=1"]).fingerprint() != s.fingerprint()


def test_spec_can_be_built_in_python() -> None:
    """A spec built from a dict in Python is the same object model as one from YAML."""
    s = Spec.from_dict(
        {
            "name": "py",
            "seed": 1,
            "data": {"source": "sklearn:load_iris", "target": "target"},
            "pipeline": [
                {
                    "name": "clf",
                    "class": "sklearn.linear_model.LogisticRegression",
                    "params": {"C": 0.5},
                }
            ],
            "metrics": ["accuracy"],
        }
    )
    assert s.data.sources == ["sklearn:load_iris"]
    assert s.pipeline[0].cls == "sklearn.linear_model.LogisticRegression"
    assert s.to_dict()["pipeline"][0]["class"] == "sklearn.linear_model.LogisticRegression"
    assert s.split.kind == "holdout" and s.execution.threads == 1


def test_overrides_address_steps_groups_and_params_by_name() -> None:
    """--set paths walk named steps and column groups; other keys of a step are its params."""
    s = load_spec(
        PENGUINS,
        [
            "pipeline.clf.n_estimators=5",
            "pipeline.prep.num.impute.strategy=mean",
            "seed=3",
            "split.test_size=0.3",
            "pipeline.clf.params.max_depth=4",
            "execution.threads=2",
        ],
    )
    assert s.pipeline[1].params == {"n_estimators": 5, "min_samples_leaf": 2, "max_depth": 4}
    assert s.pipeline[0].transformers is not None
    assert s.pipeline[0].transformers[0].steps[0].params == {"strategy": "mean"}  # type: ignore[union-attr]
    assert (s.seed, s.split.test_size, s.execution.threads) == (3, 0.3, 2)


def test_override_values_are_parsed_as_yaml() -> None:
    """Numbers, booleans, null and lists in --set values keep their types."""
    d = apply_overrides(
        {"a": {}}, ["a.i=3", "a.f=0.5", "a.b=true", "a.n=null", "a.l=[1, 2]", "a.s=text"]
    )
    assert d["a"] == {"i": 3, "f": 0.5, "b": True, "n": None, "l": [1, 2], "s": "text"}


def test_bad_override_paths_suggest_the_right_name() -> None:
    """An override naming a step that does not exist lists the steps and suggests one."""
    with pytest.raises(SpecError, match=r"no item named 'clff'.*Did you mean 'clf'"):
        load_spec(PENGUINS, ["pipeline.clff.n_estimators=5"])
    with pytest.raises(SpecError, match=r"must look like path\.to\.key=value"):
        load_spec(PENGUINS, ["seed"])
    with pytest.raises(SpecError, match=r"unknown key 'splitt'.*Did you mean 'split'"):
        load_spec(PENGUINS, ["splitt.test_size=0.2"])


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "seedline.yaml"
    p.write_text(text)
    return p


GOOD = """name: t
seed: 1
data:
  source: sklearn:load_iris
  target: target
pipeline:
  - name: clf
    class: sklearn.linear_model.LogisticRegression
metrics: [accuracy]
"""


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    """A YAML syntax error points at the file and the line of the problem."""
    p = write(tmp_path, GOOD.replace("  target: target", "  target: [target"))
    with pytest.raises(SpecError) as err:
        load_spec(p)
    assert err.value.file == str(p)
    assert err.value.line is not None and 5 <= err.value.line <= 7
    assert str(p) in str(err.value) and "malformed YAML" in str(err.value)


def test_unknown_key_gets_a_did_you_mean_and_its_line(tmp_path: Path) -> None:
    """A misspelt key is named with its line, the closest allowed key and the full list."""
    p = write(tmp_path, GOOD.replace("metrics:", "metrcs:"))
    with pytest.raises(SpecError) as err:
        load_spec(p)
    msg = str(err.value)
    assert "unknown key 'metrcs'" in msg and "Did you mean 'metrics'" in msg
    assert err.value.line == 9


def test_invalid_values_are_explained(tmp_path: Path) -> None:
    """Out-of-range values say what was expected and what was found."""
    with pytest.raises(SpecError, match=r"test_size must be a fraction in \(0, 1\), got 1.5"):
        Spec.from_dict({**yaml.safe_load(GOOD), "split": {"test_size": 1.5}})
    with pytest.raises(SpecError, match="missing required key 'seed'"):
        Spec.from_dict({k: v for k, v in yaml.safe_load(GOOD).items() if k != "seed"})
    with pytest.raises(SpecError, match="full import path"):
        Spec.from_dict(
            {**yaml.safe_load(GOOD), "pipeline": [{"name": "c", "class": "LogisticRegression"}]}
        )
    with pytest.raises(SpecError, match="used twice"):
        Spec.from_dict(
            {
                **yaml.safe_load(GOOD),
                "pipeline": [{"name": "c", "class": "a.B"}, {"name": "c", "class": "a.B"}],
            }
        )
    with pytest.raises(SpecError, match="exactly one of 'columns'"):
        Spec.from_dict(
            {
                **yaml.safe_load(GOOD),
                "pipeline": [
                    {
                        "name": "p",
                        "class": "sklearn.compose.ColumnTransformer",
                        "transformers": [{"name": "g"}],
                    }
                ],
            }
        )


def test_missing_spec_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist") as err:
        load_spec(tmp_path / "seedline.yaml")
    assert "seedline init" in str(err.value)


# -- errors found when the spec meets code and data (compile and load) -------------------------
def compile_errors(tmp_path: Path, text: str, data: str | None = None) -> Exception:
    from seedline.execution.runner import run

    write(tmp_path, text)
    if data is not None:
        (tmp_path / "d.csv").write_text(data)
    with pytest.raises((SpecError, DataError)) as err:
        run(tmp_path / "seedline.yaml")
    assert not (tmp_path / ".seedline").exists(), (
        "a spec or data error must not leave anything in the store"
    )
    return err.value


def test_unknown_class_gets_a_did_you_mean(tmp_path: Path) -> None:
    err = compile_errors(tmp_path, GOOD.replace("LogisticRegression", "LogisticRegresion"))
    assert "has no class 'LogisticRegresion'" in str(
        err
    ) and "Did you mean one of 'LogisticRegression'" in str(err)


def test_unknown_module_gets_a_did_you_mean(tmp_path: Path) -> None:
    err = compile_errors(tmp_path, GOOD.replace("sklearn.linear_model.", "sklearn.linear_modle."))
    assert "cannot import module 'sklearn.linear_modle'" in str(
        err
    ) and "sklearn.linear_model" in str(err)


def test_unknown_parameter_gets_a_did_you_mean(tmp_path: Path) -> None:
    text = GOOD.replace("LogisticRegression\n", "LogisticRegression\n    params: {max_iters: 10}\n")
    err = compile_errors(tmp_path, text)
    assert "LogisticRegression has no parameter 'max_iters'" in str(
        err
    ) and "Did you mean 'max_iter'" in str(err)


def test_unknown_metric_gets_a_did_you_mean(tmp_path: Path) -> None:
    err = compile_errors(tmp_path, GOOD.replace("[accuracy]", "[acuracy]"))
    assert "'acuracy' is not a scikit-learn scorer name" in str(err) and "accuracy" in str(err)


def test_missing_data_file_lists_what_exists(tmp_path: Path) -> None:
    text = GOOD.replace("sklearn:load_iris", "data/penguin.csv")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "penguins.csv").write_text("a,b\n1,2\n")
    err = compile_errors(tmp_path, text)
    assert "data file 'data/penguin.csv' does not exist" in str(err)
    assert "data/penguins.csv" in str(err)


def test_missing_target_lists_the_columns(tmp_path: Path) -> None:
    text = GOOD.replace("sklearn:load_iris", "d.csv").replace("target: target", "target: specis")
    err = compile_errors(tmp_path, text, data="species,mass\na,1\nb,2\n")
    assert "target column 'specis' is not in the data" in str(err)
    assert "Did you mean 'species'" in str(err) and "columns: species, mass" in str(err)


def test_unknown_bundled_dataset_lists_the_bundled_ones(tmp_path: Path) -> None:
    err = compile_errors(tmp_path, GOOD.replace("load_iris", "load_irs"))
    assert "not a dataset bundled with scikit-learn" in str(err) and "load_iris" in str(err)
