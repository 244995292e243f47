"""The one comparison of seedline: bitwise, or within ``|a - b| <= atol + rtol * |b|``.

Parity (serving, batch prediction, export), ``reproduce`` and the export checks all
compare with what is here and with the same defaults, ``DEFAULT_RTOL``/``DEFAULT_ATOL``.
``bitwise_equal`` is the strict verdict; ``compare_arrays`` reports the largest deviation
of two arrays and whether it is within tolerance; ``deviation`` walks two fitted objects.

Numerical distance between two fitted objects, for the 'within tolerance' verdict.

Two fitted estimators are walked in parallel (class, params, fitted attributes, and the
state of extension types such as scikit-learn's trees). Floating-point arrays and numbers
are compared with ``|a - b| <= atol + rtol * |b|`` (numpy's ``isclose``); everything else
(integers, strings, shapes, dtypes, structure) must be equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_RTOL = 1e-6
DEFAULT_ATOL = 1e-9


def bitwise_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Same shape, same dtype, same bytes."""
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def compare_arrays(
    got: np.ndarray, want: np.ndarray, *, rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL
) -> dict[str, Any]:
    """Bitwise? The largest absolute and relative deviation, where, and whether all are within tolerance.

    NaN equals NaN; NaN on one side only is an infinite deviation.
    """
    g, w = got.astype(np.float64), want.astype(np.float64)
    both_nan = np.isnan(g) & np.isnan(w)
    diff = np.where(both_nan, 0.0, np.abs(g - w))
    diff = np.where(np.isnan(diff), np.inf, diff)
    flat = int(np.argmax(diff)) if diff.size else 0
    where = [int(i) for i in np.unravel_index(flat, diff.shape)] if diff.size else []
    scale = np.abs(w)
    within = bool(np.all(diff <= atol + rtol * scale)) if diff.size else True
    rel = diff / np.where(scale > 0, scale, 1.0)
    return {
        "bitwise": bitwise_equal(got, want),
        "max_abs": float(diff.max()) if diff.size else 0.0,
        "max_rel": float(rel.max()) if diff.size else 0.0,
        "at": where,
        "within": within,
    }


@dataclass
class Deviation:
    """The largest deviations found, and whether everything was within tolerance."""

    max_abs: float = 0.0
    max_rel: float = 0.0
    within: bool = True
    where: str = ""
    mismatch: str | None = None  # a non-numerical difference (structure, dtype, labels)
    values_compared: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "within": self.within,
            "where": self.where,
            "mismatch": self.mismatch,
            "values_compared": self.values_compared,
        }


class _Walker:
    def __init__(self, rtol: float, atol: float) -> None:
        self.rtol, self.atol = rtol, atol
        self.d = Deviation()

    def fail(self, where: str, why: str) -> None:
        if self.d.mismatch is None:
            self.d.mismatch = f"{where or 'value'}: {why}"
        self.d.within = False

    def floats(self, a: np.ndarray, b: np.ndarray, where: str) -> None:
        a64, b64 = a.astype(np.float64, copy=False), b.astype(np.float64, copy=False)
        both_nan = np.isnan(a64) & np.isnan(b64)
        diff = np.where(both_nan, 0.0, np.abs(a64 - b64))
        if np.isnan(diff).any():
            self.fail(where, "NaN on one side only")
            return
        self.d.values_compared += int(diff.size)
        if not diff.size:
            return
        i = int(np.argmax(diff))
        worst = float(diff.flat[i])
        scale = np.abs(b64)
        rel = np.where(
            scale > 0, diff / np.where(scale > 0, scale, 1.0), np.where(diff > 0, np.inf, 0.0)
        )
        if worst > self.d.max_abs:
            self.d.max_abs, self.d.where = worst, where
        self.d.max_rel = max(self.d.max_rel, float(rel.max()))
        if not bool(np.all(diff <= self.atol + self.rtol * scale)):
            self.d.within = False

    def walk(self, a: Any, b: Any, where: str, depth: int = 0) -> None:
        if depth > 64:
            self.fail(where, "nested too deep to compare")
            return
        if type(a) is not type(b) and not (_is_number(a) and _is_number(b)):
            self.fail(where, f"type {type(a).__name__} vs {type(b).__name__}")
            return
        if isinstance(a, np.ndarray):
            if a.shape != b.shape or a.dtype != b.dtype:
                self.fail(where, f"array {a.dtype}{a.shape} vs {b.dtype}{b.shape}")
            elif a.dtype.kind in "fc":
                self.floats(a, b, where)
            elif a.dtype.fields is not None:
                for name in a.dtype.names or ():
                    self.walk(
                        np.ascontiguousarray(a[name]),
                        np.ascontiguousarray(b[name]),
                        f"{where}.{name}",
                        depth + 1,
                    )
            elif a.dtype.hasobject:
                for i, (x, y) in enumerate(
                    zip(a.ravel().tolist(), b.ravel().tolist(), strict=True)
                ):
                    self.walk(x, y, f"{where}[{i}]", depth + 1)
            elif not np.array_equal(a, b):
                self.fail(where, f"{int(np.sum(a != b))} of {a.size} values differ")
            return
        if isinstance(a, float | np.floating):
            self.floats(np.asarray([a]), np.asarray([b]), where)
            return
        if isinstance(a, dict):
            if set(a) != set(b):
                self.fail(where, f"keys differ: {sorted(map(str, set(a) ^ set(b)))}")
                return
            for k in sorted(a, key=str):
                self.walk(a[k], b[k], f"{where}.{k}" if where else str(k), depth + 1)
            return
        if isinstance(a, list | tuple):
            if len(a) != len(b):
                self.fail(where, f"length {len(a)} vs {len(b)}")
                return
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                self.walk(x, y, f"{where}[{i}]", depth + 1)
            return
        if hasattr(a, "get_params") and not isinstance(a, type):
            self.walk(_state(a), _state(b), where, depth + 1)
            return
        if a is None or isinstance(a, str | bytes | bool | int | np.integer | np.bool_ | type):
            if a != b:
                self.fail(where, f"{a!r} vs {b!r}")
            return
        if callable(a) and hasattr(a, "__qualname__"):
            if a is not b:
                self.fail(where, "different callables")
            return
        if hasattr(a, "__dict__"):
            self.walk(vars(a), vars(b), where, depth + 1)
            return
        try:
            ra, rb = a.__reduce_ex__(4), b.__reduce_ex__(4)
        except Exception:
            self.fail(where, f"cannot compare values of type {type(a).__name__}")
            return
        self.walk(tuple(ra[1:3]), tuple(rb[1:3]), where, depth + 1)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float | np.integer | np.floating) and not isinstance(x, bool)


def _state(est: Any) -> dict[str, Any]:
    return {
        k: v
        for k, v in vars(est).items()
        if not k.startswith("__") and k not in ("refit_time_", "fit_time_")
    }


def deviation(a: Any, b: Any, *, rtol: float, atol: float) -> Deviation:
    """Largest numerical deviation between ``a`` and ``b`` (estimators, arrays, containers)."""
    w = _Walker(rtol, atol)
    if hasattr(a, "tocsr") and hasattr(b, "tocsr"):
        a, b = a.toarray(), b.toarray()
    if hasattr(a, "to_numpy") and hasattr(b, "to_numpy"):
        a, b = a.to_numpy(), b.to_numpy()
    w.walk(a, b, "")
    return w.d
