"""Batch prediction: a CSV or Parquet file in, predictions out, in chunks of constant memory.

Each chunk is checked against the model's input schema (a missing column or a value of the
wrong type names the column and the row), predicted, and appended to a temporary file
beside the output, which is renamed into place only when every row is done: a failure
never leaves half an output. Extra input columns are ignored; ``id_column`` copies one of
them into the output so rows can be joined back.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seedline.core.errors import DataError, SeedlineError, did_you_mean
from seedline.execution.data import check_line_lengths
from seedline.workflow.outputs import check_prediction_target
from seedline.workflow.parity import normalise_predictions
from seedline.workflow.schema import InputSchema, SchemaViolation

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
DEFAULT_CHUNK_ROWS = 50_000
Progress = Callable[[int, int | None], None]  # (bytes or rows done, total or None)


@dataclass
class BatchResult:
    """What a batch prediction did."""

    input: str
    output: str
    rows: int
    chunks: int
    seconds: float
    columns: list[str]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def file_format(path: Path, given: str | None = None) -> str:
    if given:
        if given not in ("csv", "parquet"):
            raise DataError(f"unknown format {given!r}", hint="use csv or parquet")
        return given
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"cannot tell the format of {path} from its suffix {path.suffix!r}",
            hint="name it .csv or .parquet, or pass --input-format / --output-format",
        )
    return fmt


def _header(path: Path, fmt: str) -> list[str]:
    """The column names of a CSV or Parquet file, read without reading its rows."""
    if fmt == "csv":
        import pandas as pd

        try:
            return [str(c) for c in pd.read_csv(path, nrows=0).columns]
        except Exception as exc:
            raise DataError(f"cannot read {path} as CSV: {exc}") from exc
    import pyarrow.parquet as pq

    try:
        return [str(n) for n in pq.ParquetFile(path).schema_arrow.names]
    except Exception as exc:
        raise DataError(f"cannot read {path} as Parquet: {exc}") from exc


def check_input(
    schema: InputSchema,
    input_path: str | Path,
    output_path: str | Path,
    *,
    id_column: str | None = None,
    input_format: str | None = None,
    output_format: str | None = None,
) -> None:
    """Everything about the files that can be checked before the model is loaded.

    The input exists, is readable, has a known format and sane line lengths, and holds every
    column the model needs (and the id column); the output path has a known format and is
    not the input. Loading a model and its parity check take seconds: a typo in a file or
    column name should not wait for them.
    """
    src, dst = Path(input_path), Path(output_path)
    if not src.is_file():
        near = (
            sorted(p.name for p in src.parent.glob("*") if p.suffix.lower() in FORMATS)[:20]
            if src.parent.is_dir()
            else []
        )
        raise DataError(
            f"input file {src} does not exist.{did_you_mean(src.name, near)}",
            hint=("data files there: " + ", ".join(near))
            if near
            else "give the path of a .csv or .parquet file",
        )
    if not os.access(src, os.R_OK):
        raise DataError(f"input file {src} is not readable", hint="check its permissions")
    if src.resolve() == dst.resolve():
        raise DataError("the output would overwrite the input", hint="choose another -o path")
    in_fmt = file_format(src, input_format)
    file_format(dst, output_format)
    if in_fmt == "csv":
        check_line_lengths(src, label=f"input file {src}")
    header = _header(src, in_fmt)
    schema.check_names([c for c in header if c in schema.by_name], where=str(src))
    if id_column is not None and id_column not in header:
        raise DataError(
            f"id column {id_column!r} is not in {src}.{did_you_mean(id_column, header)}",
            hint="columns: " + ", ".join(header),
        )


def _csv_dtypes(schema: InputSchema) -> dict[str, Any]:
    # text columns stay text whatever they look like ("007"); numbers are checked after reading
    return {c.name: "str" for c in schema.columns if c.kind == "string"}


def _chunks(
    path: Path, fmt: str, schema: InputSchema, chunk_rows: int, keep: list[str], progress: Progress
) -> Iterator[Any]:
    if fmt == "csv":
        import pandas as pd

        size = path.stat().st_size
        with path.open("rb") as fh:
            try:
                header = pd.read_csv(fh, nrows=0).columns
            except Exception as exc:
                raise DataError(f"cannot read {path} as CSV: {exc}") from exc
            fh.seek(0)
            present = [c for c in keep if c in header]
            usecols = present or None
            reader = pd.read_csv(
                fh,
                chunksize=chunk_rows,
                usecols=usecols,
                dtype={k: v for k, v in _csv_dtypes(schema).items() if k in header},
            )
            for chunk in reader:
                yield chunk
                progress(fh.tell(), size)
        return
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        raise DataError(f"cannot read {path} as Parquet: {exc}") from exc
    names = set(pf.schema_arrow.names)
    columns = [c for c in keep if c in names]
    total = pf.metadata.num_rows
    done = 0
    for batch in pf.iter_batches(batch_size=chunk_rows, columns=columns or None):
        frame = batch.to_pandas()
        done += len(frame)
        yield frame
        progress(done, total)


class _Writer:
    """Appends chunks to a temporary file next to ``target``; ``commit`` renames it into place."""

    def __init__(self, target: Path, fmt: str) -> None:
        self.target, self.fmt = target, fmt
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        os.close(fd)
        self.tmp = Path(tmp)
        self._fh: Any = None
        self._pq: Any = None

    def write(self, frame: Any) -> None:
        if self.fmt == "csv":
            if self._fh is None:
                self._fh = self.tmp.open("w", newline="")
                frame.to_csv(self._fh, index=False)
            else:
                frame.to_csv(self._fh, index=False, header=False)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._pq is None:
            self._pq = pq.ParquetWriter(self.tmp, table.schema)
        self._pq.write_table(table)

    def commit(self) -> None:
        self.close()
        os.replace(self.tmp, self.target)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
        if self._pq is not None:
            self._pq.close()
            self._pq = None

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
        self.tmp.unlink(missing_ok=True)


def _output_frame(model: Any, X: Any, chunk: Any, *, id_column: str | None, proba: bool) -> Any:
    import pandas as pd

    out: dict[str, Any] = {}
    if id_column is not None:
        out[id_column] = chunk[id_column].reset_index(drop=True)
    pred = model.predict(X)
    out["prediction"] = normalise_predictions(pred) if np.asarray(pred).dtype == object else pred
    if proba:
        p = np.asarray(model.predict_proba(X))
        classes = getattr(model, "classes_", range(p.shape[1]))
        for j, cls in enumerate(classes):
            out[f"proba_{cls}"] = p[:, j]
    return pd.DataFrame(out)


def predict_file(
    model: Any,
    schema: InputSchema,
    input_path: str | Path,
    output_path: str | Path,
    *,
    id_column: str | None = None,
    proba: bool = False,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    input_format: str | None = None,
    output_format: str | None = None,
    threads: int = 1,
    progress: Progress | None = None,
    force: bool = False,
) -> BatchResult:
    """Predict every row of ``input_path`` into ``output_path`` (written atomically)."""
    from threadpoolctl import threadpool_limits

    src, dst = Path(input_path), Path(output_path)
    dst = check_prediction_target(dst, force=force)
    check_input(
        schema,
        src,
        dst,
        id_column=id_column,
        input_format=input_format,
        output_format=output_format,
    )
    in_fmt, out_fmt = file_format(src, input_format), file_format(dst, output_format)
    if chunk_rows < 1:
        raise DataError(f"chunk size must be at least 1 row, got {chunk_rows}")
    if proba and not hasattr(model, "predict_proba"):
        raise SeedlineError("--proba was asked for, but the model has no predict_proba")
    keep = schema.names + ([id_column] if id_column and id_column not in schema.names else [])
    say = progress or (lambda _d, _t: None)
    t0 = time.perf_counter()
    writer = _Writer(dst, out_fmt)
    rows = chunks = 0
    columns: list[str] = []
    try:
        with threadpool_limits(limits=threads):
            for chunk in _chunks(src, in_fmt, schema, chunk_rows, keep, say):
                if id_column is not None and id_column not in chunk.columns:
                    raise DataError(
                        f"id column {id_column!r} is not in {src}.{did_you_mean(id_column, [str(c) for c in chunk.columns])}",
                        hint="columns: " + ", ".join(map(str, chunk.columns)),
                    )
                X = schema.coerce_frame(chunk, where=str(src), first_row=rows)
                try:
                    frame = _output_frame(model, X, chunk, id_column=id_column, proba=proba)
                except Exception as exc:
                    raise SchemaViolation(
                        f"the model rejected rows {rows}-{rows + len(chunk) - 1} of {src}: {type(exc).__name__}: {exc}",
                        hint="an unseen category with handle_unknown='error', or a value the pipeline cannot take",
                    ) from exc
                writer.write(frame)
                columns = [str(c) for c in frame.columns]
                rows += len(chunk)
                chunks += 1
        if rows == 0:
            raise DataError(f"{src} has no rows to predict")
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return BatchResult(
        input=str(src),
        output=str(dst),
        rows=rows,
        chunks=chunks,
        seconds=time.perf_counter() - t0,
        columns=columns,
    )


__all__ = ["BatchResult", "check_input", "predict_file"]
