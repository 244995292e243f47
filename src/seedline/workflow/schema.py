"""The input schema of a model: the columns it was trained on, their types and the categories seen.

Derived from the training features when a model is registered, shown by the server at
``/v2/models/{name}`` and enforced on every request and every chunk of a batch: a missing
column, a value of the wrong type or a shape that does not fit is a ``SchemaViolation``
that names the column, what was expected and what was found. Values are turned into
columns with the dtypes the model saw in training, so that a served row goes through the
pipeline exactly as a training row did. Unseen categories are *not* rejected here: they
follow the fitted pipeline's own policy (``handle_unknown`` of its encoders), which the
schema reports per column.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from seedline.core.errors import SeedlineError, did_you_mean

Kind = Literal["float", "integer", "boolean", "string", "datetime"]
MAX_CATEGORIES = 1000
# Open Inference Protocol datatypes accepted for each kind of column
V2_ACCEPTS: dict[str, frozenset[str]] = {
    "float": frozenset(
        {
            "FP16",
            "FP32",
            "FP64",
            "INT8",
            "INT16",
            "INT32",
            "INT64",
            "UINT8",
            "UINT16",
            "UINT32",
            "UINT64",
        }
    ),
    "integer": frozenset(
        {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
    ),
    "boolean": frozenset({"BOOL"}),
    "string": frozenset({"BYTES"}),
    "datetime": frozenset({"BYTES"}),
}
V2_DATATYPE: dict[str, str] = {
    "float": "FP64",
    "integer": "INT64",
    "boolean": "BOOL",
    "string": "BYTES",
    "datetime": "BYTES",
}
_EXPECTED: dict[str, str] = {
    "float": "a number or null",
    "integer": "an integer",
    "boolean": "true or false",
    "string": "a string or null",
    "datetime": "an ISO 8601 date-time string",
}


class SchemaViolation(SeedlineError):
    """Raised when input data does not fit a model's input schema (a column missing, a wrong type, a bad shape)."""

    def __init__(
        self,
        message: str,
        *,
        column: str | None = None,
        expected: str | None = None,
        found: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.column = column
        self.expected = expected
        self.found = found

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": self.message,
            "column": self.column,
            "expected": self.expected,
            "found": self.found,
            "hint": self.hint,
        }


# an integer column holds int64; a float column float64: values beyond them are bad input
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_FLOAT_MAX = int(np.finfo(np.float64).max)
_FLOAT_MIN = -_FLOAT_MAX


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:20] + "..."
        if (isinstance(value, int) and not _INT64_MIN <= value <= _INT64_MAX) or abs(
            value
        ) >= 2.0**63:
            return f"the number {shown} (beyond the 64-bit integer range)"
        return f"the number {shown}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


