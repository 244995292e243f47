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
import os
import struct
import sys
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache, singledispatch
from pathlib import Path
from typing import Any

import blake3
import numpy as np

from seedline.core.errors import UnhashableError

ENCODING_VERSION = 1
MAX_DEPTH = 64
# below this many bytes a single thread is faster than waking a pool
_PARALLEL_MIN = 1 << 20
# plain numeric columns are NaN-checked and hashed a block at a time, so that the hash reads
# each block from cache right after the check has pulled it in
_BLOCK = 1 << 20
# a table with at least this many bytes in plain numeric columns hashes them a column per core
_TABLE_PARALLEL_MIN = 8 << 20
# smaller columns go to the table's pool a few at a time, at least this many bytes a task: a
# task of a few kilobytes costs more in hand-offs between threads than it saves
_TASK_MIN = 4 << 20
# string lengths are computed and hashed this many at a time (2 MiB of int64)
_LENGTHS_BLOCK = 1 << 18
# object arrays of at least this many strings are encoded by Arrow rather than item by item
_VECTOR_MIN = 256
# Arrow string arrays with 32-bit offsets hold fewer bytes than this
_INT32_OFFSETS = (1 << 31) - 1
# the most gathered text of a categorical that helpers keep ahead of its reader
_TEXT_AHEAD = 64 << 20
# length-prefixed values up to this many bytes reach the hasher in one update call
_SMALL = 4096


def _hex(h: Any) -> str:
    return str(h.hexdigest())


def _new_hasher(size_hint: int = 0) -> Any:
    if size_hint >= _PARALLEL_MIN:
        return blake3.blake3(max_threads=blake3.blake3.AUTO)
    return blake3.blake3()


def _byte_view(arr: np.ndarray) -> memoryview:
    """The array's bytes in C order, without a copy when it is already contiguous."""
    flat = np.ascontiguousarray(arr).reshape(-1)
    return flat.view(np.uint8).data if flat.size else memoryview(b"")


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


def file_hasher() -> Any:
    """A hasher whose ``hexdigest()``, after every byte of a file went through ``update``,
    is the hex part of that file's :func:`fingerprint_file` (for bytes read from a stream)."""
    return blake3.blake3()


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
        return {
            "digest": self.digest,
            "rows": self.rows,
            "schema": dict(self.schema),
            "columns": dict(self.columns),
        }

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
        cats = dtype.categories.dtype
        return (
            "string"
            if pt.is_string_dtype(cats) or pt.is_object_dtype(cats)
            else f"category[{cats}]"
        )
    if pt.is_bool_dtype(dtype):
        return "bool"
    if pt.is_unsigned_integer_dtype(dtype):
        return "uint64"  # values above 2**63 must not wrap
    if pt.is_integer_dtype(dtype):
        return "int64"
    if pt.is_float_dtype(dtype):
        return "float64"
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "datetime[ns, UTC]"  # instants: the same moment in any zone hashes the same
    if pt.is_datetime64_any_dtype(dtype):
        return "datetime[ns]"
    if pt.is_string_dtype(dtype) or pt.is_object_dtype(dtype):
        return "string"
    return str(dtype)


