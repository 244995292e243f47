"""``seedline inspect``: what each step of a run did, and where one step's output differs between two runs.

The outputs are recomputed from the run's stored fitted model on its training rows
(rebuilt from the manifest: same data, same seeded split), and each recomputed output is
checked against the fingerprint the run recorded, so what is shown is what the run made.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seedline.core.errors import SeedlineError, did_you_mean
from seedline.core.fingerprint import fingerprint_array
from seedline.core.spec import Spec
from seedline.records.manifest import Manifest
from seedline.records.tracking import Store

# an attribute with more values than this is summarised (shape, dtype) rather than shown
_SHOW_VALUES = 30
# summary statistics are computed for at most this many columns of a step's output
_STATS_COLUMNS = 50


@dataclass
class StepView:
    """One step of a run: its fitted attributes and its output on the training rows."""

    name: str
    cls: str
    fitted: str | None
    recorded_output: str | None
    output: str | None
    shape: list[int] | None
    columns: list[str]
    dtypes: dict[str, str]
    missing: dict[str, int]
    stats: dict[str, dict[str, float | None]]
    head: list[list[Any]]
    attributes: dict[str, str]
    notes: list[str] = field(default_factory=list)

    @property
    def output_matches(self) -> bool | None:
        """Whether the recomputed output has the fingerprint the run recorded (None: nothing recorded)."""
        if self.recorded_output is None or self.output is None:
            return None
        return self.recorded_output == self.output

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "class": self.cls,
            "fitted": self.fitted,
            "recorded_output": self.recorded_output,
            "output": self.output,
            "output_matches": self.output_matches,
            "shape": self.shape,
            "columns": self.columns,
            "dtypes": self.dtypes,
            "missing": self.missing,
            "stats": self.stats,
            "head": self.head,
            "attributes": self.attributes,
            "notes": self.notes,
        }


@dataclass
class CellDifference:
    """Where one step's output first differs between two runs."""

    step: str
    a: str
    b: str
    shape_a: list[int] | None
    shape_b: list[int] | None
    column: str | None = None
    row: int | None = None
    value_a: Any = None
    value_b: Any = None
    differing_cells: dict[str, int] = field(default_factory=dict)
    columns_only_in_a: list[str] = field(default_factory=list)
    columns_only_in_b: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return (
            self.shape_a == self.shape_b
            and not self.differing_cells
            and not self.columns_only_in_a
            and not self.columns_only_in_b
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "a": self.a,
            "b": self.b,
            "identical": self.identical,
            "shape_a": self.shape_a,
            "shape_b": self.shape_b,
            "first_difference": None
            if self.column is None
            else {
                "column": self.column,
                "row": self.row,
                "a": self.value_a,
                "b": self.value_b,
            },
            "differing_cells": self.differing_cells,
            "columns_only_in_a": self.columns_only_in_a,
            "columns_only_in_b": self.columns_only_in_b,
        }


@dataclass
class _Outputs:
    manifest: Manifest
    steps: list[
        tuple[str, Any, Any]
    ]  # name, fitted estimator, output on the training rows (or predictions)
    columns: dict[str, list[str]]


def _load(store: Store, ref: str, upto: str | None) -> _Outputs:
    from seedline.execution.persist import load_model
    from seedline.execution.runner import prepare

    manifest = store.manifest(ref)
    if manifest.status != "succeeded":
        raise SeedlineError(
            f"run {manifest.run_id} has status {manifest.status!r}: only a succeeded run has a fitted model to inspect"
        )
    model = load_model(store.model_bytes(manifest.run_id), trusted_own=True)
    names = [n for n, _ in model.steps]
    if upto is not None and upto not in names:
        raise SeedlineError(
            f"run {manifest.run_id} has no step {upto!r}.{did_you_mean(upto, names)}",
            hint="steps: " + ", ".join(names),
        )
    p = prepare(Spec.from_dict(manifest.spec), project_root=store.project_root)
    Xt: Any = p.X_train
    out: list[tuple[str, Any, Any]] = []
    columns: dict[str, list[str]] = {}
    for i, (name, est) in enumerate(model.steps):
        last = i == len(model.steps) - 1
        if est is None or est == "passthrough":
            out.append((name, est, Xt))
        elif last:
            out.append((name, est, np.asarray(est.predict(Xt))))
        else:
            Xt = est.transform(Xt)
            out.append((name, est, Xt))
        columns[name] = _feature_names(model, i, out[-1][2], last)
        if name == upto:
            break
    return _Outputs(manifest=manifest, steps=out, columns=columns)


def _feature_names(model: Any, i: int, output: Any, last: bool) -> list[str]:
    if last:
        return ["prediction"]
    try:
        return [str(c) for c in model[: i + 1].get_feature_names_out()]
    except Exception:  # not every transformer can name its outputs
        width = output.shape[1] if getattr(output, "ndim", 1) > 1 else 1
        return [f"x{j}" for j in range(width)]


def _as_frame(output: Any, columns: list[str]) -> Any:
    import pandas as pd

    if isinstance(output, pd.DataFrame):
        return output.reset_index(drop=True)
    if hasattr(output, "toarray"):  # scipy sparse
        output = output.toarray()
    arr = np.asarray(output)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    return pd.DataFrame(
        arr, columns=columns[: arr.shape[1]] if len(columns) >= arr.shape[1] else None
    )


