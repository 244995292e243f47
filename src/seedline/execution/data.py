"""Loading a spec's data sources into one pandas DataFrame, with a fingerprint per source.

A source is a file of the project (CSV, Parquet), an fsspec URL (``s3://bucket/a.csv``), a
dataset bundled with scikit-learn (``sklearn:load_iris``), a SQL query kept in a project
file (``sql:queries/train.sql``, run on ``data.database``) or a Python loader function
(``python:package.module:function``). Files and URLs are fingerprinted by their bytes;
the others by the content of the table they give.
"""

from __future__ import annotations

import io
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
import pandas as pd

from seedline.core.errors import DataError, did_you_mean
from seedline.core.fingerprint import file_hasher, fingerprint_file, fingerprint_table
from seedline.core.spec import DataSpec

_DATA_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
FILE_KINDS = ("csv", "parquet")
"""Source kinds that are files of the project: checked on disk, kept by data snapshots."""
_URL = re.compile(r"^(?P<protocol>[A-Za-z][A-Za-z0-9+.\-]*)://")
_STREAM_CHUNK = 8 << 20

MAX_LINE_BYTES = 64 << 20
"""The longest line a CSV file may have (64 MiB); ``SEEDLINE_MAX_LINE_BYTES`` changes it.

pandas holds a whole line, and every field parsed from it, in memory at once: a file with
no newline at all (a binary file, a one-line dump) would take several times its size
before failing. Real tables have lines of kilobytes.
"""
_SCAN_CHUNK = 16 << 20


def max_line_bytes() -> int:
    """The line-length limit in force: ``SEEDLINE_MAX_LINE_BYTES`` if set, else MAX_LINE_BYTES."""
    raw = os.environ.get("SEEDLINE_MAX_LINE_BYTES")
    if raw is None or raw.strip() == "":
        return MAX_LINE_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise DataError(
            f"SEEDLINE_MAX_LINE_BYTES must be a whole number of bytes, got {raw!r}",
            hint=f"unset it to use the default ({MAX_LINE_BYTES})",
        ) from None
    if value < 1:
        raise DataError(f"SEEDLINE_MAX_LINE_BYTES must be at least 1, got {value}")
    return value


def check_line_lengths(path: Path, *, limit: int | None = None, label: str | None = None) -> None:
    """Refuse a text file with a line longer than ``limit`` bytes, before a parser reads it.

    Scans the file in fixed-size chunks (memory stays at one chunk) with vectorised newline
    search, so it costs a fraction of parsing the file.
    """
    limit = max_line_bytes() if limit is None else limit
    line_start = 0  # offset of the first byte of the current line
    line_no = 1
    offset = 0
    with path.open("rb") as fh:
        while True:
            chunk = fh.read(_SCAN_CHUNK)
            if not chunk:
                break
            ends = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10) + offset
            starts = np.concatenate(([line_start], ends[:-1] + 1)) if len(ends) else None
            if starts is not None:
                lengths = ends - starts
                too_long = np.flatnonzero(lengths > limit)
                if len(too_long):
                    _line_too_long(path, label, line_no + int(too_long[0]), limit)
                line_no += len(ends)
                line_start = int(ends[-1]) + 1
            offset += len(chunk)
            if offset - line_start > limit:
                _line_too_long(path, label, line_no, limit)


def _line_too_long(path: Path, label: str | None, line: int, limit: int) -> None:
    raise DataError(
        f"{label or str(path)}: line {line} is longer than {limit:,} bytes; "
        "this does not look like a CSV table (no line breaks?)",
        hint="check that it is the file you meant (a CSV table has one row per line); "
        "to read longer lines, set SEEDLINE_MAX_LINE_BYTES to a larger number of bytes",
    )


@dataclass
class LoadedData:
    frame: pd.DataFrame
    sources: list[dict[str, Any]]


def bundled_datasets() -> list[str]:
    """scikit-learn datasets shipped inside the package (the fetch_* ones need the network)."""
    import sklearn.datasets as ds

    return sorted(
        n
        for n in dir(ds)
        if n.startswith("load_")
        and n
        not in (
            "load_files",
            "load_svmlight_file",
            "load_svmlight_files",
            "load_sample_image",
            "load_sample_images",
        )
    )


def _load_sklearn(name: str) -> pd.DataFrame:
    import sklearn.datasets as ds

    names = bundled_datasets()
    if name not in names:
        raise DataError(
            f"'sklearn:{name}' is not a dataset bundled with scikit-learn.{did_you_mean(name, names)}",
            hint="bundled datasets: " + ", ".join(names),
        )
    bunch = getattr(ds, name)(as_frame=True)
    frame = bunch.frame
    if frame is None:
        frame = pd.concat([bunch.data, bunch.target.rename("target")], axis=1)
    return frame.reset_index(drop=True)


