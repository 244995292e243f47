"""Fingerprints: BLAKE3 content hashes with a type prefix (``kind:hex``).

- files: their bytes, memory-mapped and hashed on all cores;
- tables: the schema plus one hash per column, independent of the file format, so a
  diff can name the column that changed;
- fitted estimators: their canonical fitted state (class, params and fitted
  attributes), never pickle bytes;
- arrays and predictions.

The encoding below is part of seedline's stable contract: changing it changes every
stored fingerprint, so tests pin expected hashes. Bump ``ENCODING_VERSION`` if it must change.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import singledispatch
from pathlib import Path
from typing import Any

import blake3
import numpy as np

from seedline.core.errors import UnhashableError

ENCODING_VERSION = 1
MAX_DEPTH = 64
# below this many bytes a single thread is faster than waking a pool
_PARALLEL_MIN = 1 << 20


def _hex(h: Any) -> str:
    return str(h.hexdigest())


def _new_hasher(size_hint: int = 0) -> Any:
    if size_hint >= _PARALLEL_MIN:
        return blake3.blake3(max_threads=blake3.blake3.AUTO)
    return blake3.blake3()


def _byte_view(arr: np.ndarray) -> memoryview:
    """The array's bytes in C order, without a copy when it is already contiguous."""
    flat = np.ascontiguousarray(arr).reshape(-1)
    return memoryview(flat.view(np.uint8)) if flat.size else memoryview(b"")


def fingerprint_bytes(data: bytes | bytearray | memoryview, kind: str = "bytes") -> str:
    """Fingerprint a byte buffer."""
    h = _new_hasher(len(data))
    h.update(data)
    return f"{kind}:{_hex(h)}"


def fingerprint_file(path: str | Path) -> str:
    """Fingerprint a file's bytes (memory-mapped, hashed with all cores)."""
    p = Path(path)
    size = p.stat().st_size
    h = _new_hasher(size)
    if size:
        h.update_mmap(str(p))
    return f"file:{_hex(h)}"


# -- tables -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TableFingerprint:
    """A table's fingerprint: one digest for the whole, one per column, and the schema."""

    digest: str
    columns: dict[str, str] = field(default_factory=dict)
    schema: dict[str, str] = field(default_factory=dict)
    rows: int = 0

    def __str__(self) -> str:
        return self.digest

    def to_dict(self) -> dict[str, Any]:
        return {"digest": self.digest, "rows": self.rows, "schema": dict(self.schema), "columns": dict(self.columns)}

    def changed_columns(self, other: TableFingerprint) -> list[str]:
        """Columns whose values or type differ, plus columns only one side has."""
        names = list(self.columns) + [c for c in other.columns if c not in self.columns]
        return [c for c in names if self.columns.get(c) != other.columns.get(c)]


def logical_type(series: Any) -> str:
    """The format-independent type name used in table fingerprints."""
    import pandas as pd
    from pandas.api import types as pt

    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "string" if pt.is_string_dtype(dtype.categories.dtype) or dtype.categories.dtype == object else f"category[{dtype.categories.dtype}]"
    if pt.is_bool_dtype(dtype):
        return "bool"
    if pt.is_integer_dtype(dtype):
        return "int64"
    if pt.is_float_dtype(dtype):
        return "float64"
    if pt.is_datetime64_any_dtype(dtype):
        return "datetime[ns]"
    if pt.is_string_dtype(dtype) or dtype == object:
        return "string"
    return str(dtype)


def _column_digest(series: Any, ltype: str) -> str:
    import pandas as pd

    na = series.isna().to_numpy()
    h = _new_hasher(series.size * 8)
    h.update(f"column\x00{ltype}\x00{series.size}\x00".encode())
    if na.any():
        h.update(b"mask\x00")
        h.update(np.packbits(na).tobytes())
    if ltype in ("int64", "float64", "bool"):
        dtype = {"int64": np.int64, "float64": np.float64, "bool": np.uint8}[ltype]
        if na.any() and ltype != "float64":
            values = series.astype(object).where(~na, 0).to_numpy(dtype=dtype)
        else:
            values = series.to_numpy(dtype=dtype, na_value=np.nan) if ltype == "float64" else series.to_numpy(dtype=dtype)
        if ltype == "float64" and na.any():
            values = np.where(na, np.nan, values)  # one NaN bit pattern
        h.update(_byte_view(values))
    elif ltype == "datetime[ns]":
        values = pd.to_datetime(series).astype("datetime64[ns]").to_numpy().view(np.int64)
        h.update(_byte_view(values))
    else:
        texts = ["" if m else str(v) for v, m in zip(series.tolist(), na, strict=True)]
        encoded = [t.encode("utf-8") for t in texts]
        h.update(np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded)).tobytes())
        h.update(b"".join(encoded))
    return f"column:{_hex(h)}"


