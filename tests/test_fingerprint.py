"""Fingerprints: stable encodings locked by expected hashes, format independence, per-column hashes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.preprocessing import StandardScaler

import seedline
from seedline.core.errors import UnhashableError
from seedline.core.fingerprint import fingerprint_array, fingerprint_bytes, fingerprint_value


def small_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": [1.5, np.nan, -3.25, 4.0],
            "n": [1, 2, 3, 4],
            "s": ["a", None, "ccc", "d"],
            "b": [True, False, True, True],
        }
    )


def fitted_scaler() -> StandardScaler:
    return StandardScaler().fit(np.arange(12, dtype=np.float64).reshape(4, 3))


# Expected values are part of seedline's contract: if one of these changes, every stored
# fingerprint (and every user's ability to verify an old run) changes with it.
EXPECTED = {
    "bytes": "bytes:5b0d9fff797ca268b0eba7c63cd89dfde417e7dca6a8989ac4800f54c48a3615",
    "table": "table:4215ca6b55eb175d9494a997afec8036111800a5058ec07844c25f0546a50ec3",
    "estimator": "estimator:72fe70fb94ef79a7113d5e9b34e13689ea57e8bbd26ca91a1412c4cf4718c068",
    "value": "value:8a9e8bf241b4fdabbe3c55f6cfd1cd522775f9541e308970741c4af8bd019a86",
}


def test_bytes_fingerprint_is_blake3_with_a_type_prefix() -> None:
    """The bytes fingerprint is BLAKE3 of the bytes, prefixed by its kind."""
    import blake3

    assert fingerprint_bytes(b"seedline") == "bytes:" + blake3.blake3(b"seedline").hexdigest()
    assert fingerprint_bytes(b"seedline") == EXPECTED["bytes"]


def test_file_fingerprint_matches_bytes_and_is_independent_of_threading(tmp_path: Path) -> None:
    """A file hashes like its bytes, whether small (one thread) or large (all cores)."""
    import blake3

    small = tmp_path / "small.bin"
    small.write_bytes(b"seedline")
    assert seedline.fingerprint_file(small) == "file:" + blake3.blake3(b"seedline").hexdigest()
    big = tmp_path / "big.bin"
    data = np.random.default_rng(0).integers(0, 255, size=5 << 20, dtype=np.uint8).tobytes()
    big.write_bytes(data)
    assert seedline.fingerprint_file(big) == "file:" + blake3.blake3(data).hexdigest()
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert seedline.fingerprint_file(empty) == "file:" + blake3.blake3(b"").hexdigest()


def test_table_fingerprint_is_locked() -> None:
    """The table encoding is stable: a fixed table always gives the same digest."""
    fp = seedline.fingerprint_table(small_table())
    assert fp.digest == EXPECTED["table"]
    assert fp.schema == {"x": "float64", "n": "int64", "s": "string", "b": "bool"}
    assert fp.rows == 4


def test_estimator_fingerprint_is_locked() -> None:
    """A fitted StandardScaler on fixed data always gives the same fingerprint."""
    assert seedline.fingerprint_estimator(fitted_scaler()) == EXPECTED["estimator"]


def test_value_fingerprint_is_locked_and_ignores_mapping_and_set_order() -> None:
    """Mappings and sets hash independently of insertion order."""
    a = {"b": [1, 2.5, "x"], "a": {3, 1, 2}, "c": None, "d": (True, b"\x00")}
    b = {"d": (True, b"\x00"), "c": None, "a": {2, 3, 1}, "b": [1, 2.5, "x"]}
    assert fingerprint_value(a) == fingerprint_value(b) == EXPECTED["value"]
    assert fingerprint_value([1, 2]) != fingerprint_value((1, 2))
    assert fingerprint_value(1) != fingerprint_value(1.0) != fingerprint_value("1")


_CROSS = """
import json, sys
sys.path.insert(0, {tests!r})
from test_fingerprint import fitted_scaler, small_table
import seedline
from seedline.core.fingerprint import fingerprint_value
print(json.dumps([seedline.fingerprint_table(small_table()).digest, seedline.fingerprint_estimator(fitted_scaler()),
                  fingerprint_value({{"s": {{"x", "y", "z"}}, "k": ["a", 1]}})]))