def _column_digest(
    series: Any, ltype: str, threads: int = blake3.blake3.AUTO, text: _CodedText | None = None
) -> str:
    """A column's digest: its header, the missing-value mask, then its values' bytes.

    ``threads`` is BLAKE3's thread count for big updates (1 inside a table's thread pool,
    whose workers already keep every core busy). ``text``: where a categorical of text
    gathers its values (shared with the pool's other workers; see ``_CodedText``).
    """
    import pandas as pd

    na = series.isna().to_numpy()
    multi = threads != 1 and series.size * 8 >= _PARALLEL_MIN
    h = blake3.blake3(max_threads=threads) if multi else blake3.blake3()
    h.update(f"column\x00{ltype}\x00{series.size}\x00".encode())
    if na.any():
        h.update(b"mask\x00")
        h.update(np.packbits(na).tobytes())
    if ltype in ("int64", "uint64", "float64", "bool"):
        dtype = {"int64": np.int64, "uint64": np.uint64, "float64": np.float64, "bool": np.uint8}[
            ltype
        ]
        if na.any() and ltype != "float64":
            values = _filled(series, dtype, na, ltype == "bool")
        else:
            values = (
                series.to_numpy(dtype=dtype, na_value=np.nan)
                if ltype == "float64"
                else series.to_numpy(dtype=dtype)
            )
        if ltype == "float64" and na.any():
            values = np.where(na, np.nan, values)  # one NaN bit pattern
        h.update(_byte_view(values))
    elif ltype.startswith("datetime"):
        stamps = pd.to_datetime(series)
        if ltype.endswith("UTC]"):
            stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
        values = stamps.astype("datetime64[ns]").to_numpy().view(np.int64)
        h.update(_byte_view(values))
    elif (coded := _coded_strings(series, na)) is not None:
        _hash_coded_strings(h, *coded, text=text)
    else:
        if text is not None:
            text.close()  # not coded text after all: its helpers go home now, not at the end
        if (chunks := _arrow_strings(series, int(na.sum()))) is not None:
            # the same bytes as below, read from the Arrow buffers: all lengths, then all text
            lengths = np.empty(_LENGTHS_BLOCK, dtype=np.int64)
            for offsets, _chars in chunks:
                # block by block, so that the lengths are hashed while still in cache
                for i in range(0, len(offsets) - 1, _LENGTHS_BLOCK):
                    j = min(i + _LENGTHS_BLOCK, len(offsets) - 1)
                    np.subtract(offsets[i + 1 : j + 1], offsets[i:j], out=lengths[: j - i])
                    h.update(lengths[: j - i].view(np.uint8).data)
            for _offsets, chars in chunks:
                h.update(chars)
        else:
            texts = ["" if m else str(v) for v, m in zip(series.tolist(), na, strict=True)]
            encoded = [t.encode("utf-8") for t in texts]
            h.update(
                np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded)).tobytes()
            )
            h.update(b"".join(encoded))
    return f"column:{_hex(h)}"


def _filled(series: Any, dtype: type, na: np.ndarray, boolean: bool) -> np.ndarray:
    """A nullable column's values with 0 (False) where missing, without a Python object per value."""
    try:
        values: np.ndarray = series.to_numpy(dtype=dtype, na_value=False if boolean else 0)
        return values
    except (TypeError, ValueError, OverflowError):  # an extension type that cannot fill so
        return np.asarray(series.astype(object).where(~na, 0).to_numpy(dtype=dtype))


def _offset_type(arrow_type: Any) -> type:
    """The NumPy type of an Arrow string array's offsets: 64-bit for ``large_string``."""
    import pyarrow as pa

    return np.int64 if pa.types.is_large_string(arrow_type) else np.int32


def _text_chunk(chunk: Any, offset_type: type) -> tuple[np.ndarray, memoryview]:
    """One Arrow string array without nulls: its n + 1 offsets and its values' bytes."""
    _validity, offsets_buf, data_buf = chunk.buffers()
    n = len(chunk)
    offsets: np.ndarray = np.frombuffer(offsets_buf, dtype=offset_type)[
        chunk.offset : chunk.offset + n + 1
    ]
    start, end = (int(offsets[0]), int(offsets[-1])) if n else (0, 0)
    text = memoryview(data_buf)[start:end] if data_buf is not None else memoryview(b"")
    return offsets, text


