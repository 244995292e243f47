"""Determinism switches of libraries whose estimators need more than a seed: LightGBM and XGBoost.

A seed alone does not make LightGBM bitwise repeatable: its histogram construction must be
pinned (``force_row_wise`` or ``force_col_wise``) and ``deterministic=True`` set. XGBoost is
deterministic on the CPU with a seed and a fixed thread count. Values the spec sets are kept;
values it leaves unset are filled, and everything filled is recorded in the manifest.
"""

from __future__ import annotations

from typing import Any

from seedline.core.seeding import is_frozen


def _library(est: Any) -> str:
    return type(est).__module__.split(".")[0]


def _wanted(est: Any, threads: int) -> dict[str, Any]:
    """The switches ``est`` still needs (none for other libraries, none the spec already set)."""
    lib = _library(est)
    params = est.get_params(deep=False)
    fill: dict[str, Any] = {}
    if lib == "lightgbm":
        if params.get("deterministic") is None:
            fill["deterministic"] = True
        if params.get("force_row_wise") is None and params.get("force_col_wise") is None:
            fill["force_row_wise"] = True
        if params.get("n_jobs") in (None, -1):
            fill["n_jobs"] = threads
        if params.get("verbose") is None:
            fill["verbose"] = -1  # LightGBM prints a warning per fit otherwise
    elif lib == "xgboost" and params.get("n_jobs") in (None, -1):
        fill["n_jobs"] = threads
    return fill


def apply_library_controls(pipeline: Any, threads: int) -> dict[str, dict[str, Any]]:
    """Fill LightGBM's and XGBoost's determinism switches; returns ``{param path: {name: value}}``."""
    found: list[tuple[str, Any]] = [("", pipeline)]
    params = pipeline.get_params(deep=True)
    frozen = tuple(f"{k}__" for k, v in params.items() if is_frozen(v))
    found += [
        (key, v)
        for key, v in params.items()
        if hasattr(v, "get_params")
        and not isinstance(v, type)
        and not key.startswith(frozen)
        and not is_frozen(v)
    ]
    record: dict[str, dict[str, Any]] = {}
    for key, est in found:
        fill = _wanted(est, threads)
        if not fill:
            continue
        if key:
            pipeline.set_params(**{f"{key}__{k}": v for k, v in fill.items()})
        else:
            est.set_params(**fill)
        record[key or "pipeline"] = fill
    return record


def controls_missing(est: Any) -> list[str]:
    """For ``seedline check``: switches an estimator lacks for bitwise repeatability (explicitly turned off)."""
    params = est.get_params(deep=False)
    if _library(est) == "lightgbm":
        out = []
        if params.get("deterministic") is False:
            out.append(
                "LightGBM's deterministic=False: set deterministic: true (or leave it unset)"
            )
        if params.get("force_row_wise") is False and params.get("force_col_wise") in (None, False):
            out.append(
                "LightGBM picks row- or column-wise histograms by timing: set force_row_wise: true"
            )
        return out
    return []
