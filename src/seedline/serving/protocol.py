"""Request bodies of the two protocols the server speaks, turned into validated columns.

- Open Inference Protocol (KServe V2) REST: ``{"inputs": [{"name", "shape", "datatype",
  "data"}], "outputs": [{"name"}]}`` with one input per column (shape ``[N]`` or
  ``[N, 1]``) or a single 2-D input ``[N, n_columns]`` in the schema's column order.
- MLflow scoring protocol: ``dataframe_split``, ``dataframe_records``, ``instances`` or
  ``inputs``, with optional ``params: {"predict_method": "predict_proba"}``; or a CSV body.

Every problem is a ``ProtocolError`` (400, or 415 for a content type) or a
``SchemaViolation`` (400) that says what was expected and what was found.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from seedline.core.errors import SeedlineError, did_you_mean
from seedline.workflow.schema import V2_ACCEPTS, InputSchema, SchemaViolation

V2Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]
V2_DATATYPES: frozenset[str] = frozenset(get_args(V2Datatype))
OUTPUTS = ("predict", "predict_proba")
MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
Columns = dict[str, np.ndarray]


class ProtocolError(SeedlineError):
    """Raised when a request body does not follow the protocol of its endpoint."""

    def __init__(self, message: str, *, status: int = 400, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.message, "hint": self.hint}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


MAX_NESTING = 32  # a tensor's data is nested once per dimension; deeper is not a tensor


def _flatten(data: list[Any], out: list[Any], where: str) -> None:
    """Row-major values of nested lists, without recursion (a body may nest 1,000 deep)."""
    stack: list[tuple[list[Any], int]] = [(data, 0)]
    while stack:
        items, start = stack.pop()
        for i in range(start, len(items)):
            v = items[i]
            if isinstance(v, list):
                if len(stack) + 1 >= MAX_NESTING:
                    raise ProtocolError(
                        f"{where} has 'data' nested more than {MAX_NESTING} lists deep",
                        hint="send the values flat (row-major) or nested once per dimension of 'shape'",
                    )
                stack.append((items, i + 1))
                stack.append((v, 0))
                break
            out.append(v)


@dataclass
class Request:
    """A parsed inference request: validated columns, row count and what to compute."""

    columns: Columns
    rows: int
    methods: tuple[str, ...]
    request_id: str | None = None


# -- Open Inference Protocol --------------------------------------------------------------------
def parse_v2(payload: Any, schema: InputSchema, *, has_proba: bool) -> Request:
    if not isinstance(payload, dict):
        raise ProtocolError(
            f"the body must be a JSON object with 'inputs', got {_kind(payload)}",
            hint='{"inputs": [{"name": "COLUMN", "shape": [1], "datatype": "FP64", "data": [1.0]}, ...]}',
        )
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError(
            "'inputs' must be a non-empty list of tensors {name, shape, datatype, data}"
            + ("" if "inputs" in payload else f"; the body has keys {sorted(payload)}"),
            hint="send one tensor per column, or one 2-D tensor [rows, columns]; see GET /v2/models/{name}",
        )
    tensors: list[tuple[str, list[int], str, list[Any]]] = []
    for i, t in enumerate(inputs):
        if not isinstance(t, dict):
            raise ProtocolError(f"inputs[{i}] must be an object, got {_kind(t)}")
        name, shape, datatype, values = (
            t.get("name"),
            t.get("shape"),
            t.get("datatype"),
            t.get("data"),
        )
        where = f"input {name!r}" if isinstance(name, str) else f"inputs[{i}]"
        if not isinstance(name, str):
            raise ProtocolError(f"{where} has no 'name' (a string)")
        if not (
            isinstance(shape, list)
            and shape
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        ):
            raise ProtocolError(
                f"{where} needs 'shape', a list of non-negative integers, got {shape!r}"
            )
        if datatype not in V2_DATATYPES:
            raise ProtocolError(
                f"{where} has datatype {datatype!r}; expected one of {', '.join(sorted(V2_DATATYPES))}"
            )
        if not isinstance(values, list):
            raise ProtocolError(f"{where} needs 'data', a list of values, got {_kind(values)}")
        flat: list[Any] = []
        _flatten(values, flat, where)
        if math.prod(shape) != len(flat):
            raise ProtocolError(
                f"{where} has shape {shape} ({math.prod(shape)} values) but its data holds {len(flat)} values"
            )
        tensors.append((name, shape, datatype, flat))

    methods = _v2_outputs(payload.get("outputs"), has_proba)
    request_id = payload.get("id") if isinstance(payload.get("id"), str) else None

    names = schema.names
    if len(tensors) == 1 and len(tensors[0][1]) == 2 and tensors[0][0] not in schema.by_name:
        name, shape, datatype, flat = tensors[0]
        _rows, width = shape
        if width != len(names):
            raise ProtocolError(
                f"the 2-D input {name!r} has {width} columns; the model takes {len(names)}: {names}",
                hint="send shape [rows, columns] with the columns in this order, or one input per column",
            )
        columns_data: dict[str, list[Any]] = {n: flat[j::width] for j, n in enumerate(names)}
        if datatype != "BYTES":
            for col in schema.columns:
                if datatype not in V2_ACCEPTS[col.kind]:
                    raise SchemaViolation(
                        f"the 2-D input {name!r} has datatype {datatype}, but column {col.name!r} holds {col.kind} values",
                        column=col.name,
                        expected=f"datatype {col.v2_datatype} (or BYTES for a mixed table)",
                        found=datatype,
                        hint="send a mixed table as BYTES, or one input per column",
                    )
        arrays, n = schema.arrays(columns_data, numeric_strings=datatype == "BYTES")
        return Request(arrays, n, methods, request_id)

    given = [t[0] for t in tensors]
    if len(set(given)) != len(given):
        dup = sorted({g for g in given if given.count(g) > 1})
        raise ProtocolError(f"inputs {dup} are given more than once")
    schema.check_names(given, where="the request")
    columns: dict[str, list[Any]] = {}
    for name, shape, datatype, flat in tensors:
        col = schema.by_name[name]
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise SchemaViolation(
                f"input {name!r} has shape {shape}; a column input has shape [rows] or [rows, 1]",
                column=name,
                expected="shape [rows] or [rows, 1]",
                found=f"shape {shape}",
            )
        if datatype not in V2_ACCEPTS[col.kind]:
            raise SchemaViolation(
                f"input {name!r} has datatype {datatype}, but the column holds {col.kind} values ({col.dtype} in training)",
                column=name,
                expected=f"datatype {col.v2_datatype}",
                found=datatype,
            )
        columns[name] = flat
    arrays, n = schema.arrays(columns)
    return Request(arrays, n, methods, request_id)


def _v2_outputs(outputs: Any, has_proba: bool) -> tuple[str, ...]:
    available = OUTPUTS if has_proba else OUTPUTS[:1]
    if outputs is None:
        return ("predict",)
    if not isinstance(outputs, list) or not outputs:
        raise ProtocolError("'outputs' must be a non-empty list of {\"name\": ...}")
    chosen: list[str] = []
    for o in outputs:
        name = o.get("name") if isinstance(o, dict) else None
        if name not in available:
            raise ProtocolError(
                f"unknown output {name!r}.{did_you_mean(str(name), available)}",
                hint=f"this model has the outputs: {', '.join(available)}",
            )
        if isinstance(name, str) and name not in chosen:
            chosen.append(name)
    return tuple(chosen)


# -- MLflow scoring protocol --------------------------------------------------------------------
def parse_mlflow(payload: Any, schema: InputSchema, *, has_proba: bool) -> Request:
    if not isinstance(payload, dict):
        raise ProtocolError(
            f"the body must be a JSON object with exactly one of {list(MLFLOW_FORMATS)}, got {_kind(payload)}",
            hint='{"dataframe_split": {"columns": [...], "data": [[...]]}}',
        )
    keys = [k for k in MLFLOW_FORMATS if k in payload]
    if len(keys) != 1:
        raise ProtocolError(
            f"the body must have exactly one of {list(MLFLOW_FORMATS)}; it has {sorted(payload) or 'no keys'}",
            hint='{"dataframe_split": {"columns": [...], "data": [[...]]}}',
        )
    key = keys[0]
    params = payload.get("params") or {}
    if not isinstance(params, dict):
        raise ProtocolError("'params' must be an object")
    method = params.get("predict_method", "predict")
    if method not in (OUTPUTS if has_proba else OUTPUTS[:1]):
        raise ProtocolError(
            f"params.predict_method must be 'predict'{' or ' + repr('predict_proba') if has_proba else ''}, got {method!r}"
        )
    body = payload[key]
    columns: dict[str, list[Any]]
    if key == "dataframe_split":
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise ProtocolError(
                "'dataframe_split' must be an object with 'data' (a list of rows) and 'columns'",
                hint="pandas: df.to_dict(orient='split')",
            )
        cols = body.get("columns")
        rows = body["data"]
        if cols is None:
            columns = schema.rows_to_columns(rows)
        else:
            if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
                raise ProtocolError("'dataframe_split.columns' must be a list of column names")
            schema.check_names(cols, where="dataframe_split")
            columns = {c: [] for c in cols}
            for i, row in enumerate(rows):
                if not isinstance(row, list) or len(row) != len(cols):
                    raise SchemaViolation(
                        f"dataframe_split row {i} has {len(row) if isinstance(row, list) else _kind(row)} values; 'columns' names {len(cols)}",
                        expected=f"{len(cols)} values per row",
                        found=f"{len(row)} values" if isinstance(row, list) else _kind(row),
                    )
                for c, v in zip(cols, row, strict=True):
                    columns[c].append(v)
    elif key == "dataframe_records":
        if not isinstance(body, list):
            raise ProtocolError(
                "'dataframe_records' must be a list of objects",
                hint="pandas: df.to_dict(orient='records')",
            )
        columns = schema.rows_to_columns(body, where="record")
    else:
        if isinstance(body, dict):
            columns = {k: v if isinstance(v, list) else [v] for k, v in body.items()}
        elif isinstance(body, list):
            columns = schema.rows_to_columns(body, where="instance")
        else:
            raise ProtocolError(
                f"'{key}' must be a list of rows or an object of columns, got {_kind(body)}"
            )
    arrays, n = schema.arrays(columns)
    return Request(arrays, n, (method,))


def parse_csv(body: bytes, schema: InputSchema) -> Request:
    import pandas as pd

    try:
        frame = pd.read_csv(
            io.BytesIO(body), dtype={c.name: "str" for c in schema.columns if c.kind == "string"}
        )
    except Exception as exc:
        raise ProtocolError(f"the body is not a readable CSV table: {exc}") from exc
    X = schema.coerce_frame(frame, where="the CSV body")
    if not len(X):
        raise SchemaViolation(
            "the CSV body has no rows", expected="at least one row", found="0 rows"
        )
    return Request({c: X[c].to_numpy() for c in schema.names}, len(X), ("predict",))


def jsonable(values: np.ndarray) -> Any:
    """An output array as something orjson writes (labels as strings, numbers as numbers)."""
    if values.dtype == object or values.dtype.kind in "USO":
        return (
            values.astype(str).tolist()
            if values.dtype.kind != "O"
            else [
                v if isinstance(v, str | int | float | bool) or v is None else str(v)
                for v in values.tolist()
            ]
        )
    return values


def v2_datatype(values: np.ndarray) -> str:
    kind = values.dtype.kind
    if kind == "b":
        return "BOOL"
    if kind in "iu":
        return "INT64" if kind == "i" else "UINT64"
    if kind == "f":
        return "FP32" if values.dtype.itemsize == 4 else "FP64"
    return "BYTES"


def shape_of(values: Sequence[Any] | np.ndarray) -> list[int]:
    return [int(d) for d in np.shape(values)]


__all__ = ["ProtocolError", "Request", "parse_csv", "parse_mlflow", "parse_v2"]
