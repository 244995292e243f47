"""The step cache: hits give the same bits, the key sees everything that matters, prune is safe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import seedline
from seedline.execution.cache import prune, referenced_objects
from seedline.records.cache_index import CacheIndex, usage
from seedline.records.tracking import Store

from .conftest import clean_env, git, run_cli, run_json

CUSTOM = """
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class Double(TransformerMixin, BaseEstimator):
    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.asarray(X, dtype=np.float64) * 2.0
"""


def statuses(result: seedline.RunResult) -> list[str | None]:
    return [s.cache for s in result.manifest.steps]


def test_an_unchanged_rerun_hits_every_step_and_gives_the_same_bits(penguins: Path) -> None:
    """Second run: every step loaded from the cache; fingerprints, predictions and metrics identical."""
    cold = seedline.run(penguins / "seedline.yaml")
    warm = seedline.run(penguins / "seedline.yaml")
    assert statuses(cold) == ["miss", "miss"] and statuses(warm) == ["hit", "hit"]
    assert [(s.fitted, s.output) for s in cold.manifest.steps] == [
        (s.fitted, s.output) for s in warm.manifest.steps
    ]
    assert cold.fingerprints["model"] == warm.fingerprints["model"]
    assert cold.fingerprints["predictions"] == warm.fingerprints["predictions"]
    assert cold.metrics == warm.metrics
    assert warm.manifest.settings.cache is True


def test_changing_only_the_final_estimator_reuses_every_earlier_step(digits: Path) -> None:
    """A new param of the last step refits only the last step."""
    seedline.run(digits / "seedline.yaml")
    changed = seedline.run(digits / "seedline.yaml", overrides=["pipeline.clf.n_estimators=20"])
    assert statuses(changed) == ["hit", "hit", "miss"]
    other_seed = seedline.run(digits / "seedline.yaml", overrides=["seed=99"])
    assert statuses(other_seed) == ["miss", "miss", "miss"]  # new split, new filled random_states


def test_no_cache_recomputes_and_records_it(digits: Path) -> None:
    """--no-cache fits every step and neither reads nor writes entries."""
    seedline.run(digits / "seedline.yaml")
    entries = usage(Store.open(digits))["entries"]
    off = seedline.run(digits / "seedline.yaml", use_cache=False)
    assert statuses(off) == [None, None, None] and off.manifest.settings.cache is False
    assert usage(Store.open(digits))["entries"] == entries
    out = run_json(digits, "run", "--no-cache")
    assert out["status"] == "succeeded"


def test_a_user_transformer_whose_source_changes_invalidates_its_entries_only(digits: Path) -> None:
    """Comments don't count; a code edit refits that step; an unchanged output keeps later steps cached."""
    (digits / "custom.py").write_text(CUSTOM)
    spec = digits / "seedline.yaml"
    spec.write_text(
        spec.read_text().replace(
            "  - name: pca\n", "  - name: double\n    class: custom.Double\n  - name: pca\n"
        )
    )
    first = seedline.run(spec)
    assert statuses(first) == ["miss", "miss", "miss", "miss"]
    (digits / "custom.py").write_text(
        CUSTOM.replace("return self\n", "return self  # nothing to learn\n")
    )
    assert statuses(seedline.run(spec)) == ["hit", "hit", "hit", "hit"]
    (digits / "custom.py").write_text(CUSTOM.replace("* 2.0", "* 2.0 + 0.0"))
    edited = seedline.run(spec)
    assert statuses(edited) == ["hit", "miss", "hit", "hit"]
    assert edited.fingerprints["model"] == first.fingerprints["model"]


def test_a_corrupt_cached_object_is_a_miss_not_a_wrong_result(digits: Path) -> None:
    """If a cached object's bytes are damaged, the step is refitted and the result is unchanged."""
    first = seedline.run(digits / "seedline.yaml")
    store = Store.open(digits)
    for entry in CacheIndex(store).entries():
        path = store.objects.root / entry.fitted_object[:2] / entry.fitted_object[2:]
        os.chmod(path, 0o644)
        path.write_bytes(b"garbage")
    again = seedline.run(digits / "seedline.yaml")
    assert statuses(again) == ["miss", "miss", "miss"]
    assert again.fingerprints["model"] == first.fingerprints["model"]


def _final_step(digits: Path, module: str, cls: str, source: str) -> Path:
    """The digits spec with its forest replaced by ``module.cls`` (a project module)."""
    (digits / f"{module}.py").write_text(source)
    spec = digits / "seedline.yaml"
    forest = "    class: sklearn.ensemble.RandomForestClassifier\n    params: {n_estimators: 150}\n"
    assert forest in spec.read_text()
    spec.write_text(spec.read_text().replace(forest, f"    class: {module}.{cls}\n"))
    return spec


MAJORITY = """
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class Majority(ClassifierMixin, BaseEstimator):
    def fit(self, X, y):
        values, counts = np.unique(y, return_counts=True)
        self.classes_, self.majority_ = values, values[np.argmax(counts)]
        return self

    def predict(self, X):
        raise RuntimeError("scoring breaks")
"""