"""


@pytest.mark.parametrize("hash_seed", ["0", "1", "random"])
def test_fingerprints_are_identical_in_a_fresh_process(hash_seed: str) -> None:
    """Users would lose their caches and proofs if a fingerprint depended on the process (hash seed, set order)."""
    code = _CROSS.format(tests=str(Path(__file__).parent))
    env = {"PYTHONHASHSEED": hash_seed, "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    here = [
        seedline.fingerprint_table(small_table()).digest,
        seedline.fingerprint_estimator(fitted_scaler()),
        fingerprint_value({"s": {"x", "y", "z"}, "k": ["a", 1]}),
    ]
    assert json.loads(out.stdout) == here


def test_changing_one_cell_changes_only_that_columns_hash() -> None:
    """A diff can name the column that changed: the other columns keep their hashes."""
    before = seedline.fingerprint_table(small_table())
    changed = small_table()
    changed.loc[2, "n"] = 99
    after = seedline.fingerprint_table(changed)
    assert after.digest != before.digest
    assert before.changed_columns(after) == ["n"]
    assert {k: v for k, v in after.columns.items() if k != "n"} == {
        k: v for k, v in before.columns.items() if k != "n"
    }


def test_table_fingerprint_is_independent_of_file_format(tmp_path: Path) -> None:
    """The same table read from CSV and from Parquet has the same fingerprint."""
    df = small_table()
    df.to_csv(tmp_path / "t.csv", index=False)
    df.to_parquet(tmp_path / "t.parquet", index=False)
    from_csv = seedline.fingerprint_table(pd.read_csv(tmp_path / "t.csv"))
    from_parquet = seedline.fingerprint_table(pd.read_parquet(tmp_path / "t.parquet"))
    assert from_csv == from_parquet


def test_table_fingerprint_sees_row_order_renames_and_types() -> None:
    """Reordered rows, a renamed column or a changed type all change the digest."""
    base = seedline.fingerprint_table(small_table()).digest
    assert (
        seedline.fingerprint_table(small_table().iloc[::-1].reset_index(drop=True)).digest != base
    )
    assert seedline.fingerprint_table(small_table().rename(columns={"x": "y"})).digest != base
    assert seedline.fingerprint_table(small_table().astype({"n": "float64"})).digest != base


def test_estimator_fingerprint_reflects_fitted_state_not_object_identity() -> None:
    """Same seed -> same fingerprint; another seed or unfitted -> different; never pickle bytes."""
    X = np.random.default_rng(1).normal(size=(200, 5))
    y = (X[:, 0] > 0).astype(int)
    a = RandomForestClassifier(n_estimators=10, random_state=3).fit(X, y)
    b = RandomForestClassifier(n_estimators=10, random_state=3).fit(X, y)
    c = RandomForestClassifier(n_estimators=10, random_state=4).fit(X, y)
    unfitted = RandomForestClassifier(n_estimators=10, random_state=3)
    fa = seedline.fingerprint_estimator(a)
    assert fa.startswith("estimator:")
    assert fa == seedline.fingerprint_estimator(b)
    assert fa != seedline.fingerprint_estimator(c)
    assert fa != seedline.fingerprint_estimator(unfitted)


def test_tree_internals_are_part_of_the_fingerprint() -> None:
    """Changing one threshold inside a fitted tree (Cython state) changes the fingerprint."""
    from sklearn.tree import DecisionTreeClassifier

    X = np.random.default_rng(2).normal(size=(100, 3))
    y = (X[:, 1] > 0).astype(int)
    tree = DecisionTreeClassifier(random_state=0).fit(X, y)
    before = seedline.fingerprint_estimator(tree)
    tree.tree_.threshold[0] += 1e-9
    assert seedline.fingerprint_estimator(tree) != before


def test_arrays_and_sparse_outputs() -> None:
    """Arrays hash by dtype, shape and bytes; all NaN payloads are one NaN; sparse matrices by canonical CSR."""
    import scipy.sparse as sp

    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert fingerprint_array(a) == fingerprint_array(a.copy(order="F"))
    assert fingerprint_array(a) != fingerprint_array(a.astype(np.float32))
    assert fingerprint_array(a) != fingerprint_array(a.reshape(4, 1))
    nan1 = np.array([np.nan])
    nan2 = np.frombuffer(
        np.array([0x7FF8000000000001], dtype=np.uint64).tobytes(), dtype=np.float64
    )
    assert fingerprint_array(nan1) == fingerprint_array(nan2)
    m = sp.random(20, 10, density=0.2, random_state=0, format="csr")
    assert fingerprint_array(m) == fingerprint_array(m.tocoo())


def test_values_without_a_canonical_form_are_refused() -> None:
    """seedline says 'unhashable' instead of guessing (a lock has no canonical state)."""
    with pytest.raises(UnhashableError, match="no canonical fingerprint"):
        fingerprint_value(threading.Lock())
    with pytest.raises(UnhashableError, match="expects a scikit-learn estimator"):
        seedline.fingerprint_estimator(np.zeros(3))
    deep: list[object] = []
    node = deep
    for _ in range(100):
        nxt: list[object] = []
        node.append(nxt)
        node = nxt
    with pytest.raises(UnhashableError, match="nested deeper"):
        fingerprint_value(deep)


def test_a_tree_keeps_its_fingerprint_through_a_skops_round_trip() -> None:
    """Record padding bytes (uninitialised memory in tree node arrays) never reach the hash."""
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier

    X = np.random.default_rng(5).normal(size=(300, 6))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    blob = sio.dumps(forest)
    loaded = sio.loads(blob, trusted=sio.get_untrusted_types(data=blob))
    assert seedline.fingerprint_estimator(loaded) == seedline.fingerprint_estimator(forest)


def test_search_timings_are_not_state() -> None:
    """Two identical GridSearchCV fits fingerprint the same although their fit times differ."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV

    X, y = load_iris(return_X_y=True)
    fits = [
        GridSearchCV(LogisticRegression(max_iter=500), {"C": [0.1, 1.0]}).fit(X, y)
        for _ in range(2)
    ]
    assert seedline.fingerprint_estimator(fits[0]) == seedline.fingerprint_estimator(fits[1])