def fingerprint_table(df: Any) -> TableFingerprint:
    """Fingerprint a pandas DataFrame: schema + one hash per column, independent of file format."""
    import pandas as pd

    if isinstance(df, pd.Series):
        df = df.to_frame()
    if not isinstance(df, pd.DataFrame):
        raise UnhashableError(f"fingerprint_table expects a pandas DataFrame, got {type(df).__name__}")
    if not df.columns.is_unique:
        dup = df.columns[df.columns.duplicated()].tolist()
        raise UnhashableError(f"table has duplicate column names {dup}; rename them so each column can be fingerprinted")
    schema: dict[str, str] = {}
    columns: dict[str, str] = {}
    for name in df.columns:
        s = df[name]
        lt = logical_type(s)
        schema[str(name)] = lt
        columns[str(name)] = _column_digest(s, lt)
    h = blake3.blake3()
    h.update(f"table\x00v{ENCODING_VERSION}\x00{len(df)}\x00".encode())
    for name, digest in columns.items():
        h.update(f"{name}\x00{schema[name]}\x00{digest}\x00".encode())
    return TableFingerprint(digest=f"table:{_hex(h)}", columns=columns, schema=schema, rows=len(df))


# -- canonical state of arbitrary Python / numpy / scikit-learn objects ------------------------
class _Feed:
    """Writes a tagged, length-prefixed encoding into a hasher."""

    def __init__(self, hasher: Any) -> None:
        self.h = hasher
        self.depth = 0

    def tag(self, t: bytes) -> None:
        self.h.update(t)

    def raw(self, b: bytes | memoryview) -> None:
        self.h.update(struct.pack("<Q", len(b)))
        self.h.update(b)

    def text(self, s: str) -> None:
        self.raw(s.encode("utf-8"))


# timing figures some estimators keep: not state, and never reproducible
_VOLATILE_KEYS = frozenset({"refit_time_", "fit_time_", "score_time_"})


def _qualname(obj: Any) -> str:
    t = obj if isinstance(obj, type) else type(obj)
    return f"{t.__module__}.{t.__qualname__}"


@singledispatch
def _encode(obj: Any, f: _Feed) -> None:
    if _is_estimator(obj):
        _encode_estimator(obj, f)
        return
    if callable(obj) and hasattr(obj, "__qualname__") and not hasattr(obj, "__self__"):
        f.tag(b"F")
        f.text(f"{getattr(obj, '__module__', '')}.{obj.__qualname__}")
        return
    if hasattr(obj, "__dict__"):
        f.tag(b"O")
        f.text(_qualname(obj))
        _encode_value({k: v for k, v in vars(obj).items() if not k.startswith("__")}, f)
        return
    # extension types (e.g. scikit-learn's Cython Tree) describe themselves through the pickle
    # protocol: we hash the constructor name, its arguments and the state, never pickle bytes
    try:
        reduced = obj.__reduce_ex__(4)
    except Exception:
        reduced = None
    if isinstance(reduced, tuple) and len(reduced) >= 2:
        f.tag(b"S")
        f.text(_qualname(obj))
        _encode_value(reduced[1], f)
        _encode_value(reduced[2] if len(reduced) > 2 else None, f)
        return
    raise UnhashableError(
        f"no canonical fingerprint for a value of type {_qualname(obj)}",
        hint="seedline fingerprints numbers, strings, arrays, tables, containers and scikit-learn estimators; convert other values first",
    )


def _encode_value(obj: Any, f: _Feed) -> None:
    f.depth += 1
    if f.depth > MAX_DEPTH:
        raise UnhashableError(f"value is nested deeper than {MAX_DEPTH} levels (a cycle?)")
    try:
        _encode(obj, f)
    finally:
        f.depth -= 1


@_encode.register(type(None))
def _(obj: None, f: _Feed) -> None:
    f.tag(b"N")


@_encode.register(bool)
def _(obj: bool, f: _Feed) -> None:
    f.tag(b"T" if obj else b"0")


@_encode.register(int)
def _(obj: int, f: _Feed) -> None:
    f.tag(b"I")
    f.text(str(obj))


@_encode.register(float)
def _(obj: float, f: _Feed) -> None:
    f.tag(b"D")
    f.raw(struct.pack("<d", math.nan if math.isnan(obj) else obj))


@_encode.register(complex)
def _(obj: complex, f: _Feed) -> None:
    f.tag(b"C")
    f.raw(struct.pack("<dd", obj.real, obj.imag))


@_encode.register(str)
def _(obj: str, f: _Feed) -> None:
    f.tag(b"U")
    f.text(obj)


@_encode.register(bytes)
@_encode.register(bytearray)
def _(obj: bytes, f: _Feed) -> None:
    f.tag(b"B")
    f.raw(bytes(obj))


@_encode.register(list)
@_encode.register(tuple)
def _(obj: list[Any] | tuple[Any, ...], f: _Feed) -> None:
    f.tag(b"L" if isinstance(obj, list) else b"P")
    f.raw(struct.pack("<Q", len(obj)))
    for item in obj:
        _encode_value(item, f)