def test_a_run_that_fails_after_fitting_keeps_its_steps_in_files_of_their_own(
    digits: Path,
) -> None:
    """Entries are steps of the run's model file once it is stored; a run that fails before
    that (here, scoring) writes each fitted step to a file of its own, and the next run hits them."""
    _final_step(digits, "majority", "Majority", MAJORITY)
    failed = run_cli(digits, "run", check=False)  # as the next run: the spec's hash seed
    assert failed.returncode != 0 and "scoring breaks" in failed.stderr
    store = Store.open(digits)
    entries = CacheIndex(store).entries()
    assert sorted((e.step, e.fitted_step) for e in entries) == [
        ("pipeline/clf", None),
        ("pipeline/pca", None),
        ("pipeline/scale", None),
    ]
    assert len({e.fitted_object for e in entries}) == 3
    assert all(e.size_bytes > 0 for e in entries)  # the step's own file counts here
    (digits / "majority.py").write_text(
        MAJORITY.replace(
            'raise RuntimeError("scoring breaks")', "return np.full(len(X), self.majority_)"
        )
    )
    # a fresh process: this one still holds the first version of the module
    fixed = run_json(digits, "run")
    steps = Store.open(digits).manifest(fixed["run_id"])
    assert [s.cache for s in steps.steps] == ["hit", "hit", "miss"]
    model = steps.artifacts["model"]
    (clf,) = [e for e in CacheIndex(store).entries() if e.fitted_step is not None]
    assert (clf.step, clf.fitted_object, clf.fitted_step) == ("pipeline/clf", model, "clf")


COUNTING = """
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class Counting(ClassifierMixin, BaseEstimator):
    def fit(self, X, y):
        values, counts = np.unique(y, return_counts=True)
        self.classes_, self.majority_, self.calls_ = values, values[np.argmax(counts)], 0
        return self

    def predict(self, X):
        self.calls_ += 1  # against scikit-learn's rule: predicting changes the fitted state
        return np.full(len(X), self.majority_)
"""


def test_the_model_file_holds_the_state_each_step_was_fingerprinted_in(digits: Path) -> None:
    """The model is serialised before scoring calls its steps: even a step whose predict
    changes it is stored as fitted, so its entry (a step of that file) is what its
    fingerprint says, and a hit gives the same run."""
    from seedline.core.fingerprint import fingerprint_estimator
    from seedline.execution.persist import load_model

    spec = _final_step(digits, "counting", "Counting", COUNTING)
    first = seedline.run(spec)
    assert first.model.steps[-1][1].calls_ >= 1  # scoring called it
    store = Store.open(digits)
    stored = load_model(store.model_bytes(first.run_id), trusted_own=True)
    assert stored.steps[-1][1].calls_ == 0
    assert [fingerprint_estimator(est) for _, est in stored.steps] == [
        s.fitted for s in first.manifest.steps
    ]
    again = seedline.run(spec)
    assert statuses(again) == ["hit", "hit", "hit"]
    assert again.fingerprints == first.fingerprints


def test_a_failed_run_leaves_out_a_step_that_scoring_changed(digits: Path) -> None:
    """A run that fails while scoring, after a step's predict changed its state: that step is
    not cached (its state is not the one fingerprinted), the steps before it are."""
    _final_step(
        digits,
        "counting",
        "Counting",
        COUNTING.replace(
            "return np.full(len(X), self.majority_)", 'raise RuntimeError("scoring breaks")'
        ),
    )
    failed = run_cli(digits, "run", check=False)
    assert failed.returncode != 0 and "scoring breaks" in failed.stderr
    entries = CacheIndex(Store.open(digits)).entries()
    assert sorted(e.step for e in entries) == ["pipeline/pca", "pipeline/scale"]