def _data_files(root: Path) -> list[str]:
    found: list[str] = []
    for suffix in _DATA_SUFFIXES:
        found += [
            str(p.relative_to(root))
            for p in root.rglob(f"*{suffix}")
            if ".seedline" not in p.parts and ".venv" not in p.parts
        ]
    return sorted(found)[:20]


def source_kind(uri: str) -> str:
    """What a source string names: ``sklearn``, ``sql``, ``python``, ``fsspec`` or ``file``."""
    for prefix in ("sklearn", "sql", "python"):
        if uri.startswith(f"{prefix}:"):
            return prefix
    m = _URL.match(uri)
    if m is not None and m.group("protocol").lower() != "file":
        return "fsspec"
    return "file"


def read_source(
    uri: str, root: Path, data: DataSpec | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read one source; return the frame and its record (file and table fingerprints).

    ``data`` gives what some kinds need besides the uri: ``database`` for ``sql:`` sources,
    ``loader_params`` for ``python:`` loaders.
    """
    kind = source_kind(uri)
    if kind == "sklearn":
        return _table_record(uri, "sklearn", _load_sklearn(uri.removeprefix("sklearn:")))
    if kind == "sql":
        return _read_sql(uri, root, data)
    if kind == "python":
        return _read_python(uri, root, data)
    if kind == "fsspec":
        return _read_url(uri, root)
    return _read_file(uri, root)


def _table_record(
    uri: str, kind: str, frame: pd.DataFrame, **extra: Any
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A source fingerprinted by its content (no file bytes to hash)."""
    tf = fingerprint_table(frame)
    return frame, {
        "uri": uri,
        "kind": kind,
        "fingerprint": tf.digest,
        "bytes": None,
        "rows": len(frame),
        "table": tf.to_dict(),
        **extra,
    }


def _parse(path: Path, kind: str, label: str) -> pd.DataFrame:
    if kind == "csv":
        check_line_lengths(path, label=label)
    try:
        return pd.read_csv(path) if kind == "csv" else pd.read_parquet(path)
    except Exception as exc:
        raise DataError(f"cannot read {label} as {kind}: {exc}") from exc


def _read_file(uri: str, root: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    # file:///abs/path.csv is the local file itself
    local = unquote(urlsplit(uri).path) if uri.lower().startswith("file://") else uri
    path = (root / local).resolve()
    kind = _DATA_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(
            f"data source {uri!r} has an unknown format {path.suffix!r}",
            hint="use a .csv or .parquet file, a URL such as s3://bucket/table.parquet, a bundled "
            "dataset such as 'sklearn:load_digits', sql:QUERY.sql or python:module:function",
        )
    if not path.is_file():
        files = _data_files(root)
        raise DataError(
            f"data file {uri!r} does not exist (looked for {path}).{did_you_mean(uri, files)}",
            hint=("data files in the project: " + ", ".join(files))
            if files
            else "no .csv or .parquet files found in the project",
        )
    frame = _parse(path, kind, f"data file {uri!r}")
    tf = fingerprint_table(frame)
    record = {
        "uri": uri,
        "kind": kind,
        "fingerprint": fingerprint_file(path),
        "bytes": path.stat().st_size,
        "rows": len(frame),
        "table": tf.to_dict(),
    }
    return frame, record


def _read_url(uri: str, root: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A CSV or Parquet file at an fsspec URL, streamed once: hashed while copied to a temporary file.

    Filesystem options come from ``[data.PROTOCOL]`` in seedline.toml (``endpoint_url`` for
    an S3-compatible server); credentials from where the filesystem's library looks (for
    S3: the ``AWS_*`` variables, ``~/.aws``).
    """
    import fsspec

    from seedline.storage.config import load_project_config
    from seedline.storage.objects import fsspec_options
    from seedline.storage.urls import redact_text, redact_url

    shown = redact_url(uri)
    suffix = PurePosixPath(urlsplit(uri).path).suffix.lower()
    kind = _DATA_SUFFIXES.get(suffix)
    if kind is None:
        raise DataError(
            f"data source {shown!r} has an unknown format {suffix!r}",
            hint="a URL source must end in .csv, .parquet or .pq",
        )
    protocol = uri.split("://", 1)[0].lower()
    options = fsspec_options(protocol, load_project_config(root).data_options(protocol))
    h = file_hasher()
    size = 0
    with tempfile.TemporaryDirectory(prefix="seedline-source-") as tmp:
        local = Path(tmp) / f"source{suffix}"
        try:
            fs, path = fsspec.core.url_to_fs(uri, **options)
            with fs.open(path, "rb") as src, local.open("wb") as dst:
                while chunk := src.read(_STREAM_CHUNK):
                    h.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
        except FileNotFoundError:
            raise DataError(
                f"data source {shown!r} does not exist",
                hint="check the bucket and key, and that your credentials may list them",
            ) from None
        except (ImportError, ValueError) as exc:
            known = ", ".join(sorted(fsspec.available_protocols())[:30])
            raise DataError(
                f"data source {shown!r}: fsspec cannot open {protocol}:// URLs: {redact_text(str(exc), uri)}",
                hint=f"install the filesystem's package (s3fs for s3://, gcsfs for gs://); protocols fsspec knows: {known}",
            ) from None
        except Exception as exc:  # botocore / network errors of any fsspec driver
            raise DataError(
                f"cannot read data source {shown!r}: {type(exc).__name__}: {redact_text(str(exc), uri)}",
                hint=f"check that it is reachable with your credentials; filesystem options "
                f"(endpoint_url, ...) go in [data.{protocol}] of seedline.toml",
            ) from None
        frame = _parse(local, kind, f"data source {shown!r}")
    tf = fingerprint_table(frame)
    return frame, {
        "uri": uri,
        "kind": "fsspec",
        "fingerprint": f"file:{h.hexdigest()}",
        "bytes": size,
        "rows": len(frame),
        "table": tf.to_dict(),
    }


def _read_sql(uri: str, root: Path, data: DataSpec | None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A query kept in a project file, run on ``data.database``; fingerprinted by its result."""
    from seedline.storage.sql_source import read_query

    rel = uri.removeprefix("sql:")
    path = (root / rel).resolve()
    if not path.is_file():
        queries = sorted(str(p.relative_to(root)) for p in root.rglob("*.sql"))[:20]
        raise DataError(
            f"query file {rel!r} of data source {uri!r} does not exist (looked for {path}).{did_you_mean(rel, queries)}",
            hint=("query files in the project: " + ", ".join(queries))
            if queries
            else "write the query in a .sql file of the project and name it as sql:PATH",
        )
    if data is None or data.database is None:
        raise DataError(
            f"data source {uri!r} needs data.database (a SQLAlchemy URL without a password, or env:VARNAME)"
        )
    try:
        query = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the query file {rel!r}: {exc}") from None
    frame, shown = read_query(data.database, query, label=uri, project_root=root)
    return _table_record(uri, "sql", frame, query=fingerprint_file(path), database=shown)


def _read_python(
    uri: str, root: Path, data: DataSpec | None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A loader function by import path; its module's code is recorded, its result fingerprinted."""
    import inspect

    from seedline.execution.compile import resolve_function

    module_name, _, func_name = uri.removeprefix("python:").rpartition(":")
    # project modules import first, as for the spec's classes
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    func = resolve_function(f"{module_name}.{func_name}", f"data source {uri!r}")
    params = dict((data.loader_params if data is not None else None) or {})
    try:
        frame = func(**params)
    except Exception as exc:
        raise DataError(
            f"data source {uri!r}: the loader raised {type(exc).__name__}: {exc}",
            hint="data.loader_params are passed to it as keyword arguments",
        ) from exc
    if not isinstance(frame, pd.DataFrame):
        raise DataError(
            f"data source {uri!r}: the loader returned a {type(frame).__name__}, not a pandas DataFrame",
            hint="return the table (features and target) as a pandas.DataFrame",
        )
    module = sys.modules.get(func.__module__)
    source = inspect.getsourcefile(module) if module is not None else None
    return _table_record(
        uri,
        "python",
        frame.reset_index(drop=True),
        module=func.__module__,
        code=fingerprint_file(source) if source else None,
    )


def loader_modules(sources: list[dict[str, Any]]) -> set[str]:
    """Modules of the ``python:`` loaders among loaded sources (their code is recorded like a step's)."""
    return {str(s["module"]) for s in sources if s.get("kind") == "python" and s.get("module")}


def read_table(data: bytes | Path) -> pd.DataFrame:
    """A table snapshot (Parquet bytes or file) read back."""
    return pd.read_parquet(io.BytesIO(data) if isinstance(data, bytes) else data, engine="pyarrow")


def read_table_snapshot(
    path: Path, recorded: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A source read from its table snapshot (Parquet), checked against the run's record of it."""
    try:
        frame = read_table(path)
    except Exception as exc:
        raise DataError(f"cannot read the table snapshot of {recorded['uri']!r}: {exc}") from exc
    digest = fingerprint_table(frame).digest
    if digest != (recorded.get("table") or {}).get("digest"):
        raise DataError(
            f"the table snapshot of {recorded['uri']!r} ({path}) does not have the run's table fingerprint",
            hint="delete the file; it is written again from the verified object",
        )
    return frame, dict(recorded)


def load_data(
    spec: DataSpec,
    root: Path,
    roots: dict[str, Path] | None = None,
    tables: dict[str, tuple[Path, dict[str, Any]]] | None = None,
) -> LoadedData:
    """Read every source; rows of several sources are concatenated in the order given.

    ``roots`` reads some sources from another folder than ``root`` (a materialized data
    snapshot); their records keep the uri the spec gives. ``tables`` reads some sources
    (queries, loaders, URLs) from a materialized table snapshot instead: uri -> (Parquet
    file, the run's record of the source), which the read must match.
    """
    frames: list[pd.DataFrame] = []
    records: list[dict[str, Any]] = []
    for uri in spec.sources:
        if tables and uri in tables:
            frame, record = read_table_snapshot(*tables[uri])
        else:
            frame, record = read_source(uri, (roots or {}).get(uri, root), spec)
        frames.append(frame)
        records.append(record)
    if len(frames) > 1:
        cols = list(frames[0].columns)
        for uri, fr in zip(spec.sources[1:], frames[1:], strict=True):
            if list(fr.columns) != cols:
                raise DataError(
                    f"source {uri!r} has columns {list(fr.columns)}, but {spec.sources[0]!r} has {cols}",
                    hint="sources are stacked row-wise and must have the same columns in the same order",
                )
        frame = pd.concat(frames, ignore_index=True)
    else:
        frame = frames[0]
    return LoadedData(frame=frame, sources=records)


def select_columns(
    frame: pd.DataFrame, spec: DataSpec
) -> tuple[pd.DataFrame, pd.Series, list[str]]:
    """Split the table into features X and target y, checking the named columns exist."""
    cols = [str(c) for c in frame.columns]
    if spec.target not in cols:
        raise DataError(
            f"target column {spec.target!r} is not in the data.{did_you_mean(spec.target, cols)}",
            hint="columns: " + ", ".join(cols),
        )
    if spec.features is not None:
        missing = [c for c in spec.features if c not in cols]
        if missing:
            hints = "".join(did_you_mean(m, cols) for m in missing)
            raise DataError(
                f"feature column(s) {missing} are not in the data.{hints}",
                hint="columns: " + ", ".join(cols),
            )
        features = list(spec.features)
    else:
        # the weight column weighs rows; it is never learned from
        features = [c for c in cols if c not in (spec.target, spec.sample_weight)]
    if spec.target in features:
        raise DataError(
            f"the target {spec.target!r} is also listed as a feature",
            hint="remove it from data.features",
        )
    y = frame[spec.target]
    if y.isna().any():
        raise DataError(
            f"target column {spec.target!r} has {int(y.isna().sum())} missing values",
            hint="drop those rows from the data; seedline never drops rows silently",
        )
    return frame[features], y, features


def sample_weights(
    frame: pd.DataFrame, spec: DataSpec, *, where: str = "the data"
) -> pd.Series | None:
    """The ``data.sample_weight`` column as float weights, or None; refuses missing, negative or non-numbers."""
    column = spec.sample_weight
    if column is None:
        return None
    cols = [str(c) for c in frame.columns]
    if column not in cols:
        raise DataError(
            f"sample_weight column {column!r} is not in {where}.{did_you_mean(column, cols)}",
            hint="columns: " + ", ".join(cols),
        )
    w = frame[column]
    if not pd.api.types.is_numeric_dtype(w) or pd.api.types.is_bool_dtype(w):
        raise DataError(
            f"sample_weight column {column!r} in {where} must hold numbers, found dtype {w.dtype}",
            hint="give each row a weight of 0 or more (1 is the usual weight)",
        )
    missing = int(w.isna().sum())
    if missing:
        raise DataError(
            f"sample_weight column {column!r} has {missing} missing values in {where}",
            hint="give every row a weight; seedline never drops rows or guesses weights silently",
        )
    values = w.to_numpy(dtype=np.float64)
    negative = np.flatnonzero(values < 0)
    if len(negative):
        raise DataError(
            f"sample_weight column {column!r} has {len(negative)} negative values in {where} "
            f"(the first at row {int(negative[0])}: {values[negative[0]]})",
            hint="weights must be 0 or more",
        )
    if not np.isfinite(values).all():
        raise DataError(f"sample_weight column {column!r} has infinite values in {where}")
    return pd.Series(values, index=frame.index, name=column)


def empty_columns(X: pd.DataFrame) -> list[str]:
    """Feature columns in which every value is missing: they carry no information."""
    if len(X) == 0:
        return []
    return [str(c) for c in X.columns if bool(X[c].isna().all())]


def check_classification_target(y: pd.Series, target: str, *, where: str = "the data") -> None:
    """A classifier needs at least two classes; one would 'learn' a constant and score 1.0."""
    classes = pd.unique(y)
    if len(classes) < 2:
        found = f"only the class {classes[0]!r}" if len(classes) else "no values"
        raise DataError(
            f"target column {target!r} has {found} in {where}; a classifier needs at least two classes",
            hint="check data.target and the data sources (a filter that left one class?), "
            "or use a regressor for a continuous target",
        )
