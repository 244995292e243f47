"""Building on a fitted model: a step taken ``from: MODEL/STEP``, frozen, recorded and proven.

The penguins preprocessing that ``penguins@production`` fitted is reused by a new spec with
another classifier: it is not refitted (its fitted fingerprint equals the source step's),
the manifest links the new run to the source run and model version, ``reproduce`` takes
the step from the same run even after the alias has moved, and the new model serves
through the one loader.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import seedline
from seedline.core.errors import SpecError
from seedline.core.spec import Spec
from seedline.execution.frozen import FrozenStepError
from seedline.execution.persist import load_model
from seedline.records.registry import Registry
from seedline.records.tracking import Store
from seedline.workflow.browse import model_lineage
from seedline.workflow.registration import register_run

from .conftest import git, make_project

BUILT_ON = """\
name: penguins-logreg
seed: 20240611  # the source run's seed: the same split, so the same training rows
data:
  source: data/penguins.csv
  target: species
split:
  kind: holdout
  test_size: 0.25
  stratify: true
pipeline:
  - name: prep
    from: {ref}
  - name: clf
    class: sklearn.linear_model.LogisticRegression
    params: {{max_iter: 500}}
metrics: [accuracy]
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """penguins with a run registered as penguins@1, alias production."""
    root = make_project(tmp_path_factory.mktemp("frozen"), "penguins")
    source = seedline.run(root / "seedline.yaml", use_cache=False)
    store = Store.open(root)
    version = register_run(store, source.run_id, "penguins")
    Registry(store).set_alias("penguins", "production", version.version)
    store.close()
    (root / "built_on.yaml").write_text(BUILT_ON.format(ref="penguins@production/prep"))
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "a model built on the production preprocessing")
    return root


def test_a_step_from_a_registered_model_is_frozen_recorded_and_not_refitted(project: Path) -> None:
    store = Store.open(project)
    source = store.manifest(Registry(store).resolve("penguins@production").run_id)
    result = seedline.run(project / "built_on.yaml", use_cache=False)
    prep = result.manifest.steps[0]
    assert prep.cls == "sklearn.frozen._frozen.FrozenEstimator"
    assert prep.fitted == source.steps[0].fitted  # the very state the source run fitted
    assert prep.output == source.steps[0].output  # same training rows, same transform
    assert prep.frozen_from is not None
    assert (prep.frozen_from.run_id, prep.frozen_from.model, prep.frozen_from.step) == (
        source.run_id,
        "penguins@1",
        "prep",
    )
    assert prep.frozen_from.ref == "penguins@production/prep"
    # the saved model loads through the one loader without --trust (FrozenEstimator is trusted)
    model = load_model(store.model_bytes(result.run_id))
    assert type(model.steps[0][1]).__name__ == "FrozenEstimator"
    # the lineage (models show, the UI's model page) links the new model to its source
    register_run(store, result.run_id, "penguins-logreg")
    built_on = model_lineage(store, "penguins-logreg@1")["built_on"]
    assert built_on == [
        {
            "step": "prep",
            "ref": "penguins@production/prep",
            "run_id": source.run_id,
            "model": "penguins@1",
            "source_step": "prep",
            "fitted": source.steps[0].fitted,
        }
    ]
    assert result.manifest.spec["pipeline"][0] == {
        "name": "prep",
        "class": "sklearn.frozen.FrozenEstimator",
        "from": "penguins@production/prep",
        "params": {},
        "remainder": "drop",
    }
    store.close()


def test_reproduce_takes_the_step_from_the_same_run_after_the_alias_moved(project: Path) -> None:
    original = seedline.run(project / "built_on.yaml", use_cache=False)
    other = seedline.run(project / "seedline.yaml", overrides=["seed=1"], use_cache=False)
    store = Store.open(project)
    moved_to = register_run(store, other.run_id, "penguins")
    Registry(store).set_alias("penguins", "production", moved_to.version)  # production -> @2
    store.close()
    report = seedline.reproduce(original.run_id, project_root=project)
    assert report.verdict == "bitwise", report.to_dict()
    # a new run follows the alias to the new version, whose preprocessing differs
    moved = seedline.run(project / "built_on.yaml", use_cache=False)
    assert moved.manifest.steps[0].frozen_from is not None
    assert moved.manifest.steps[0].frozen_from.model == "penguins@2"
    assert moved.manifest.steps[0].fitted != original.manifest.steps[0].fitted