def test_unsigned_and_time_zone_aware_columns() -> None:
    """uint64 values above 2**63 stay distinct; tz-aware times hash as instants, whatever the zone."""
    big = pd.DataFrame({"u": np.array([2**63 + 1, 2], dtype=np.uint64)})
    wrapped = pd.DataFrame({"u": np.array([2**63 + 2, 2], dtype=np.uint64)})
    assert seedline.fingerprint_table(big).schema == {"u": "uint64"}
    assert seedline.fingerprint_table(big).digest != seedline.fingerprint_table(wrapped).digest
    utc = pd.DataFrame({"t": pd.date_range("2024-01-01", periods=3, tz="UTC")})
    paris = utc.assign(t=utc["t"].dt.tz_convert("Europe/Paris"))
    assert seedline.fingerprint_table(utc) == seedline.fingerprint_table(paris)
    naive = pd.DataFrame({"t": pd.date_range("2024-01-01", periods=3)})
    assert seedline.fingerprint_table(naive).digest != seedline.fingerprint_table(utc).digest


def _reference_text_digest(values: list[str | None]) -> str:
    """The documented text-column encoding, written out value by value."""
    import blake3

    na = np.array([v is None for v in values])
    encoded = [b"" if v is None else v.encode("utf-8") for v in values]
    h = blake3.blake3()
    h.update(f"column\x00string\x00{len(values)}\x00".encode())
    if na.any():
        h.update(b"mask\x00" + np.packbits(na).tobytes())
    h.update(np.array([len(b) for b in encoded], dtype=np.int64).tobytes())
    h.update(b"".join(encoded))
    return "column:" + h.hexdigest()


def test_text_columns_hash_the_same_whatever_their_storage() -> None:
    """Arrow-backed, object, categorical, sliced or chunked: the documented encoding, unchanged."""
    import pyarrow as pa

    values = ["Adelie", None, "", "héllo wörld", "日本語", "Gentoo", None, "x" * 300] * 40
    expected = _reference_text_digest(values)
    arrow = pd.Series(values, dtype="str")
    forms = {
        "arrow": arrow,
        "object": pd.Series(values, dtype=object),
        "category": pd.Series(values, dtype="category"),
        "chunked": pd.concat([arrow.iloc[:101], arrow.iloc[101:]], ignore_index=True),
        "sliced": pd.Series(["zz", *values], dtype="str").iloc[1:].reset_index(drop=True),
    }
    for name, series in forms.items():
        got = seedline.fingerprint_table(series.rename("s").to_frame()).columns["s"]
        assert got == expected, name
    # Arrow allows a null slot to span bytes; the encoding still hashes it as ""
    offsets = np.array([0, 2, 5, 6], dtype=np.int32)
    raw = pa.StringArray.from_buffers(
        3, pa.py_buffer(offsets.tobytes()), pa.py_buffer(b"abXYZc"), pa.py_buffer(b"\x05")
    )
    spanning = pd.Series(pd.arrays.ArrowStringArray(raw))
    assert spanning.isna().tolist() == [False, True, False]
    got = seedline.fingerprint_table(spanning.rename("s").to_frame()).columns["s"]
    assert got == _reference_text_digest(["ab", None, "c"])
    # values that are not text are hashed by their str(), as before
    mixed = pd.Series(["a", 1, 2.5, None], dtype=object).rename("s").to_frame()
    assert seedline.fingerprint_table(mixed).columns["s"] == _reference_text_digest(
        ["a", "1", "2.5", None]
    )