def _coded_strings(series: Any, na: np.ndarray) -> tuple[np.ndarray, Any, np.ndarray] | None:
    """A categorical of text as its codes and categories: the lengths of the categories
    (int64), the categories as one Arrow string array, and the codes (a missing value points
    at an empty category added at the end); None for any other column.

    Its values are hashed without a Python object per row, and the categories' bytes are
    gathered per block of rows (``_hash_coded_strings``) rather than all at once.
    """
    import pandas as pd

    if not isinstance(series.dtype, pd.CategoricalDtype):
        return None
    try:
        import pyarrow as pa
    except ImportError:  # pragma: no cover - pyarrow is a dependency of pandas' str dtype
        return None
    categories = series.cat.categories
    try:
        if isinstance(categories.dtype, np.dtype):  # object: Python strings, converted in C++
            dictionary = pa.array(categories.to_numpy(), from_pandas=True)
        else:
            dictionary = pa.array(categories.array, from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError, UnicodeError):
        return None
    if isinstance(dictionary, pa.ChunkedArray):
        dictionary = dictionary.combine_chunks()
    if not (pa.types.is_string(dictionary.type) or pa.types.is_large_string(dictionary.type)):
        return None  # numbers or bytes as categories: their str() is what gets hashed
    if dictionary.null_count:
        return None
    if pa.types.is_large_string(dictionary.type) and dictionary.nbytes < _INT32_OFFSETS:
        dictionary = dictionary.cast(pa.string())  # Arrow gathers 32-bit offsets faster
    # a missing value is "" in the encoding: code -1 becomes the index of an added ""
    dictionary = pa.concat_arrays([dictionary, pa.array([""], type=dictionary.type)])
    offset_type = _offset_type(dictionary.type)
    offsets, _text = _text_chunk(dictionary, offset_type)
    lengths = np.diff(offsets).astype(np.int64)
    codes = series.cat.codes.to_numpy()
    if na.any():
        codes = np.where(na, len(dictionary) - 1, codes)
    return lengths, dictionary, codes


def _hash_coded_strings(
    h: Any,
    lengths: np.ndarray,
    dictionary: Any,
    codes: np.ndarray,
    *,
    text: _CodedText | None = None,
) -> None:
    """Feed ``h`` the text encoding of a coded column: every value's length, then the text.

    The values' bytes come a block of rows at a time from ``text`` (gathered by Arrow in
    C++, by this thread or by helpers on other cores), never the whole column's text at once.
    """
    block = np.empty(_LENGTHS_BLOCK, dtype=np.int64)
    text = text if text is not None else _CodedText()
    text.start(dictionary, codes, lengths)
    for i in range(0, len(codes), _LENGTHS_BLOCK):
        part = codes[i : i + _LENGTHS_BLOCK]
        np.take(lengths, part, out=block[: len(part)])
        h.update(block[: len(part)].view(np.uint8).data)
    for gathered in text.blocks():
        h.update(gathered)