def test_a_run_id_works_as_the_source_and_k_folds_use_the_frozen_step(project: Path) -> None:
    store = Store.open(project)
    source = Registry(store).resolve("penguins@1").run_id
    store.close()
    spec = Spec.from_dict(
        {
            **Spec.from_dict(
                __import__("yaml").safe_load(BUILT_ON.format(ref=f"{source}/prep"))
            ).to_dict(),
            "split": {"kind": "kfold", "n_splits": 3},
        }
    )
    result = seedline.run(spec, project_root=project, use_cache=False)
    assert result.manifest.cv is not None and len(result.manifest.cv.folds) == 3
    fold_prep = {f.steps[0]["fitted"] for f in result.manifest.cv.folds}
    assert fold_prep == {result.manifest.steps[0].fitted}  # no fold refitted it


def test_bad_references_are_clear_errors(project: Path) -> None:
    with pytest.raises(SpecError, match="both 'class' and 'from'"):
        Spec.from_dict(
            {
                "name": "x",
                "seed": 1,
                "data": {"source": "d.csv", "target": "y"},
                "pipeline": [
                    {"name": "p", "class": "sklearn.preprocessing.StandardScaler", "from": "m/p"}
                ],
                "metrics": ["accuracy"],
            }
        )
    with pytest.raises(SpecError, match="MODEL/STEP"):
        Spec.from_dict(
            {
                "name": "x",
                "seed": 1,
                "data": {"source": "d.csv", "target": "y"},
                "pipeline": [{"name": "p", "from": "penguins@production"}],
                "metrics": ["accuracy"],
            }
        )
    (project / "typo.yaml").write_text(BUILT_ON.format(ref="penguins@production/perp"))
    with pytest.raises(FrozenStepError) as err:
        seedline.run(project / "typo.yaml", use_cache=False)
    assert "no top-level step 'perp'" in err.value.message and "prep" in err.value.message
    (project / "typo.yaml").write_text(BUILT_ON.format(ref="pengiuns/prep"))
    with pytest.raises(FrozenStepError, match="neither a registered model nor a run"):
        seedline.run(project / "typo.yaml", use_cache=False)


def test_a_model_with_a_frozen_step_is_not_reused_for_one_with_the_step_itself(
    tmp_path: Path,
) -> None:
    """A frozen step records the fingerprint of the step it wraps, so a model built on
    penguins@production/prep and one that fits the same prep itself share a model
    fingerprint. The second must still store its own model (ColumnTransformer, not the
    frozen wrapper), and its cache entries hit as what they are."""
    root = make_project(tmp_path, "penguins")
    source = seedline.run(root / "seedline.yaml", use_cache=False)
    store = Store.open(root)
    Registry(store).set_alias(
        "penguins", "production", register_run(store, source.run_id, "penguins").version
    )
    store.close()
    built = BUILT_ON.format(ref="penguins@production/prep")
    (root / "built_on.yaml").write_text(built)
    prep = (root / "seedline.yaml").read_text()
    prep = prep[prep.index("  - name: prep") : prep.index("  - name: clf")]
    (root / "fits_prep.yaml").write_text(
        built.replace("  - name: prep\n    from: penguins@production/prep\n", prep)
    )
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "the same prep, frozen and fitted")
    frozen = seedline.run(root / "built_on.yaml")
    fitted = seedline.run(root / "fits_prep.yaml")
    assert fitted.fingerprints["model"] == frozen.fingerprints["model"]
    assert fitted.manifest.artifacts["model"] != frozen.manifest.artifacts["model"]
    stored = load_model(Store.open(root).model_bytes(fitted.run_id), trusted_own=True)
    assert type(stored.steps[0][1]).__name__ == "ColumnTransformer"
    again = seedline.run(root / "fits_prep.yaml")
    assert [s.cache for s in again.manifest.steps] == ["hit", "hit"]
    assert type(again.model.steps[0][1]).__name__ == "ColumnTransformer"
    assert again.fingerprints == fitted.fingerprints