def _reference_int_digest(values: list[int | None]) -> str:
    """The documented int64 encoding, written out: the mask, then 0 where a value is missing."""
    import blake3

    na = np.array([v is None for v in values])
    h = blake3.blake3()
    h.update(f"column\x00int64\x00{len(values)}\x00".encode())
    if na.any():
        h.update(b"mask\x00" + np.packbits(na).tobytes())
    h.update(np.array([0 if v is None else v for v in values], dtype=np.int64).tobytes())
    return "column:" + h.hexdigest()


def test_a_big_table_hashes_each_column_as_the_documented_encoding() -> None:
    """Past the size where columns are hashed in parallel and categories gathered block by
    block (262,144 rows a block), every column still has its documented digest."""
    rng = np.random.default_rng(0)
    rows = 300_001
    vocab = np.array(["Adelie", "Gentoo", "héllo wörld", "", "x" * 40], dtype=object)
    values: list[str | None] = list(vocab[rng.integers(0, len(vocab), rows)])
    values[5] = values[270_000] = None
    ints: list[int | None] = rng.integers(-5, 5, rows).tolist()
    ints[7] = None
    table = pd.DataFrame(
        {
            "category": pd.Series(values, dtype="category"),
            "arrow": pd.Series(values, dtype="str"),
            "object": pd.Series(values, dtype=object),
            "nullable": pd.Series(ints, dtype="Int64"),
            "float": rng.standard_normal(rows),
        }
    )
    got = seedline.fingerprint_table(table).columns
    text = _reference_text_digest(values)
    assert got["category"] == got["arrow"] == got["object"] == text
    assert got["nullable"] == _reference_int_digest(ints)
    assert got["float"] == seedline.fingerprint_table(table[["float"]]).columns["float"]


def _coded_column(rows: int) -> tuple[np.ndarray, object, np.ndarray]:
    """``_coded_strings`` of a categorical of text: its lengths, dictionary and codes."""
    from seedline.core import fingerprint

    words = np.array(["Adelie", "", "héllo wörld", "日本語", "x" * 40], dtype=object)
    values = pd.Series(words[np.random.default_rng(0).integers(0, 5, rows)], dtype="category")
    coded = fingerprint._coded_strings(values, values.isna().to_numpy())
    assert coded is not None
    return coded


def test_helpers_gather_a_categoricals_text_ahead_of_the_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A helper claims blocks up to the window ahead of the reader and stops there; the reader
    takes the helper's blocks and gathers the rest itself: the same bytes, in the same order."""
    from seedline.core import fingerprint

    monkeypatch.setattr(fingerprint, "_LENGTHS_BLOCK", 100)
    lengths, dictionary, codes = _coded_column(1_050)  # 11 blocks
    alone = fingerprint._CodedText()
    alone.start(dictionary, codes, lengths)
    expected = [bytes(b) for b in alone.blocks()]
    assert len(expected) == 11 and alone.by_helpers == 0
    assert b"".join(expected).decode() == "".join(dictionary.take(codes).to_pylist())

    shared = fingerprint._CodedText(window=3)
    helper = threading.Thread(target=shared.help)
    helper.start()
    shared.start(dictionary, codes, lengths)
    for _ in range(500):  # the helper fills the window, then waits for the reader
        if shared.by_helpers == 3:
            break
        threading.Event().wait(0.01)
    threading.Event().wait(0.2)  # and claims nothing more until the reader moves on
    assert shared.by_helpers == 3
    got = [bytes(b) for b in shared.blocks()]
    shared.close()
    helper.join(timeout=10)
    assert not helper.is_alive()
    assert got == expected
    assert shared.by_helpers >= 3