def _sub_digest(obj: Any) -> bytes:
    h = blake3.blake3()
    sub = _Feed(h)
    _encode_value(obj, sub)
    return bytes(h.digest())


@_encode.register(dict)
def _(obj: Mapping[Any, Any], f: _Feed) -> None:
    f.tag(b"M")
    items = sorted((_sub_digest(k), k, v) for k, v in [(k, v) for k, v in obj.items()] if k not in _VOLATILE_KEYS)
    f.raw(struct.pack("<Q", len(items)))
    for kd, _k, v in items:
        f.raw(kd)
        _encode_value(v, f)


@_encode.register(set)
@_encode.register(frozenset)
def _(obj: set[Any] | frozenset[Any], f: _Feed) -> None:
    f.tag(b"Z")
    digests = sorted(_sub_digest(x) for x in obj)
    f.raw(struct.pack("<Q", len(digests)))
    for d in digests:
        f.raw(d)


@_encode.register(np.generic)
def _(obj: np.generic, f: _Feed) -> None:
    _encode_array(np.asarray(obj), f)


@_encode.register(np.ndarray)
def _(obj: np.ndarray, f: _Feed) -> None:
    _encode_array(obj, f)


@_encode.register(np.dtype)
def _(obj: np.dtype, f: _Feed) -> None:  # type: ignore[type-arg]
    f.tag(b"Y")
    f.text(obj.str if obj.fields is None else repr(obj.descr))


@_encode.register(type)
def _(obj: type, f: _Feed) -> None:
    f.tag(b"K")
    f.text(_qualname(obj))


@_encode.register(np.random.RandomState)
def _(obj: np.random.RandomState, f: _Feed) -> None:
    f.tag(b"R")
    _encode_value(obj.get_state(legacy=False), f)


@_encode.register(np.random.Generator)
def _(obj: np.random.Generator, f: _Feed) -> None:
    f.tag(b"G")
    _encode_value(obj.bit_generator.state, f)


def _encode_array(arr: np.ndarray, f: _Feed) -> None:
    f.tag(b"A")
    f.text(arr.dtype.str if arr.dtype.fields is None else repr(arr.dtype.descr))
    f.raw(struct.pack(f"<{arr.ndim + 1}Q", arr.ndim, *arr.shape))
    if arr.dtype.hasobject:
        for item in arr.ravel(order="C").tolist():
            _encode_value(item, f)
        return
    if arr.dtype.kind in "fc":
        nan = np.isnan(arr)
        if nan.any():
            arr = np.where(nan, np.array(np.nan, dtype=arr.dtype), arr)
    f.raw(_byte_view(arr))


def _is_estimator(obj: Any) -> bool:
    return hasattr(obj, "get_params") and hasattr(obj, "fit") and not isinstance(obj, type)


def _encode_estimator(est: Any, f: _Feed) -> None:
    f.tag(b"E")
    f.text(_qualname(est))
    params = est.get_params(deep=False)
    _encode_value(dict(params), f)
    fitted = {
        k: v
        for k, v in vars(est).items()
        if k not in params and not k.startswith("__") and k not in _VOLATILE_KEYS
    }
    _encode_value(fitted, f)


def _register_pandas() -> None:
    import pandas as pd

    @_encode.register(pd.DataFrame)
    @_encode.register(pd.Series)
    def _(obj: Any, f: _Feed) -> None:
        f.tag(b"T")
        tf = fingerprint_table(obj)
        f.text(tf.digest)
        names = obj.columns if isinstance(obj, pd.DataFrame) else [obj.name]
        _encode_value([str(n) for n in names], f)

    @_encode.register(pd.Index)
    def _(obj: Any, f: _Feed) -> None:
        f.tag(b"X")
        _encode_value(np.asarray(obj.to_numpy()), f)


_register_pandas()


def fingerprint_value(obj: Any, kind: str = "value") -> str:
    """Fingerprint any supported value by its canonical encoding."""
    h = blake3.blake3()
    f = _Feed(h)
    f.text(f"seedline-v{ENCODING_VERSION}")
    _encode_value(obj, f)
    return f"{kind}:{_hex(h)}"


def fingerprint_estimator(est: Any) -> str:
    """Fingerprint a (fitted or unfitted) estimator by its canonical state, never its pickle bytes."""
    if not _is_estimator(est):
        raise UnhashableError(f"fingerprint_estimator expects a scikit-learn estimator, got {_qualname(est)}")
    return fingerprint_value(est, kind="estimator")


def fingerprint_array(arr: Any, kind: str = "array") -> str:
    """Fingerprint an array-like output (dense or scipy sparse, or a DataFrame)."""
    if hasattr(arr, "tocsr") and hasattr(arr, "nnz"):
        csr = arr.tocsr()
        csr.sort_indices()
        return fingerprint_value(("sparse", csr.shape, csr.data, csr.indices, csr.indptr), kind=kind)
    if hasattr(arr, "to_numpy") and hasattr(arr, "columns"):
        return fingerprint_value(arr, kind=kind)
    return fingerprint_value(np.asarray(arr), kind=kind)