def _plain(v: Any) -> Any:
    """A JSON-able scalar for a table cell."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None if np.isnan(v) else str(v)
    return v if isinstance(v, int | float | str | bool) or v is None else str(v)


def describe_attribute(value: Any) -> str:
    """A fitted attribute in readable form: small values in full, large ones summarised."""
    if isinstance(value, np.generic):
        value = value.item()
    if hasattr(value, "get_params"):
        return f"fitted {type(value).__name__}"
    if isinstance(value, list | tuple) and value and all(hasattr(x, "get_params") for x in value):
        return f"{len(value)} fitted {type(value[0]).__name__}"
    if isinstance(value, list | tuple) and any(isinstance(x, np.ndarray) for x in value):
        return "[" + ", ".join(describe_attribute(x) for x in value) + "]"
    if isinstance(value, np.ndarray):
        if value.size > _SHOW_VALUES:
            return f"array of shape {list(value.shape)}, dtype {value.dtype}"
        with np.printoptions(precision=6, suppress=True, threshold=_SHOW_VALUES):
            return np.array2string(value, separator=", ").replace("\n", "")
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def fitted_attributes(est: Any, prefix: str = "") -> dict[str, str]:
    """Public fitted attributes (``name_``) of an estimator and of the estimators it holds, by path."""
    out: dict[str, str] = {}
    if est is None or isinstance(est, str):
        return out
    attrs = dict(vars(est))
    # fitted values that estimators compute on access rather than store
    for key in ("feature_importances_",):
        with contextlib.suppress(Exception):
            attrs[key] = getattr(est, key)
    for key, value in sorted(attrs.items()):
        if key.endswith("_") and not key.startswith("_") and not key.endswith("__"):
            out[f"{prefix}{key}"] = describe_attribute(value)
    # fitted parts of a ColumnTransformer or a nested Pipeline
    for name, sub in getattr(est, "named_transformers_", {}).items():
        out.update(fitted_attributes(sub, f"{prefix}{name}."))
    for name, sub in getattr(est, "steps", []) if hasattr(est, "named_steps") else []:
        out.update(fitted_attributes(sub, f"{prefix}{name}."))
    return out


def _view(
    name: str, est: Any, output: Any, columns: list[str], record: Any, rows: int, last: bool
) -> StepView:
    frame = _as_frame(output, columns)
    numeric = frame.select_dtypes("number")
    stats: dict[str, dict[str, float | None]] = {}
    for col in list(numeric.columns)[:_STATS_COLUMNS]:
        s = numeric[col].astype("float64")
        stats[str(col)] = {
            k: _plain(v)
            for k, v in {
                "mean": s.mean(),
                "std": s.std(ddof=0),
                "min": s.min(),
                "max": s.max(),
            }.items()
        }
    output_fp = None if last else fingerprint_array(output, kind="output")
    view = StepView(
        name=name,
        cls=f"{type(est).__module__}.{type(est).__qualname__}"
        if est is not None
        else "passthrough",
        fitted=record.fitted if record is not None else None,
        recorded_output=record.output if record is not None else None,
        output=output_fp,
        shape=[int(x) for x in getattr(output, "shape", (len(frame),))],
        columns=[str(c) for c in frame.columns],
        dtypes={str(c): str(t) for c, t in frame.dtypes.items()},
        missing={str(c): int(n) for c, n in frame.isna().sum().items() if n},
        stats=stats,
        head=[[_plain(v) for v in row] for row in frame.head(rows).itertuples(index=False)],
        attributes=fitted_attributes(est),
    )
    if view.output_matches is False:
        view.notes.append(
            "this output, recomputed with transform(), differs from the one the run recorded while "
            "fitting (fit_transform): the step's fit_transform is not fit().transform() on the same rows"
        )
    if view.recorded_output is None and not last:
        view.notes.append("the run recorded no output fingerprint for this step")
    if last:
        view.notes.append("final step: the output shown is its predictions on the training rows")
    return view


def inspect_run(
    store: Store, ref: str, *, step: str | None = None, rows: int = 5
) -> list[StepView]:
    """Every step of a run (or the one named ``step``), recomputed from its stored model."""
    outs = _load(store, ref, step)
    records = {s.name: s for s in outs.manifest.steps}
    n = len(outs.manifest.steps)
    views = [
        _view(name, est, output, outs.columns[name], records.get(name), rows, i == n - 1)
        for i, (name, est, output) in enumerate(outs.steps)
    ]
    return [v for v in views if step is None or v.name == step]


def compare_step(store: Store, ref_a: str, ref_b: str, step: str) -> CellDifference:
    """One step's output in two runs, column by column: the first column and row that differ."""
    a, b = _load(store, ref_a, step), _load(store, ref_b, step)
    out_a, out_b = a.steps[-1][2], b.steps[-1][2]
    fa = _as_frame(out_a, a.columns[step])
    fb = _as_frame(out_b, b.columns[step])
    result = CellDifference(
        step=step,
        a=a.manifest.run_id,
        b=b.manifest.run_id,
        shape_a=[int(x) for x in getattr(out_a, "shape", (len(fa),))],
        shape_b=[int(x) for x in getattr(out_b, "shape", (len(fb),))],
        columns_only_in_a=[str(c) for c in fa.columns if c not in fb.columns],
        columns_only_in_b=[str(c) for c in fb.columns if c not in fa.columns],
    )
    n = min(len(fa), len(fb))
    for col in [c for c in fa.columns if c in fb.columns]:
        va, vb = fa[col].to_numpy()[:n], fb[col].to_numpy()[:n]
        differs = ~_same(va, vb)
        count = int(differs.sum()) + abs(len(fa) - len(fb))
        if count:
            result.differing_cells[str(col)] = count
            if result.column is None and differs.any():
                row = int(np.argmax(differs))
                result.column, result.row = str(col), row
                result.value_a, result.value_b = _plain(va[row]), _plain(vb[row])
    return result


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise equality where two missing values count as equal."""
    import pandas as pd

    eq = np.asarray(a == b, dtype=bool)
    return eq | (np.asarray(pd.isna(a), dtype=bool) & np.asarray(pd.isna(b), dtype=bool))