class _CodedText:
    """The values' bytes of a categorical of text, block by block, gathered by whoever is free.

    Gathering (Arrow's ``take``, about 9 ns a row) is most of the cost of such a column,
    and a table's pool would otherwise leave it to one core while the others finish the
    rest. The thread hashing the column reads the blocks in order (``blocks``) and gathers
    every block no helper has claimed; helpers (``help``, queued behind every column of the
    table, so that a worker helps once it has no column left) claim the next blocks, at most
    ``window`` blocks (and about ``_TEXT_AHEAD`` bytes) ahead of the reader. The bytes, and
    their order, are the same whoever gathers them. ``close`` (the reader is done or failed,
    or the column is not coded text after all) sends every helper home.
    """

    def __init__(self, window: int = 0) -> None:
        self.window = window
        self.by_helpers = 0  # blocks gathered by helpers (for tests)
        self._cond = threading.Condition()
        self._spans: list[tuple[int, int]] | None = None
        self._closed = False
        self._claimed = 0  # blocks are claimed in order: 0 .. _claimed - 1 are taken
        self._read = 0  # blocks handed to the reader
        self._ready: dict[int, memoryview | BaseException] = {}
        self._dictionary: Any = None
        self._codes: np.ndarray | None = None
        self._offset_type: type = np.int32

    def start(self, dictionary: Any, codes: np.ndarray, lengths: np.ndarray) -> None:
        offset_type = _offset_type(dictionary.type)
        rows = _LENGTHS_BLOCK
        if offset_type is np.int32:  # a block's text must fit 32-bit offsets
            rows = max(1, min(rows, _INT32_OFFSETS // max(int(lengths.max(initial=0)), 1)))
        # at most _TEXT_AHEAD bytes of gathered text wait for the reader (a block of long
        # values can be hundreds of megabytes), estimated from the first rows' lengths
        sample = np.take(lengths, codes[:_LENGTHS_BLOCK], mode="clip")
        block_bytes = rows * float(sample.mean()) if len(sample) else 0.0
        with self._cond:
            self._dictionary, self._codes, self._offset_type = dictionary, codes, offset_type
            self._spans = [(i, min(i + rows, len(codes))) for i in range(0, len(codes), rows)]
            if block_bytes > 0:
                self.window = min(self.window, max(1, int(_TEXT_AHEAD // block_bytes)))
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._ready.clear()
            self._cond.notify_all()

    def _gather(self, i: int) -> memoryview:
        import pyarrow as pa

        assert self._spans is not None and self._codes is not None
        start, end = self._spans[i]
        gathered = self._dictionary.take(pa.array(self._codes[start:end]))
        return _text_chunk(gathered, self._offset_type)[1]

    def _claimable(self) -> bool:
        """Under the lock: a helper may claim the next block now."""
        return (
            self._spans is not None
            and self._claimed < len(self._spans)
            and self._claimed - self._read < self.window
        )

    def help(self) -> None:
        """Gather blocks ahead of the reader until all are claimed or the reader is done."""
        while True:
            with self._cond:
                while not self._closed and not self._claimable():
                    if self._spans is not None and self._claimed >= len(self._spans):
                        return  # every block is claimed
                    self._cond.wait()
                if self._closed:
                    return
                i = self._claimed
                self._claimed += 1
            part: memoryview | BaseException
            try:
                part = self._gather(i)
            except BaseException as exc:  # the reader raises it when it reaches block i
                part = exc
            with self._cond:
                if not self._closed:
                    self._ready[i] = part
                    self.by_helpers += 1
                self._cond.notify_all()

    def blocks(self) -> Iterator[memoryview]:
        """The blocks' bytes in order. Rather than wait for a block a helper is still
        gathering, the reader gathers the next unclaimed one itself (within the window)."""
        assert self._spans is not None, "start() first"
        for i in range(len(self._spans)):
            while True:
                with self._cond:
                    if i in self._ready:
                        part = self._ready.pop(i)
                        self._read = i + 1
                        self._cond.notify_all()  # the window moved on
                        break
                    if not (i >= self._claimed or self._claimable()):
                        self._cond.wait()
                        continue
                    j = self._claimed  # block i itself when nobody has claimed it yet
                    self._claimed += 1
                gathered: memoryview | BaseException
                try:
                    gathered = self._gather(j)
                except BaseException as exc:
                    gathered = exc
                with self._cond:
                    self._ready[j] = gathered
            if isinstance(part, BaseException):
                raise part
            yield part


def _arrow_strings(series: Any, nulls: int) -> list[tuple[np.ndarray, memoryview]] | None:
    """A text column as Arrow sees it: per chunk, the offsets of the values (n + 1 of them;
    a value's UTF-8 length is the difference of its two, 0 where missing) and the values'
    bytes back to back; None when the column is
    not plain text (then the caller encodes value by value, with the same result).

    Arrow-backed strings (pandas' ``str`` dtype) are read without a copy; object columns of
    ``str`` are converted by Arrow in C++ first.
    """
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:  # pragma: no cover - pyarrow is a dependency of pandas' str dtype
        return None
    try:
        if isinstance(series.dtype, np.dtype):  # object: Python strings, converted in C++
            arr = pa.array(series.to_numpy(), from_pandas=True)
        else:  # Arrow-backed (no copy), categorical (a dictionary array), ...
            arr = pa.array(series.array, from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError, UnicodeError):
        return None
    chunked = arr if isinstance(arr, pa.ChunkedArray) else pa.chunked_array([arr])
    if pa.types.is_dictionary(chunked.type):  # a categorical: its values, in row order
        chunked = pa.chunked_array(
            [c.dictionary.take(c.indices) for c in chunked.chunks], chunked.type.value_type
        )
    if not (pa.types.is_string(chunked.type) or pa.types.is_large_string(chunked.type)):
        return None  # numbers or bytes in an object column: their str() is what gets hashed
    if chunked.null_count != nulls:
        return None  # pandas and Arrow disagree on what is missing (NaT, ...)
    offset_type = _offset_type(chunked.type)
    out: list[tuple[np.ndarray, memoryview]] = []
    for chunk in chunked.chunks:
        offsets, text = _text_chunk(chunk, offset_type)
        if chunk.null_count and len(text) != (pc.sum(pc.binary_length(chunk)).as_py() or 0):
            # a missing value is "" in the encoding; Arrow lets a null slot span bytes (rare:
            # pandas and Arrow's builders write none), and then the chunk is rebuilt
            offsets, text = _text_chunk(pc.fill_null(chunk, ""), offset_type)
        out.append((offsets, text))
    return out


def _plain_values(series: Any, ltype: str) -> np.ndarray | None:
    """The column's values when their native bytes are exactly what ``_column_digest`` hashes.

    That holds for NumPy-backed int64, bool and float64 columns: they cannot hold a missing
    value other than NaN, and a float column with a NaN is detected (and handed back to
    ``_column_digest``) by ``_plain_digest``. Anything else returns None.
    """
    dtype = series.dtype
    if not isinstance(dtype, np.dtype):
        return None
    if not (
        (ltype == "float64" and dtype == np.float64)
        or (ltype == "int64" and dtype == np.int64)
        or (ltype == "bool" and dtype == np.bool_)
    ):
        return None
    values: np.ndarray = series.to_numpy()
    return values if values.dtype == dtype else None


def _plain_digest(values: np.ndarray, ltype: str, threads: int) -> str | None:
    """``_column_digest`` of a column whose values ``_plain_values`` returned, without pandas.

    Byte for byte the same encoding: the header, then the values (no mask, as there is no NA).
    Returns None when a float column turns out to hold a NaN: the caller then falls back to
    ``_column_digest``, which writes the mask and the canonical NaN.
    """
    flat = np.ascontiguousarray(values).reshape(-1).view(np.uint8)
    multi = threads != 1 and flat.size >= _PARALLEL_MIN
    h = blake3.blake3(max_threads=threads) if multi else blake3.blake3()
    h.update(f"column\x00{ltype}\x00{values.size}\x00".encode())
    check_nan = ltype == "float64"
    # one block when the hasher is multi-threaded: it splits a big update across cores itself
    step = _BLOCK if threads == 1 else max(flat.size, 1)
    for start in range(0, flat.size, step):
        block = flat[start : start + step]
        # min() propagates NaN, and unlike isna() it allocates nothing
        if check_nan and np.isnan(block.view(np.float64).min()):
            return None
        h.update(block.data)
    return f"column:{_hex(h)}"


def _digest(series: Any, ltype: str, threads: int) -> str:
    """A column's digest by the fastest path that gives the documented encoding."""
    values = _plain_values(series, ltype)
    if values is not None:
        digest = _plain_digest(values, ltype, threads)
        if digest is not None:
            return digest
    return _column_digest(series, ltype, threads)


def _digests(
    series: Mapping[str, Any], schema: Mapping[str, str], keys: list[str]
) -> dict[str, str]:
    """``_digest`` of a few columns, one after the other on one thread (a task of the table's pool)."""
    return {k: _digest(series[k], schema[k], 1) for k in keys}


def _shared_digest(series: Any, ltype: str, text: _CodedText) -> str:
    """``_digest`` of a categorical column in a table's pool, its text gathered with ``text``'s
    helpers; they are sent home however it ends."""
    try:
        return _column_digest(series, ltype, 1, text)
    finally:
        text.close()


def _hash_cost(series: Any, ltype: str) -> int:
    """About how many bytes a column's digest goes through (to hand out the longest first)."""
    if ltype != "string":
        return int(series.size) * 8
    categories = getattr(series.dtype, "categories", None)
    if categories is not None:  # per row: a length, its text, and the text gathered first
        mean = np.mean(categories.astype(str).str.len()) if len(categories) else 0
        return int(series.size) * (8 + 3 * int(mean))
    return int(series.size) * 8 + int(series.memory_usage(index=False, deep=False))


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def fingerprint_table(df: Any) -> TableFingerprint:
    """Fingerprint a pandas DataFrame: schema + one hash per column, independent of file format.

    A big table's columns are hashed in a thread pool, one column per core, the longest
    first; BLAKE3, NumPy and Arrow release the GIL for the work that counts.
    """
    import pandas as pd

    if isinstance(df, pd.Series):
        df = df.to_frame()
    if not isinstance(df, pd.DataFrame):
        raise UnhashableError(
            f"fingerprint_table expects a pandas DataFrame, got {type(df).__name__}"
        )
    if not df.columns.is_unique:
        dup = df.columns[df.columns.duplicated()].tolist()
        raise UnhashableError(
            f"table has duplicate column names {dup}; rename them so each column can be fingerprinted"
        )
    schema: dict[str, str] = {}
    series: dict[str, Any] = {}
    for name in df.columns:
        # names equal as strings (1 and "1"): the last column wins, in the first one's place
        key = str(name)
        series[key] = df[name]
        schema[key] = logical_type(series[key])

    costs = {key: _hash_cost(s, schema[key]) for key, s in series.items()}
    workers = min(len(series), _cpus())
    columns: dict[str, str] = {}
    if workers > 1 and sum(costs.values()) >= _TABLE_PARALLEL_MIN:
        # one column per core, each hashed single-threaded; the longest first, so that no
        # core is left alone with a long column at the end; a categorical of text has the
        # other workers help gather its values (its cost is mostly that gathering)
        longest_first = sorted(series, key=lambda k: -costs[k])
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="seedline-fp") as pool:
            futures: dict[str, Future[str]] = {}
            batches: list[Future[dict[str, str]]] = []
            shared: list[_CodedText] = []
            batch: list[str] = []
            batch_bytes = 0
            for k in longest_first:
                if schema[k] == "string" and isinstance(series[k].dtype, pd.CategoricalDtype):
                    shared.append(_CodedText(window=2 * workers))
                    futures[k] = pool.submit(_shared_digest, series[k], schema[k], shared[-1])
                    continue
                batch.append(k)
                batch_bytes += costs[k]
                if batch_bytes >= _TASK_MIN:
                    batches.append(pool.submit(_digests, series, schema, batch))
                    batch, batch_bytes = [], 0
            if batch:
                batches.append(pool.submit(_digests, series, schema, batch))
            # helpers queue behind every column: a worker helps once it has no column left
            helpers = [pool.submit(text.help) for text in shared for _ in range(workers - 1)]
            found = {k: f.result() for k, f in futures.items()}
            for done in batches:
                found.update(done.result())
            columns = {k: found[k] for k in series}
            for helper in helpers:
                helper.result()
    else:  # one at a time, each on all cores
        columns = {k: _digest(s, schema[k], blake3.blake3.AUTO) for k, s in series.items()}
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
        if len(b) <= _SMALL:  # one update call instead of two: the same bytes reach the hasher
            self.h.update(struct.pack("<Q", len(b)) + b)
            return
        self.h.update(struct.pack("<Q", len(b)))
        self.h.update(b)

    def text(self, s: str) -> None:
        self.raw(s.encode("utf-8"))


# timing figures some estimators keep: not state, and never reproducible
_VOLATILE_KEYS = frozenset(
    {
        "refit_time_",
        "fit_time_",
        "score_time_",
        # timing columns of a search's cv_results_
        "mean_fit_time",
        "std_fit_time",
        "mean_score_time",
        "std_score_time",
    }
)


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
    if type(obj) is str:  # dict keys: nearly always str, and the same few names recur
        return _str_digest(obj)
    h = blake3.blake3()
    sub = _Feed(h)
    _encode_value(obj, sub)
    return bytes(h.digest())


@lru_cache(maxsize=4096)
def _str_digest(s: str) -> bytes:
    h = blake3.blake3()
    _encode_value(s, _Feed(h))
    return bytes(h.digest())


@_encode.register(dict)
def _(obj: Mapping[Any, Any], f: _Feed) -> None:
    f.tag(b"M")
    items = sorted(
        (_sub_digest(k), k, v)
        for k, v in [(k, v) for k, v in obj.items()]
        if k not in _VOLATILE_KEYS
    )
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
def _(obj: np.dtype, f: _Feed) -> None:
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
    if arr.dtype.fields is not None:
        # field by field: a record's padding bytes are uninitialised memory (scikit-learn's tree
        # nodes have 7 of them), so the raw buffer of equal records can differ
        f.tag(b"V")
        f.raw(struct.pack(f"<{arr.ndim + 1}Q", arr.ndim, *arr.shape))
        names = list(arr.dtype.names or ())
        _encode_value(names, f)
        for name in names:
            _encode_array(np.ascontiguousarray(arr[name]), f)
        return
    f.tag(b"A")
    f.text(arr.dtype.str)
    f.raw(struct.pack(f"<{arr.ndim + 1}Q", arr.ndim, *arr.shape))
    if arr.dtype.hasobject:
        items = arr.ravel(order="C").tolist()
        if not _encode_strings(items, f):
            for item in items:
                _encode_value(item, f)
        return
    if arr.dtype.kind in "fc":
        nan = np.isnan(arr)
        if nan.any():
            arr = np.where(nan, np.array(np.nan, dtype=arr.dtype), arr)
    f.raw(_byte_view(arr))


def _encode_strings(items: list[Any], f: _Feed) -> bool:
    """Feed a long list of ``str`` (predictions, labels) as the per-item encoding would, without
    a Python call per item; False, feeding nothing, when it is short or holds anything else.

    Arrow converts the strings to UTF-8 in C++; NumPy lays out, a block of items at a time,
    each item's tag and length (little-endian uint64) followed by its bytes: the same bytes
    reach the hasher.
    """
    if len(items) < _VECTOR_MIN or set(map(type, items)) != {str}:
        return False
    import pyarrow as pa

    try:
        strings = pa.array(items, type=pa.large_string())
    except (pa.ArrowException, UnicodeError):  # lone surrogates: the per-item path raises
        return False
    offsets, text = _text_chunk(strings, np.int64)
    data = np.frombuffer(text, dtype=np.uint8)
    offsets = offsets - offsets[0]
    header = np.arange(9)
    for i in range(0, len(items), _LENGTHS_BLOCK):
        o = offsets[i : i + _LENGTHS_BLOCK + 1]
        n = len(o) - 1
        lengths = np.diff(o).astype("<u8")
        out = np.empty(9 * n + int(o[-1] - o[0]), dtype=np.uint8)
        at = (np.arange(n) * 9 + (o[:-1] - o[0]))[:, None] + header  # each item's 9 bytes
        heads = np.empty((n, 9), dtype=np.uint8)
        heads[:, 0] = ord("U")
        heads[:, 1:] = lengths.view(np.uint8).reshape(n, 8)
        out[at] = heads
        is_text = np.ones(out.size, dtype=bool)
        is_text[at] = False
        out[is_text] = data[o[0] : o[-1]]
        f.h.update(out.data)
    return True


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
        # the index is part of a fitted value: a category -> code mapping is a Series
        # whose index holds the categories (category_encoders)
        _encode_value(obj.index, f)

    @_encode.register(pd.Index)
    def _(obj: Any, f: _Feed) -> None:
        f.tag(b"X")
        _encode_value(np.asarray(obj.to_numpy()), f)

    @_encode.register(pd.api.extensions.ExtensionDtype)
    def _(obj: Any, f: _Feed) -> None:
        # what defines the dtype, not its attributes: pandas fills a lazy ``_cache`` on use
        f.tag(b"D")
        f.text(_qualname(obj))
        if isinstance(obj, pd.CategoricalDtype):
            _encode_value([obj.categories, obj.ordered], f)
        else:
            f.text(repr(obj))


_register_pandas()


# -- deep-learning types --------------------------------------------------------------------
# Registered the first time a fingerprint is taken while the framework is loaded, so that
# importing seedline never imports torch, skorch or keras. What makes up a network's
# canonical state is decided in core/deeplearning.py.
def _encode_tensor(t: Any, f: _Feed) -> None:
    """dtype, shape and the bytes in C order; one NaN bit pattern, as for arrays."""
    import torch

    t = t.detach()
    if t.is_sparse:
        t = t.to_dense()
    t = t.cpu().resolve_conj().resolve_neg().contiguous()
    if (t.is_floating_point() or t.is_complex()) and bool(torch.isnan(t).any()):
        t = torch.where(torch.isnan(t), torch.full_like(t, math.nan), t)
    f.tag(b"W")
    f.text(str(t.dtype))
    f.raw(struct.pack(f"<{t.dim() + 1}Q", t.dim(), *t.shape))
    flat = t.reshape(-1)
    f.raw(flat.view(torch.uint8).numpy().data if flat.numel() else memoryview(b""))


def _register_torch() -> None:
    import torch

    @_encode.register(torch.Tensor)
    def _(obj: Any, f: _Feed) -> None:
        _encode_tensor(obj, f)

    @_encode.register(torch.nn.Module)
    def _(obj: Any, f: _Feed) -> None:
        # the state_dict in order: parameter and buffer names with their tensors
        f.tag(b"H")
        f.text(_qualname(obj))
        items = list(obj.state_dict().items())
        f.raw(struct.pack("<Q", len(items)))
        for name, tensor in items:
            f.text(name)
            _encode_tensor(tensor, f)

    @_encode.register(torch.optim.Optimizer)
    def _(obj: Any, f: _Feed) -> None:
        f.tag(b"Q")
        f.text(_qualname(obj))
        _encode_value(obj.state_dict(), f)

    @_encode.register(torch.Generator)
    def _(obj: Any, f: _Feed) -> None:
        f.tag(b"q")
        _encode_tensor(obj.get_state(), f)

    @_encode.register(torch.dtype)
    def _(obj: Any, f: _Feed) -> None:
        f.tag(b"Y")
        f.text(str(obj))

    @_encode.register(torch.device)
    def _(obj: Any, f: _Feed) -> None:
        f.tag(b"d")
        f.text(str(obj))


def _register_skorch() -> None:
    import skorch

    from seedline.core.deeplearning import skorch_state

    @_encode.register(skorch.NeuralNet)
    def _(obj: Any, f: _Feed) -> None:
        # laid out as any estimator (class, params, fitted state); the fitted state is the
        # networks' weights and the history without timings, never pickle bytes
        params, fitted = skorch_state(obj)
        f.tag(b"E")
        f.text(_qualname(obj))
        _encode_value(params, f)
        _encode_value(fitted, f)


def _register_keras() -> None:
    import keras

    from seedline.core.deeplearning import keras_layers

    @_encode.register(keras.layers.Layer)
    def _(obj: Any, f: _Feed) -> None:
        # by position and class, not by name: Keras numbers names per process
        f.tag(b"J")
        f.text(_qualname(obj))
        _encode_value(keras_layers(obj), f)

    @_encode.register(keras.Variable)
    def _(obj: Any, f: _Feed) -> None:
        _encode_array(np.asarray(obj.numpy()), f)


_LAZY_REGISTRATIONS = {
    "torch": _register_torch,
    "skorch": _register_skorch,
    "keras": _register_keras,
}
_registered: set[str] = set()


def _register_loaded_frameworks() -> None:
    """Register the encoders of every deep-learning framework loaded since the last call."""
    if len(_registered) == len(_LAZY_REGISTRATIONS):
        return
    for name, register in _LAZY_REGISTRATIONS.items():
        if name not in _registered and name in sys.modules:
            _registered.add(name)
            register()


def fingerprint_value(obj: Any, kind: str = "value") -> str:
    """Fingerprint any supported value by its canonical encoding."""
    _register_loaded_frameworks()
    h = blake3.blake3()
    f = _Feed(h)
    f.text(f"seedline-v{ENCODING_VERSION}")
    _encode_value(obj, f)
    return f"{kind}:{_hex(h)}"


def fingerprint_estimator(est: Any) -> str:
    """Fingerprint a (fitted or unfitted) estimator by its canonical state, never its pickle bytes."""
    if not _is_estimator(est):
        raise UnhashableError(
            f"fingerprint_estimator expects a scikit-learn estimator, got {_qualname(est)}"
        )
    return fingerprint_value(est, kind="estimator")


def fingerprint_array(arr: Any, kind: str = "array") -> str:
    """Fingerprint an array-like output (dense or scipy sparse, or a DataFrame)."""
    if hasattr(arr, "tocsr") and hasattr(arr, "nnz"):
        csr = arr.tocsr()
        csr.sort_indices()
        return fingerprint_value(
            ("sparse", csr.shape, csr.data, csr.indices, csr.indptr), kind=kind
        )
    if hasattr(arr, "to_numpy") and hasattr(arr, "columns"):
        return fingerprint_value(arr, kind=kind)
    return fingerprint_value(np.asarray(arr), kind=kind)