def test_a_helper_goes_home_when_the_column_is_not_coded_text_or_fails() -> None:
    """A helper waiting for a column that is not coded text after all leaves at once; a
    block a helper failed to gather raises in the reader."""
    from seedline.core import fingerprint

    waiting = fingerprint._CodedText(window=2)
    helper = threading.Thread(target=waiting.help)
    helper.start()
    odd = pd.Series(["a", 1, 2.5, None], dtype="category")  # categories Arrow cannot read
    assert fingerprint._coded_strings(odd, odd.isna().to_numpy()) is None
    fingerprint._column_digest(odd, "string", 1, waiting)
    helper.join(timeout=10)  # sent home as soon as the column is known not to be coded text
    assert not helper.is_alive()

    lengths, dictionary, codes = _coded_column(10)
    broken = fingerprint._CodedText(window=2)
    past_the_end = codes.astype(np.int64) + 1_000  # codes past the dictionary's end
    broken.start(dictionary, past_the_end, lengths)
    broken.help()  # claims the only block, and keeps Arrow's error for the reader
    with pytest.raises(IndexError):
        list(broken.blocks())


def test_a_table_pool_with_helpers_hashes_every_categorical_as_documented(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three workers, so two helpers per categorical of text: a coded column, a categorical
    whose categories Arrow cannot read as text (its helpers go home), and a plain column."""
    from seedline.core import fingerprint

    monkeypatch.setattr(fingerprint, "_LENGTHS_BLOCK", 1_000)
    monkeypatch.setattr(fingerprint, "_TABLE_PARALLEL_MIN", 0)
    monkeypatch.setattr(fingerprint, "_cpus", lambda: 3)
    rng = np.random.default_rng(1)
    words = np.array(["Adelie", "Gentoo", "héllo", "", "x" * 30], dtype=object)
    values: list[str | None] = list(words[rng.integers(0, 5, 25_000)])
    values[3] = values[20_000] = None
    odd = pd.Series(["a", 1, 2.5, None] * 2_000, dtype="category")  # not all text
    table = pd.DataFrame(
        {
            "coded": pd.Series(values, dtype="category"),
            "odd": pd.concat([odd, odd.iloc[:17_000]], ignore_index=True),
            "arrow": pd.Series(values, dtype="str"),
        }
    )
    result: list[Any] = []  # in a thread: a helper that never went home fails, not hangs
    worker = threading.Thread(target=lambda: result.append(seedline.fingerprint_table(table)))
    worker.start()
    worker.join(timeout=120)
    assert result, "fingerprint_table did not finish"
    got = result[0].columns
    assert got["coded"] == got["arrow"] == _reference_text_digest(values)
    assert got["odd"] == _reference_text_digest(
        [None if v is None or v != v else str(v) for v in table["odd"].astype(object)]
    )


def test_long_object_arrays_of_text_hash_as_item_by_item(monkeypatch: pytest.MonkeyPatch) -> None:
    """Predictions and labels (object arrays of str) are encoded in bulk, with the same bytes as
    the item-by-item encoding; arrays holding anything else keep the item-by-item path."""
    from seedline.core import fingerprint

    rng = np.random.default_rng(0)
    words = np.array(["Adelie", "", "héllo wörld", "日本語", "x" * 5000], dtype=object)
    arrays = {
        "labels": words[rng.integers(0, len(words) - 1, 270_000)],  # past one block of items
        "matrix": words[rng.integers(0, len(words), (300, 4))],
        "mixed": np.array(["a", 1, None, 2.5] * 100, dtype=object),
    }
    bulk = {name: fingerprint_array(a) for name, a in arrays.items()}
    monkeypatch.setattr(fingerprint, "_VECTOR_MIN", 1 << 62)  # every item through _encode
    assert bulk == {name: fingerprint_array(a) for name, a in arrays.items()}


def test_a_wide_table_hashed_a_few_columns_a_task_matches_one_column_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Small columns reach the table's pool a few at a time: every column's digest, and the
    table's (which follows the columns' order), are those of hashing one column at a time."""
    from seedline.core import fingerprint

    rng = np.random.default_rng(3)
    wide = pd.DataFrame(rng.normal(size=(3_000, 400)), columns=[f"c{i}" for i in range(400)])
    wide["ints"] = rng.integers(0, 9, 3_000)
    wide["text"] = pd.Series(rng.choice(["a", "bb", None], 3_000), dtype="str")
    wide.insert(0, "first", wide.pop("c399") * 2)  # not in name order
    monkeypatch.setattr(fingerprint, "_TABLE_PARALLEL_MIN", 0)
    monkeypatch.setattr(fingerprint, "_TASK_MIN", 100_000)  # about four columns a task
    monkeypatch.setattr(fingerprint, "_cpus", lambda: 2)
    pooled = seedline.fingerprint_table(wide)
    monkeypatch.setattr(fingerprint, "_cpus", lambda: 1)
    alone = seedline.fingerprint_table(wide)
    assert pooled == alone
    assert list(pooled.columns) == [str(c) for c in wide.columns]
