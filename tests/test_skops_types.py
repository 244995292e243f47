"""skops is imported without crawling scikit-learn, and still trusts what stock skops trusts."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from seedline.execution.persist import dump_model, load_model
from seedline.execution.persist import untrusted_types as seedline_untrusted
from seedline.execution.skops_types import is_listed_estimator, untrusted_types


def test_public_estimators_are_listed_and_internals_are_not() -> None:
    assert is_listed_estimator("sklearn.ensemble._forest.RandomForestClassifier")
    assert is_listed_estimator("sklearn.pipeline.Pipeline")
    assert is_listed_estimator("sklearn.preprocessing._data.StandardScaler")
    # internal state, the abstract base, private classes, other packages, missing modules
    assert not is_listed_estimator("sklearn.tree._tree.Tree")
    assert not is_listed_estimator("sklearn.base.BaseEstimator")
    assert not is_listed_estimator("sklearn.ensemble._forest.BaseForest")
    assert not is_listed_estimator("sklearn.calibration._CalibratedClassifier")
    assert not is_listed_estimator("builtins.eval")
    assert not is_listed_estimator("sklearn.no_such_module.Thing")
    assert not is_listed_estimator("sklearn.utils.estimator_checks.check_estimator")


def test_a_model_loads_with_an_explicit_list_of_its_non_estimator_types() -> None:
    X, y = load_iris(return_X_y=True)
    model = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=3, random_state=0))
    model.fit(X, y)
    data = dump_model(model)
    # as stock skops: the estimators are trusted by default, the tree storage is not
    assert untrusted_types(data) == ["sklearn.tree._tree.Tree"]
    # seedline's loader adds its own list (TRUSTED_TYPES holds the tree storage, whose node
    # arrays it checks on load), so this model needs no approval
    assert seedline_untrusted(data) == []
    loaded = load_model(data)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


_FRESH = """
import json, sys
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from seedline.execution.persist import dump_model, load_model
from seedline.execution.persist import untrusted_types as seedline_untrusted
X, y = load_iris(return_X_y=True)
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(X, y)
again = load_model(dump_model(model), trusted_own=True)
print(json.dumps({
    "same": bool((again.predict(X) == model.predict(X)).all()),
    "modules": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "keras", "tensorflow", "jax")
                      or m in ("sklearn.gaussian_process", "sklearn.neural_network", "sklearn.mixture")),
}))
"""


@pytest.mark.slow
def test_saving_and_loading_a_plain_model_imports_no_framework_and_no_other_estimators() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _FRESH], capture_output=True, text=True, check=True, timeout=300
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"same": True, "modules": []}


_FRESH_LOAD = """
import json, sys
from pathlib import Path
from seedline.execution.persist import load_model
model = load_model(Path(sys.argv[1]).read_bytes(), trusted_own=True)
print(json.dumps({
    "steps": [name for name, _ in model.steps],
    "modules": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "keras", "tensorflow", "jax")
                      or m in ("sklearn.gaussian_process", "sklearn.neural_network", "sklearn.mixture")),
}))
"""


@pytest.mark.slow
def test_loading_an_own_model_first_thing_imports_no_other_estimators(tmp_path: Path) -> None:
    """A process whose first use of skops is loading a file seedline wrote (a cache hit with
    no load memo: a teammate's entry) imports skops without crawling scikit-learn."""
    X, y = load_iris(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(X, y)
    (tmp_path / "model.skops").write_bytes(dump_model(model))
    out = subprocess.run(
        [sys.executable, "-c", _FRESH_LOAD, str(tmp_path / "model.skops")],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        env={**os.environ, "SEEDLINE_LOAD_MEMO": "off"},
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"steps": ["standardscaler", "logisticregression"], "modules": []}


@pytest.mark.slow
def test_listed_estimators_match_scikit_learns_own_list() -> None:
    from sklearn.utils import all_estimators

    names = [f"{c.__module__}.{c.__name__}" for _, c in all_estimators()]
    names = [n for n in names if n.startswith("sklearn.")]
    assert names and [n for n in names if not is_listed_estimator(n)] == []


def test_the_fast_module_lookup_answers_as_skops_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """``_module_of`` (used while skops imports) names the same module as skops' own scan."""
    import types

    import scipy.special
    from skops.io import _trusted_types
    from skops.io._utils import whichmodule

    from seedline.execution.persist import skops_io
    from seedline.execution.skops_types import _module_of

    skops_io()
    assert whichmodule.__module__ == "skops.io._utils"  # skops' own lookup is back in place
    ufuncs = [
        getattr(scipy.special, n)
        for n in sorted(dir(scipy.special))
        if isinstance(getattr(scipy.special, n), np.ufunc)
    ][:25]
    assert ufuncs
    # a module that answers through __getattr__, and a module subclass, earlier than SciPy's
    lazy = types.ModuleType("seedline_test_lazy")
    lazy.__getattr__ = lambda name: ufuncs[0] if name == ufuncs[0].__name__ else None  # type: ignore[attr-defined]

    class Odd(types.ModuleType):
        def __getattribute__(self, name: str) -> object:
            return ufuncs[1] if name == ufuncs[1].__name__ else super().__getattribute__(name)

    odd = Odd("seedline_test_odd")
    # both lookups read sys.modules by name; the import system keeps its own reference
    monkeypatch.setattr(
        sys, "modules", {"seedline_test_lazy": lazy, "seedline_test_odd": odd, **sys.modules}
    )
    for f in ufuncs:
        assert _module_of(f, f.__name__, whichmodule) == whichmodule(f, f.__name__)
    assert _module_of(ufuncs[0], ufuncs[0].__name__, whichmodule) == "seedline_test_lazy"
    assert _module_of(ufuncs[1], ufuncs[1].__name__, whichmodule) == "seedline_test_odd"
    # names an earlier module binds to something else (math.gamma, math.erf: not SciPy's)
    for name in ("gamma", "erf", "expm1", "log1p"):
        f = getattr(scipy.special, name)
        assert _module_of(f, name, whichmodule) == whichmodule(f, name)
    monkeypatch.undo()
    assert _module_of(object(), "nowhere_at_all", whichmodule) == "__main__"
    # the trusted ufunc names skops computed at import are those its own scan gives
    sample = {f"{whichmodule(f, f.__name__)}.{f.__name__}" for f in ufuncs}
    listed = set(_trusted_types.SCIPY_UFUNC_TYPE_NAMES)
    assert {n for n in sample if n.startswith("scipy")} <= listed


def test_the_fast_module_lookup_reads_a_module_still_being_imported_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A module still being imported may bind a name after the index of names was built
    (``sys.modules`` unchanged meanwhile): the lookup sees it, as skops' own scan does, while
    a finished module's late addition is not read from the index (it must not need to be)."""
    import importlib.machinery
    import types

    import scipy.special
    from skops.io._utils import whichmodule

    from seedline.execution.skops_types import _module_of

    erfcx, dawsn = scipy.special.erfcx, scipy.special.dawsn
    live = types.ModuleType("seedline_test_live")
    live.__spec__ = importlib.machinery.ModuleSpec("seedline_test_live", None)
    live.__spec__._initializing = True  # type: ignore[attr-defined]
    monkeypatch.setattr(sys, "modules", {"seedline_test_live": live, **sys.modules})
    before = _module_of(erfcx, "erfcx", whichmodule)
    assert before == whichmodule(erfcx, "erfcx") != "seedline_test_live"
    live.erfcx = erfcx  # type: ignore[attr-defined]
    assert (
        _module_of(erfcx, "erfcx", whichmodule)
        == "seedline_test_live"
        == whichmodule(erfcx, "erfcx")
    )
    # once imported, the module is indexed like any other (at the next change of sys.modules)
    live.__spec__._initializing = False  # type: ignore[attr-defined]
    live.dawsn = dawsn  # type: ignore[attr-defined]
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    assert (
        _module_of(dawsn, "dawsn", whichmodule)
        == "seedline_test_live"
        == whichmodule(dawsn, "dawsn")
    )


def test_an_own_model_loads_with_the_types_its_schema_names() -> None:
    """``trusted_own`` loads take the file's types from its schema, not from a second walk of
    skops' tree: a superset of what skops checks, so the same models load, and the same way."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder
    from skops.io import get_untrusted_types

    from seedline.execution import persist

    X, y = load_iris(return_X_y=True, as_frame=True)
    X["kind"] = pd.Series(np.where(y > 0, "a", "b"), dtype=object)
    prep = ColumnTransformer(
        [
            ("num", FunctionTransformer(np.log1p), ["sepal length (cm)"]),
            ("cat", OneHotEncoder(), ["kind"]),
        ]
    )
    models = [
        make_pipeline(prep, LogisticRegression(max_iter=300)),
        make_pipeline(prep, HistGradientBoostingClassifier(max_iter=5, random_state=0)),
        RandomForestClassifier(n_estimators=2, random_state=np.random.RandomState(0)),
    ]
    for model in models:
        frame = X if hasattr(model, "steps") else X.drop(columns="kind")
        model.fit(frame, y)
        data = dump_model(model)
        assert set(get_untrusted_types(data=data)) <= set(persist._schema_types(data))
        again = load_model(data, trusted_own=True)
        np.testing.assert_array_equal(again.predict_proba(frame), model.predict_proba(frame))


def test_an_own_model_whose_schema_misses_a_type_is_walked_for_the_exact_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from seedline.execution import persist

    X, y = load_iris(return_X_y=True)
    model = make_pipeline(StandardScaler(), RandomForestClassifier(2, random_state=0)).fit(X, y)
    data = dump_model(model)
    monkeypatch.setattr(persist, "_schema_types", lambda data: [])
    np.testing.assert_array_equal(load_model(data, trusted_own=True).predict(X), model.predict(X))


def _skops_content(data: bytes) -> tuple[Any, list[Any]]:
    """A skops file's schema with each array's file name replaced by the array's values and each
    object's ``__id__`` by its order of appearance; and the arrays' values.

    skops names objects and array files after their ``id()`` (seedline numbers them, and plain
    values by value: a plain value's ``__id__`` is left out), and a record array's padding
    bytes are whatever memory held (seedline writes zeros): values are compared, field by field.
    """
    import io
    import zipfile

    def values(raw: bytes) -> Any:
        arr = np.load(io.BytesIO(raw), allow_pickle=False)
        names = arr.dtype.names or ()
        fields = [np.ascontiguousarray(arr[n]).tobytes() for n in names] or [arr.tobytes()]
        return (str(arr.dtype), arr.shape, fields)

    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        arrays = {n: values(zf.read(n)) for n in zf.namelist() if n.endswith(".npy")}
        raw = zf.read("schema.json")

    order: dict[Any, int] = {}

    def named(node: Any) -> Any:
        if isinstance(node, dict):
            plain = node.get("__loader__") == "JsonNode"
            return {
                k: order.setdefault(v, len(order)) if k == "__id__" else named(v)
                for k, v in node.items()
                if not (plain and k == "__id__")
            }
        if isinstance(node, list):
            return [named(v) for v in node]
        return arrays.get(node, node) if isinstance(node, str) else node

    return named(json.loads(raw)), sorted(map(repr, arrays.values()))


def test_the_compact_dump_is_skops_own_with_the_schema_unindented() -> None:
    """skops_dumps writes what skops.io.dumps writes (the same arrays, the same schema as data)
    with the schema on one line: smaller, and skops reads it back."""
    from seedline.execution.skops_types import skops_dumps, skops_io

    X, y = load_iris(return_X_y=True)
    model = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=5, random_state=0))
    model.fit(X, y)
    ours, theirs = skops_dumps(model), bytes(skops_io().dumps(model))
    assert len(ours) < len(theirs)
    assert _skops_content(ours) == _skops_content(theirs)
    assert dump_model(model).startswith(b"PK") and b'{"__class__"' in dump_model(model)
    loaded = load_model(ours, trusted_own=True)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_the_dump_writes_the_bytes_a_plain_zip_file_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The zip class seedline writes with changes nothing in the bytes but the members' time,
    which is fixed: a stock ``ZipFile`` whose clock reads that time writes the same bytes."""
    import time
    import zipfile

    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression

    from seedline.execution import skops_types
    from seedline.execution.skops_types import ZIP_TIME, skops_dumps

    fixed = time.struct_time((*ZIP_TIME, 0, 1, -1))
    clock = types.SimpleNamespace(time=time.time, localtime=lambda *_: fixed)
    monkeypatch.setattr(zipfile, "time", clock)

    def plain_zip_dumps(model: Any) -> bytes:  # the dump with a stock ZipFile
        with monkeypatch.context() as m:
            m.setattr(skops_types, "_NamedZipFile", zipfile.ZipFile)
            return skops_dumps(model)

    X, y = load_digits(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    pipeline = make_pipeline(StandardScaler(), PCA(20), LogisticRegression(max_iter=500))
    pipeline.fit(X, y)
    for model in (forest, pipeline):
        reference = plain_zip_dumps(model)
        ours = skops_dumps(model)
        assert ours == reference
        with zipfile.ZipFile(io.BytesIO(ours)) as zf:
            names = zf.namelist()
            assert {info.date_time for info in zf.infolist()} == {ZIP_TIME}
        assert len(names) == len(set(names)) > 2


DUMP_IN_A_FRESH_PROCESS = """
import blake3
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from seedline.execution.persist import dump_model
X, y = load_iris(return_X_y=True)
model = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=8, random_state=0))
model.fit(X, y)
scaler = model.steps[0][1]
scaler.words_ = {f"word{i}" for i in range(40)}  # hash order: PYTHONHASHSEED's
scaler.raw_ = b"raw bytes"
scaler.buffer_ = bytearray(b"a buffer")
print(blake3.blake3(dump_model(model)).hexdigest())
"""


def test_the_same_model_gives_the_same_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model's file depends on the model alone: not on when it is written (zip members carry
    a fixed time), nor on memory addresses (objects are numbered in the order met, plain
    values by value), nor on a tree's padding bytes (uninitialised memory, zeroed in the
    copy written), nor on the hash seed (a set's elements sorted), nor on chance (bytes named
    by content, not a random UUID). So a copy, a pickle round trip, a load of the file itself,
    a later dump and other processes all give the same bytes, the same content address; and
    stock skops loads them."""
    import copy
    import pickle
    import time
    import zipfile

    import blake3
    from skops.io import get_untrusted_types, loads

    X, y = load_iris(return_X_y=True)
    model = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=8, random_state=0))
    model.fit(X, y)
    scaler = model.steps[0][1]
    scaler.words_ = {f"word{i}" for i in range(40)}
    scaler.raw_ = b"raw bytes"
    scaler.buffer_ = bytearray(b"a buffer")
    data = dump_model(model)
    later = types.SimpleNamespace(time=lambda: time.time() + 86_400.0, localtime=time.localtime)
    monkeypatch.setattr(zipfile, "time", later)
    assert dump_model(model) == data
    assert dump_model(copy.deepcopy(model)) == data
    assert dump_model(pickle.loads(pickle.dumps(model))) == data
    assert dump_model(load_model(data, trusted_own=True)) == data
    for hash_seed in ("1", "2"):  # other processes, and other orders of the set
        fresh = subprocess.run(
            [sys.executable, "-c", DUMP_IN_A_FRESH_PROCESS],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
        )
        assert fresh.stdout.strip() == blake3.blake3(data).hexdigest()
    stock = loads(data, trusted=get_untrusted_types(data=data))
    np.testing.assert_array_equal(stock.predict_proba(X), model.predict_proba(X))
    stock_scaler = stock.steps[0][1]
    assert stock_scaler.words_ == scaler.words_
    assert (stock_scaler.raw_, stock_scaler.buffer_) == (b"raw bytes", bytearray(b"a buffer"))
    assert type(stock_scaler.buffer_) is bytearray
    import scipy.sparse
    from sklearn.svm import SVC

    sparse = SVC(random_state=0).fit(scipy.sparse.csr_matrix(X), y)  # state in a sparse matrix
    assert scipy.sparse.issparse(sparse.support_vectors_)
    assert dump_model(pickle.loads(pickle.dumps(sparse))) == dump_model(sparse)


def test_a_step_loads_apart_as_the_whole_model_holds_it() -> None:
    """``load_own_step`` builds only the named step's part of a pipeline's file: each step
    comes out with the fitted state the whole load gives it (and the pipeline had), nested
    pipelines and column transformers included; its arrays are its own, not the model's."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    from seedline.core.fingerprint import fingerprint_estimator
    from seedline.execution.persist import load_own_step

    X, y = load_iris(return_X_y=True, as_frame=True)
    X["kind"] = pd.Series(np.where(y > 0, "a", "b"), dtype=object)
    prep = ColumnTransformer(
        [
            ("num", make_pipeline(StandardScaler(), PCA(n_components=2)), list(X.columns[:4])),
            ("cat", OneHotEncoder(), ["kind"]),
        ]
    )
    forest = RandomForestClassifier(n_estimators=5, random_state=0)
    model = Pipeline([("prep", prep), ('odd "name"', StandardScaler()), ("clf", forest)])
    model.fit(X, y)
    data = dump_model(model)
    whole = load_model(data, trusted_own=True)
    for (name, fitted), (_, loaded_whole) in zip(model.steps, whole.steps, strict=True):
        part = load_own_step(data, name)
        assert type(part) is type(fitted)
        assert fingerprint_estimator(part) == fingerprint_estimator(fitted)
        assert fingerprint_estimator(part) == fingerprint_estimator(loaded_whole)
    clf = load_own_step(data, "clf")
    features = whole[:-1].transform(X)
    np.testing.assert_array_equal(clf.predict_proba(features), forest.predict_proba(features))


def test_a_step_that_cannot_be_loaded_apart_says_so() -> None:
    """No such step, or no pipeline at all: a ``KeyError`` (the cache then loads the file whole)."""
    from seedline.execution.persist import load_own_step

    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(X, y)
    with pytest.raises(KeyError, match="no step 'scaler'"):
        load_own_step(dump_model(pipe), "scaler")
    bare = LogisticRegression(max_iter=300).fit(X, y)
    with pytest.raises(KeyError, match="not a pipeline"):
        load_own_step(dump_model(bare), "logisticregression")


def test_two_clones_running_the_same_spec_store_the_same_model_object(tmp_path: Path) -> None:
    """Two projects, one spec, one fit each: the same model file, at the same address (a
    teammate's model is the object you would have written)."""
    import seedline

    from .conftest import make_project

    runs = [
        seedline.run(make_project(tmp_path / who, "penguins") / "seedline.yaml", use_cache=False)
        for who in ("a", "b")
    ]
    assert runs[0].fingerprints["model"] == runs[1].fingerprints["model"]
    assert runs[0].manifest.artifacts["model"] == runs[1].manifest.artifacts["model"]


def test_a_record_array_is_written_with_zero_padding_in_its_own_memory_order() -> None:
    """A record array whose padding holds garbage is written with zeros there, in its own
    memory order, and loads with the same values and order."""
    import zipfile

    kind = np.dtype({"names": ["a", "b"], "formats": ["<i8", "u1"], "itemsize": 16})
    garbage = np.full(6 * kind.itemsize, 0xAB, dtype=np.uint8)  # in the padding, too
    records = np.ndarray((3, 2), dtype=kind, buffer=garbage, order="F")
    records["a"], records["b"] = np.arange(6).reshape(3, 2), 7
    scaler = StandardScaler().fit(load_iris(return_X_y=True)[0])
    scaler.records_ = records
    data = dump_model(scaler)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        raw = [zf.read(n) for n in zf.namelist() if n.endswith(".npy")]
    written = [r for r in raw if b"'a'" in r[:200]]
    assert len(written) == 1 and b"\xab" not in written[0]
    loaded = load_model(data, trusted_own=True).records_
    assert loaded.flags.f_contiguous and not loaded.flags.c_contiguous
    np.testing.assert_array_equal(loaded["a"], records["a"])
    np.testing.assert_array_equal(loaded["b"], records["b"])