@dataclass(frozen=True)
class ColumnSchema:
    """One input column: its kind, the pandas dtype of training, missing values and categories seen."""

    name: str
    kind: Kind
    dtype: str
    nullable: bool
    categories: list[str] | None = None
    categories_total: int | None = None
    unseen: str | None = None  # the fitted encoder's handle_unknown for this column, if any

    @property
    def v2_datatype(self) -> str:
        return V2_DATATYPE[self.kind]

    @property
    def expected(self) -> str:
        return f"{_EXPECTED[self.kind]} ({self.dtype} in training)"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "dtype": self.dtype,
            "datatype": self.v2_datatype,
            "nullable": self.nullable,
        }
        if self.categories is not None:
            out["categories"] = self.categories
            out["categories_total"] = self.categories_total
        if self.unseen is not None:
            out["unseen_categories"] = self.unseen
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnSchema:
        return cls(
            name=str(data["name"]),
            kind=data["kind"],
            dtype=str(data["dtype"]),
            nullable=bool(data.get("nullable", True)),
            categories=list(data["categories"]) if data.get("categories") is not None else None,
            categories_total=data.get("categories_total"),
            unseen=data.get("unseen_categories"),
        )

    # -- coercion -------------------------------------------------------------------------------
    def coerce(self, values: Sequence[Any], *, numeric_strings: bool = False) -> np.ndarray:
        """The values as a 1-D array this column can hold; a SchemaViolation names the first bad one.

        ``numeric_strings`` accepts "3.5" for a number (Open Inference Protocol BYTES tensors
        and CSV carry every value as text).
        """
        kind = self.kind
        if kind == "float":
            out = np.empty(len(values), dtype=np.float64)
            for i, v in enumerate(values):
                if v is None:
                    out[i] = math.nan
                elif isinstance(v, int | float) and not isinstance(v, bool):
                    if isinstance(v, int) and not _FLOAT_MIN <= v <= _FLOAT_MAX:
                        self._bad(v, i)
                    out[i] = v
                elif numeric_strings and isinstance(v, str):
                    out[i] = self._parse_number(v, i)
                else:
                    self._bad(v, i)
            return out
        if kind == "integer":
            ints: list[Any] = []
            missing = False
            for i, v in enumerate(values):
                if numeric_strings and isinstance(v, str):
                    v = self._parse_number(v, i)
                if v is None:
                    missing = True
                    ints.append(math.nan)
                elif (
                    isinstance(v, int) and not isinstance(v, bool) and _INT64_MIN <= v <= _INT64_MAX
                ):
                    ints.append(v)
                elif isinstance(v, float) and v.is_integer() and _INT64_MIN <= v < 2.0**63:
                    ints.append(int(v))
                else:
                    self._bad(v, i)
            # a missing integer can only be NaN, in a float column, as pandas reads it from a file
            return np.asarray(ints, dtype=np.float64 if missing else np.int64)
        if kind == "boolean":
            flags: list[Any] = []
            for i, v in enumerate(values):
                if isinstance(v, bool):
                    flags.append(v)
                elif v is None and self.nullable:
                    flags.append(None)
                else:
                    self._bad(v, i)
            return np.asarray(flags, dtype=object if None in flags else np.bool_)
        # strings and date-times travel as text
        texts = np.empty(len(values), dtype=object)
        for i, v in enumerate(values):
            if v is None or isinstance(v, str):
                texts[i] = v
            else:
                self._bad(v, i)
        return texts

    def _parse_number(self, text: str, row: int) -> Any:
        stripped = text.strip()
        if stripped.lower() in ("", "nan", "null", "none", "na"):
            return None
        try:
            return (
                int(stripped)
                if self.kind == "integer" and stripped.lstrip("+-").isdigit()
                else float(stripped)
            )
        except ValueError:
            self._bad(text, row)

    def _bad(self, value: Any, row: int) -> None:
        raise SchemaViolation(
            f"column {self.name!r} expects {self.expected}, got {_describe(value)} at row {row}",
            column=self.name,
            expected=self.expected,
            found=_describe(value),
        )


