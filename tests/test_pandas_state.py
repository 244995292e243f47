"""Fitted states that hold pandas objects (category_encoders) save, load and fingerprint exactly."""

from __future__ import annotations

import io
import re
import zipfile

import numpy as np
import pandas as pd
import pytest

from seedline.core.fingerprint import fingerprint_value
from seedline.execution.persist import ModelLoadError, dump_model, load_model, untrusted_types

ce = pytest.importorskip("category_encoders")

PENGUINS = pd.DataFrame(
    {
        "island": ["Torgersen", "Biscoe", "Dream", None, "Biscoe", "Dream", "Biscoe", "Dream"],
        "sex": ["male", "female", None, "male", "female", "male", "female", "male"],
        "bill": [39.1, 39.5, 40.3, np.nan, 36.7, 39.3, 38.9, 39.2],
    }
)
TARGET = pd.Series([1, 0, 1, 0, 1, 0, 0, 1])


@pytest.mark.parametrize(
    "encoder",
    [
        "OrdinalEncoder",
        "OneHotEncoder",
        "TargetEncoder",
        "CatBoostEncoder",
        "BinaryEncoder",
        "CountEncoder",
    ],
)
def test_an_encoder_holding_pandas_objects_round_trips_exactly(encoder: str) -> None:
    fitted = getattr(ce, encoder)().fit(PENGUINS, TARGET)
    before = fingerprint_value(fitted)
    fitted.transform(PENGUINS)  # pandas fills lazy caches on use: the fingerprint must not see them
    assert fingerprint_value(fitted) == before
    data = dump_model(fitted)
    # the encoder is a foreign type; the pandas objects and dtypes inside it are not
    foreign = untrusted_types(data)
    assert foreign and all(t.startswith("category_encoders.") for t in foreign), foreign
    loaded = load_model(data, trusted=foreign)
    assert fingerprint_value(loaded) == before
    pd.testing.assert_frame_equal(loaded.transform(PENGUINS), fitted.transform(PENGUINS))


def test_tables_columns_and_indexes_keep_labels_dtypes_and_index() -> None:
    frame = pd.DataFrame(
        {0: [1.5, np.nan], "b": pd.Categorical(["x", "y"]), ("t", 1): pd.array([1, None], "Int64")},
        index=pd.Index(["r1", "r2"], name="row"),
    )
    series = pd.Series([3, 1], index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)]), name=7)
    state = {"frame": frame, "series": series, "index": pd.RangeIndex(2, 10, 2), "again": series}
    back = load_model(dump_model(state), trust=True)
    pd.testing.assert_frame_equal(back["frame"], frame)
    pd.testing.assert_series_equal(back["series"], series)
    pd.testing.assert_index_equal(back["index"], pd.RangeIndex(2, 10, 2), exact=True)
    assert fingerprint_value(back) == fingerprint_value(state)


def test_a_mapping_is_fingerprinted_with_its_categories() -> None:
    """Two category -> code mappings with the same codes in another order are different states."""
    one = pd.Series([1, 2], index=["Biscoe", "Dream"])
    other = pd.Series([1, 2], index=["Dream", "Biscoe"])
    assert fingerprint_value(one) != fingerprint_value(other)


def test_a_column_arrow_cannot_hold_is_refused_with_its_reason() -> None:
    mixed = pd.Series([1, "a", 2.5], dtype=object)
    with pytest.raises(Exception, match=r"cannot be saved without pickle.*convert the column"):
        dump_model({"mapping": mixed})


def test_a_table_entry_that_is_not_the_declared_type_is_refused() -> None:
    data = dump_model({"mapping": pd.Series([1, 2], index=["a", "b"])})
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    schema = entries["schema.json"].decode()
    crafted_schema = re.sub(r'"__class__":\s*"Series"', '"__class__":"DataFrame"', schema)
    assert crafted_schema != schema
    entries["schema.json"] = crafted_schema.encode()
    crafted = io.BytesIO()
    with zipfile.ZipFile(crafted, "w") as zf:
        for name, content in entries.items():
            zf.writestr(name, content)
    with pytest.raises(ModelLoadError, match="holds a Series"):
        load_model(crafted.getvalue(), trust=True)


def test_pandas_objects_save_when_skops_was_imported_before_seedline() -> None:
    """A process that imported skops itself first still saves pandas objects through seedline."""
    import subprocess
    import sys

    code = (
        "import skops.io, pandas as pd\n"
        "from seedline.execution.persist import dump_model, load_model\n"
        "s = pd.Series([1, 2], index=['a', 'b'])\n"
        "print(load_model(dump_model({'m': s}), trust=True)['m'].to_dict())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "{'a': 1, 'b': 2}"
