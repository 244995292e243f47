"""Spec composition: 'extends' chains, reusable step blocks ('use'), and what the manifest and diff say of them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import seedline
from seedline.core.composition import flatten_spec, merge
from seedline.core.errors import SpecError
from seedline.core.spec import load_spec, read_spec
from seedline.records.tracking import Store
from seedline.workflow.compare import diff_manifests

BLOCKS = """
numeric:
  dtype: number
  steps:
    - name: impute
      class: sklearn.impute.SimpleImputer
      params: {strategy: median}
    - name: scale
      class: sklearn.preprocessing.StandardScaler
categorical:
  dtype: string
  steps:
    - name: impute
      class: sklearn.impute.SimpleImputer
      params: {strategy: most_frequent}
    - name: onehot
      class: sklearn.preprocessing.OneHotEncoder
      params: {handle_unknown: ignore, sparse_output: false}
forest:
  class: sklearn.ensemble.RandomForestClassifier
  params: {n_estimators: 20, min_samples_leaf: 2}
"""

BASE = """
name: penguins
seed: 7
data: {source: data/penguins.csv, target: species}
split: {kind: holdout, test_size: 0.25, stratify: true}
pipeline:
  - name: prep
    class: sklearn.compose.ColumnTransformer
    transformers:
      - {use: "blocks.yaml#numeric", name: num}
      - {use: "blocks.yaml#categorical", name: cat}
  - {use: "blocks.yaml#forest", name: clf}
metrics: [accuracy]
"""


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def test_merge_mappings_by_key_named_lists_by_name_and_other_values_replaced() -> None:
    """Mappings and named lists merge; new names are appended; plain lists are replaced whole."""
    base = {
        "a": {"x": 1, "y": 2},
        "steps": [{"name": "p", "v": 1}, {"name": "q", "v": 2}],
        "m": [1, 2],
    }
    over = {"a": {"y": 3}, "steps": [{"name": "q", "v": 5}, {"name": "r", "v": 6}], "m": [9]}
    assert merge(base, over) == {
        "a": {"x": 1, "y": 3},
        "steps": [{"name": "p", "v": 1}, {"name": "q", "v": 5}, {"name": "r", "v": 6}],
        "m": [9],
    }
    assert base["a"] == {"x": 1, "y": 2}, "merge must not change its inputs"


def test_extends_two_levels_and_blocks_resolve_to_the_flat_spec(tmp_path: Path) -> None:
    """A child of a child of a base with blocks gives exactly the spec written out flat, same fingerprint."""
    write(
        tmp_path,
        {
            "blocks.yaml": BLOCKS,
            "base.yaml": BASE,
            "mid.yaml": "extends: base.yaml\npipeline:\n  - {name: clf, params: {n_estimators: 30}}\n",
            "specs/child.yaml": "extends: ../mid.yaml\nname: child\nseed: 11\n",
        },
    )
    spec, composed = read_spec(tmp_path / "specs/child.yaml")
    flat = yaml.safe_load(BASE)
    flat["name"], flat["seed"] = "child", 11
    blocks = yaml.safe_load(BLOCKS)
    flat["pipeline"][0]["transformers"] = [
        {"name": "num", **blocks["numeric"]},
        {"name": "cat", **blocks["categorical"]},
    ]
    flat["pipeline"][1] = {"name": "clf", **blocks["forest"]}
    flat["pipeline"][1]["params"] = {"n_estimators": 30, "min_samples_leaf": 2}
    expected = seedline.Spec.from_dict(flat)
    assert spec == expected
    assert spec.fingerprint() == expected.fingerprint()
    assert [(f.path, f.role) for f in composed.files] == [
        ("child.yaml", "spec"),
        ("../mid.yaml", "extends"),
        ("../base.yaml", "extends"),
        ("../blocks.yaml", "blocks"),
    ]
    origin = composed.origin
    assert origin["pipeline.clf.params.n_estimators"] == "../mid.yaml"
    assert origin["pipeline.clf.params.min_samples_leaf"] == "../blocks.yaml"
    assert origin["data.target"] == "../base.yaml"
    assert "seed" not in origin and "name" not in origin, (
        "the spec file's own values are not listed"
    )


def test_plain_spec_is_not_marked_composed(tmp_path: Path) -> None:
    """A spec without extends/use records no composition (manifests of plain specs are unchanged)."""
    write(tmp_path, {"blocks.yaml": BLOCKS, "base.yaml": BASE})
    flat = yaml.safe_load(BASE)
    flat["pipeline"] = [{"name": "clf", "class": "sklearn.dummy.DummyClassifier"}]
    (tmp_path / "flat.yaml").write_text(yaml.safe_dump(flat))
    _, composed = read_spec(tmp_path / "flat.yaml")
    assert not composed.composed
    assert composed.origin == {}


def test_extends_cycle_is_an_error_naming_the_chain(tmp_path: Path) -> None:
    """a -> b -> c -> a is refused, and the message shows the loop."""
    write(
        tmp_path,
        {
            "a.yaml": "extends: b.yaml\n",
            "b.yaml": "extends: c.yaml\n",
            "c.yaml": "extends: a.yaml\n",
        },
    )
    with pytest.raises(SpecError, match=r"cycle: a\.yaml -> b\.yaml -> c\.yaml -> a\.yaml"):
        load_spec(tmp_path / "a.yaml")


def test_missing_base_and_unknown_block_are_clear_errors(tmp_path: Path) -> None:
    """A missing base file names the path; an unknown block name suggests the closest one."""
    write(tmp_path, {"a.yaml": "extends: nowhere.yaml\n", "blocks.yaml": BLOCKS})
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "a.yaml")
    write(tmp_path, {"b.yaml": BASE.replace("blocks.yaml#forest", "blocks.yaml#forrest")})
    with pytest.raises(SpecError, match=r"no block named 'forrest'\. Did you mean 'forest'"):
        load_spec(tmp_path / "b.yaml")


def test_flatten_spec_addresses_named_items_by_name() -> None:
    """The flattened keys are the ones 'diff' shows: steps and groups by name."""
    flat = flatten_spec(
        {"pipeline": [{"name": "clf", "class": "X", "params": {"C": 1}}], "metrics": ["a"]}
    )
    assert flat == {"pipeline.clf.class": "X", "pipeline.clf.params.C": 1, "metrics": ["a"]}


@pytest.mark.slow
def test_run_records_sources_and_diff_names_the_inherited_file(penguins: Path) -> None:
    """The manifest lists the files with fingerprints; changing the base makes diff name it."""
    write(
        penguins,
        {
            "blocks.yaml": BLOCKS,
            "base.yaml": BASE,
            "child.yaml": "extends: base.yaml\nname: child\n",
        },
    )
    store = Store.open(penguins)
    first = seedline.run(penguins / "child.yaml", store=store)
    m1 = store.manifest(first.run_id)
    assert m1.spec_sources is not None
    assert {f.path for f in m1.spec_sources.files} == {"child.yaml", "base.yaml", "blocks.yaml"}
    assert m1.spec_sources.origin["pipeline.clf.params.n_estimators"] == "blocks.yaml"

    (penguins / "blocks.yaml").write_text(BLOCKS.replace("n_estimators: 20", "n_estimators: 25"))
    second = seedline.run(penguins / "child.yaml", store=store)
    report = diff_manifests(m1, store.manifest(second.run_id))
    changed = [d for d in report.differences if d.name == "pipeline.clf.params.n_estimators"]
    assert changed and changed[0].detail == "inherited from blocks.yaml (that file changed)"