@dataclass
class InputSchema:
    """The model's input columns, in training order."""

    columns: list[ColumnSchema]
    by_name: dict[str, ColumnSchema] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.by_name = {c.name: c for c in self.columns}
        self._dtypes: dict[str, Any] = {}

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def to_dict(self) -> dict[str, Any]:
        return {"columns": [c.to_dict() for c in self.columns]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSchema:
        return cls([ColumnSchema.from_dict(c) for c in data["columns"]])

    # -- derivation -----------------------------------------------------------------------------
    @classmethod
    def derive(cls, frame: Any) -> InputSchema:
        """The schema of a training feature table (a pandas DataFrame)."""
        import pandas as pd
        from pandas.api import types as pt

        columns: list[ColumnSchema] = []
        for name in frame.columns:
            s = frame[name]
            dtype = s.dtype
            kind: Kind
            if pt.is_bool_dtype(dtype):
                kind = "boolean"
            elif pt.is_integer_dtype(dtype):
                kind = "integer"
            elif pt.is_float_dtype(dtype):
                kind = "float"
            elif pt.is_datetime64_any_dtype(dtype):
                kind = "datetime"
            else:
                kind = "string"
            categories: list[str] | None = None
            total: int | None = None
            if kind == "string":
                seen = sorted({str(v) for v in s.dropna().unique()})
                total = len(seen)
                categories = seen[:MAX_CATEGORIES]
            dtype_name = "category" if isinstance(dtype, pd.CategoricalDtype) else str(dtype)
            columns.append(
                ColumnSchema(
                    name=str(name),
                    kind=kind,
                    dtype=dtype_name,
                    nullable=bool(s.isna().any()),
                    categories=categories,
                    categories_total=total,
                )
            )
        return cls(columns)

    def with_unseen_policies(self, model: Any) -> InputSchema:
        """A copy that says, per column, what the fitted pipeline does with an unseen category."""
        policies = unseen_category_policies(model, self.names)
        return InputSchema(
            [
                ColumnSchema(**{**c.__dict__, "unseen": policies.get(c.name, c.unseen)})
                if c.kind == "string"
                else c
                for c in self.columns
            ]
        )

    # -- enforcement ----------------------------------------------------------------------------
    def check_names(self, given: Sequence[str], *, where: str = "input") -> None:
        """Every schema column must be there and nothing else; the error names the first problem."""
        given_set = set(given)
        missing = [c for c in self.names if c not in given_set]
        if missing:
            col = self.by_name[missing[0]]
            raise SchemaViolation(
                f"{where} lacks column(s) {missing}: the model was trained on {self.names}",
                column=missing[0],
                expected=f"column {col.name!r} holding {col.expected}",
                found="no such column",
                hint=f"send every column; {col.name!r} may be null where the model tolerates missing values",
            )
        known = set(self.names)
        extra = [c for c in given if c not in known]
        if extra:
            raise SchemaViolation(
                f"{where} has column(s) the model does not know: {extra}.{did_you_mean(str(extra[0]), self.names)}",
                column=str(extra[0]),
                expected=f"only the columns {self.names}",
                found=f"column {extra[0]!r}",
                hint="remove the extra columns, or check the spelling",
            )

    def arrays(
        self, data: Mapping[str, Sequence[Any]], *, numeric_strings: bool = False
    ) -> tuple[dict[str, np.ndarray], int]:
        """Validate ``column -> values`` and turn each into an array; returns them and the row count."""
        self.check_names(list(data))
        n: int | None = None
        out: dict[str, np.ndarray] = {}
        for col in self.columns:
            values = data[col.name]
            if not isinstance(values, list | tuple):
                raise SchemaViolation(
                    f"column {col.name!r} must be a list of values, got {_describe(values)}",
                    column=col.name,
                    expected="a list with one value per row",
                    found=_describe(values),
                )
            if n is None:
                n = len(values)
            elif len(values) != n:
                raise SchemaViolation(
                    f"column {col.name!r} has {len(values)} values but {self.columns[0].name!r} has {n}",
                    column=col.name,
                    expected=f"{n} values",
                    found=f"{len(values)} values",
                    hint="every column needs one value per row",
                )
            out[col.name] = col.coerce(values, numeric_strings=numeric_strings)
        if not n:
            raise SchemaViolation(
                "the input has no rows",
                expected="at least one row",
                found="0 rows",
            )
        return out, n

    def rows_to_columns(self, rows: Sequence[Any], *, where: str = "row") -> dict[str, list[Any]]:
        """Rows as lists in schema order, or as objects keyed by column, into ``column -> values``."""
        names = self.names
        cols: dict[str, list[Any]] = {name: [] for name in names}
        seen: set[str] = set()
        for i, row in enumerate(rows):
            if isinstance(row, dict):
                for key in row:
                    if key not in cols:
                        raise SchemaViolation(
                            f"{where} {i} has a column the model does not know: {key!r}.{did_you_mean(str(key), names)}",
                            column=str(key),
                            expected=f"only the columns {names}",
                            found=f"column {key!r}",
                        )
                seen.update(row)
                for name in names:
                    cols[name].append(row.get(name))
            elif isinstance(row, list | tuple):
                if len(row) != len(names):
                    raise SchemaViolation(
                        f"{where} {i} has {len(row)} values, the model takes {len(names)} columns {names}",
                        expected=f"{len(names)} values in the order {names}",
                        found=f"{len(row)} values",
                    )
                for name, value in zip(names, row, strict=True):
                    cols[name].append(value)
                seen.update(names)
            else:
                raise SchemaViolation(
                    f"{where} {i} is {_describe(row)}; expected an object keyed by column or a list of values",
                    expected="an object or a list",
                    found=_describe(row),
                )
        missing = [n for n in names if n not in seen]
        if rows and missing:
            self.check_names([n for n in names if n in seen], where="input")
        return cols

    def frame(self, arrays: Mapping[str, np.ndarray]) -> Any:
        """A pandas DataFrame of validated arrays, with the dtypes of training (built once, no copies)."""
        import pandas as pd

        cols: dict[str, Any] = {}
        for col in self.columns:
            values = arrays[col.name]
            if col.kind == "string":
                cols[col.name] = pd.array(values, dtype=self._pandas_dtype(col))
            elif col.kind == "datetime":
                cols[col.name] = pd.to_datetime(pd.Series(values, dtype=object), errors="raise")
            else:
                cols[col.name] = values
        return pd.DataFrame(cols, copy=False)

    def _pandas_dtype(self, col: ColumnSchema) -> Any:
        dtype = self._dtypes.get(col.name)
        if dtype is None:
            from pandas.api.types import pandas_dtype

            try:
                dtype = pandas_dtype(col.dtype)
            except TypeError:
                dtype = np.dtype(object)
            if isinstance(dtype, np.dtype) and dtype.kind == "U":
                dtype = np.dtype(object)
            self._dtypes[col.name] = dtype
        return dtype

    def coerce_frame(self, frame: Any, *, where: str = "input", first_row: int = 0) -> Any:
        """A read table (a chunk of a CSV or Parquet file) checked and cast to the training dtypes."""
        import pandas as pd

        # extra columns (an id, the target) are allowed in a file and left alone
        self.check_names([str(c) for c in frame.columns if str(c) in self.by_name], where=where)
        out: dict[str, Any] = {}
        for col in self.columns:
            s = frame[col.name]
            if col.kind in ("float", "integer"):
                if not pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(
                    s.dtype
                ):
                    num = pd.to_numeric(s, errors="coerce")
                    bad = num.isna() & s.notna()
                    if bad.any():
                        i = int(np.argmax(bad.to_numpy()))
                        raise SchemaViolation(
                            f"{where}: column {col.name!r} expects {col.expected}, got {_describe(s.iloc[i])} at row {first_row + i}",
                            column=col.name,
                            expected=col.expected,
                            found=_describe(s.iloc[i]),
                        )
                    s = num
                if col.kind == "integer":
                    if s.isna().any():
                        s = s.astype(np.float64)
                    else:
                        as_int = s.astype(np.int64)
                        if (as_int != s).any():
                            i = int(np.argmax((as_int != s).to_numpy()))
                            raise SchemaViolation(
                                f"{where}: column {col.name!r} expects {col.expected}, got {_describe(s.iloc[i])} at row {first_row + i}",
                                column=col.name,
                                expected=col.expected,
                                found=_describe(s.iloc[i]),
                            )
                        s = as_int
                else:
                    s = s.astype(np.float64)
            elif col.kind == "string":
                if pd.api.types.is_numeric_dtype(s.dtype) and s.notna().any():
                    i = int(np.argmax(s.notna().to_numpy()))
                    raise SchemaViolation(
                        f"{where}: column {col.name!r} expects {col.expected}, got {_describe(s.iloc[i].item())} at row {first_row + i}",
                        column=col.name,
                        expected=col.expected,
                        found=f"numbers ({s.dtype})",
                        hint="the column holds numbers; it must hold text, as in training",
                    )
                s = s.astype(self._pandas_dtype(col))
            elif col.kind == "boolean":
                if not pd.api.types.is_bool_dtype(s.dtype):
                    raise SchemaViolation(
                        f"{where}: column {col.name!r} expects {col.expected}, got values of type {s.dtype}",
                        column=col.name,
                        expected=col.expected,
                        found=str(s.dtype),
                    )
            elif col.kind == "datetime":
                s = pd.to_datetime(s, errors="raise")
            out[col.name] = s.reset_index(drop=True)
        return pd.DataFrame(out, copy=False)


def _fitted_children(est: Any) -> list[tuple[str, Any, Any]]:
    """(name, fitted sub-estimator, columns it received or None) of a fitted composite."""
    out: list[tuple[str, Any, Any]] = []
    for name, sub in getattr(est, "steps", None) or []:
        out.append((str(name), sub, None))
    for item in getattr(est, "transformers_", None) or []:
        name, sub, cols = item[0], item[1], item[2]
        out.append((str(name), sub, cols))
    for name, sub in getattr(est, "transformer_list", None) or []:
        out.append((str(name), sub, None))
    return out


def unseen_category_policies(model: Any, names: Sequence[str]) -> dict[str, str]:
    """Column -> ``handle_unknown`` of the fitted encoder that sees it (as far as columns can be traced)."""
    found: dict[str, str] = {}

    def visit(est: Any, cols: list[str] | None, depth: int) -> None:
        if depth > 12 or est is None or isinstance(est, str):
            return
        policy = getattr(est, "handle_unknown", None)
        if isinstance(policy, str):
            for c in cols if cols is not None else list(names):
                found.setdefault(c, policy)
        for _name, sub, sub_cols in _fitted_children(est):
            chosen = cols
            if sub_cols is not None:
                try:
                    chosen = [
                        names[int(c)] if isinstance(c, int | np.integer) else str(c)
                        for c in list(sub_cols)
                    ]
                except (TypeError, IndexError, ValueError):
                    chosen = cols
            visit(sub, chosen, depth + 1)

    visit(model, None, 0)
    return found


__all__ = ["ColumnSchema", "InputSchema", "SchemaViolation", "unseen_category_policies"]