def test_entries_in_a_model_file_hit_without_a_load_memo(
    digits: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no memo (a teammate's entries, or the memo off), a hit loads only its step's part
    of the model file, never the whole file, and checks the step's fingerprint; a file whose
    step cannot be loaded apart is loaded whole, and its steps still hit."""
    from seedline.execution import cache, persist

    monkeypatch.setenv("SEEDLINE_LOAD_MEMO", "off")
    first = seedline.run(digits / "seedline.yaml")
    entries = CacheIndex(Store.open(digits)).entries()
    assert {e.fitted_object for e in entries} == {first.manifest.artifacts["model"]}

    def whole(data: bytes) -> object:
        raise AssertionError("the whole model file was loaded")

    monkeypatch.setattr(persist, "_load_own", whole)
    warm = seedline.run(digits / "seedline.yaml")
    assert statuses(warm) == ["hit", "hit", "hit"]
    assert warm.fingerprints == first.fingerprints
    changed = seedline.run(digits / "seedline.yaml", overrides=["pipeline.clf.n_estimators=20"])
    assert statuses(changed) == ["hit", "hit", "miss"]
    monkeypatch.undo()
    monkeypatch.setenv("SEEDLINE_LOAD_MEMO", "off")

    def no_part(data: bytes, name: str, where: str = "") -> object:
        raise KeyError(name)

    monkeypatch.setattr(cache, "load_own_step", no_part)
    again = seedline.run(digits / "seedline.yaml")
    assert statuses(again) == ["hit", "hit", "hit"]
    assert again.fingerprints == first.fingerprints


CONCURRENT = "import json, seedline; r = seedline.run('seedline.yaml'); print(json.dumps([r.fingerprints['model'], [s.cache for s in r.manifest.steps]]))"


def test_concurrent_runs_computing_the_same_keys_do_not_corrupt_each_other(digits: Path) -> None:
    """Two processes filling the same cache entries at once both succeed with identical results."""
    seedline.run(digits / "seedline.yaml", use_cache=False)  # create the store first
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT],
            cwd=digits,
            env=clean_env(PYTHONHASHSEED="0"),
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs[0][0] == outs[1][0]
    store = Store.open(digits)
    assert usage(store)["entries"] == 3
    third = subprocess.run(
        [sys.executable, "-c", CONCURRENT],
        cwd=digits,
        env=clean_env(PYTHONHASHSEED="0"),
        capture_output=True,
        text=True,
        check=True,
    )
    fingerprint, cache = json.loads(third.stdout.strip().splitlines()[-1])
    assert cache == ["hit", "hit", "hit"] and fingerprint == outs[0][0]


def test_prune_never_removes_what_a_run_needs(penguins: Path) -> None:
    """Pruning everything removes cache entries, while every run's manifest, model and probe still load."""
    runs = [seedline.run(penguins / "seedline.yaml").run_id for _ in range(2)]
    store = Store.open(penguins)
    needed = referenced_objects(store)
    done = prune(store, everything=True)
    assert done["entries"] == 2 and usage(store) == {"entries": 0, "bytes": 0}
    for rid in runs:
        m = store.manifest(rid)
        for address in m.artifacts.values():
            assert store.objects.get(address)
    assert needed <= set(store.objects)


def test_cache_commands(penguins: Path) -> None:
    """ls, du and prune work from the command line; prune by size keeps the newest entries."""
    run_cli(penguins, "run", "--json")
    listing = run_json(penguins, "cache", "ls")
    assert {e["step"] for e in listing} == {"pipeline/prep", "pipeline/clf"}
    du = run_json(penguins, "cache", "du")
    assert du["entries"] == 2 and du["bytes"] > 0
    assert "entries" in run_cli(penguins, "cache", "du").stdout
    refused = run_cli(penguins, "cache", "prune", check=False)
    assert refused.returncode == 2 and "--older-than" in refused.stderr
    kept = run_json(penguins, "cache", "prune", "--older-than", "30")
    assert kept["entries"] == 0
    # both steps' fitted states are steps of the run's model file: only prep's output is
    # the cache's own, so pruning to a size removes prep's entry and keeps clf's (0 bytes)
    assert {e["step"]: e["fitted_in"] for e in listing} == {
        "pipeline/prep": "model",
        "pipeline/clf": "model",
    }
    sizes = {e["step"]: e["size_bytes"] for e in listing}
    assert sizes["pipeline/clf"] == 0 and sizes["pipeline/prep"] == du["bytes"]
    pruned = run_json(penguins, "cache", "prune", "--max-size", "1B")
    assert (pruned["entries"], pruned["bytes"]) == (1, sizes["pipeline/prep"])
    assert [e["step"] for e in run_json(penguins, "cache", "ls")] == ["pipeline/clf"]
    assert run_json(penguins, "cache", "prune", "--all")["entries"] == 1
    assert run_json(penguins, "cache", "ls") == []
    git(penguins, "status")  # the store never dirties the repository


def test_a_hostile_cached_output_is_refused_before_anything_is_allocated(tmp_path: Path) -> None:
    """An output object is content-addressed, not trusted: one whose header asks for Python
    objects, or for more (or fewer) bytes than the object holds, is refused by its header."""
    import io

    import numpy as np

    from seedline.execution.cache import _read_output
    from seedline.storage.objects import LocalObjectStore

    objects = LocalObjectStore(tmp_path / "objects")

    def stored(header_dtype: str, shape: tuple[int, ...], body: bytes) -> str:
        buf = io.BytesIO()
        header = {"descr": header_dtype, "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(buf, header)
        return objects.put(b"npy" + buf.getvalue() + body)

    pickled = io.BytesIO()
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="Python objects"):
        _read_output(objects, objects.put(b"npy" + pickled.getvalue()))
    with pytest.raises(ValueError, match="declares"):  # 8 TB declared, 16 bytes stored
        _read_output(objects, stored("<f8", (10**12,), b"\0" * 16))
    with pytest.raises(ValueError, match="declares"):  # a shape that wraps int64 around
        _read_output(objects, stored("<f8", (2**62, 4), b"\0" * 16))
    with pytest.raises(ValueError, match="declares"):  # bytes past the declared data
        _read_output(objects, stored("<f8", (2,), b"\0" * 24))
    assert _read_output(objects, stored("<f8", (2,), b"\0" * 16)).tolist() == [0.0, 0.0]
