"""Compiling a spec into a plain scikit-learn ``Pipeline`` (no seedline class inside)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from seedline.core.errors import SpecError, did_you_mean
from seedline.core.spec import ColumnGroupSpec, MetricSpec, Spec, StepSpec


def resolve_class(path: str, where: str) -> type:
    """Import ``package.module.Class``; errors suggest the closest existing names."""
    module_name, _, attr = path.rpartition(".")
    module = _import_module(module_name, path, where)
    obj = getattr(module, attr, None)
    if obj is None:
        public = [
            n
            for n in dir(module)
            if not n.startswith("_") and isinstance(getattr(module, n, None), type)
        ]
        raise SpecError(
            f"{where}: module {module_name!r} has no class {attr!r}.{did_you_mean(attr, public)}",
            path=where,
        )
    if not isinstance(obj, type):
        raise SpecError(f"{where}: {path!r} is a {type(obj).__name__}, not a class", path=where)
    return obj


def resolve_function(path: str, where: str) -> Callable[..., Any]:
    """Import a function named in a spec (``{function: numpy.log1p}``, a custom metric).

    A spec or manifest can come from anyone, so only plain Python functions and NumPy /
    SciPy ufuncs are accepted, and nothing from Python's standard library (``os.system``,
    ``subprocess.run``): those are never called from a spec.
    """
    import numpy as np

    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise SpecError(
            f"{where}: function {path!r} must be a full import path such as 'numpy.log1p'",
            path=where,
        )
    top = module_name.split(".")[0]
    if top in sys.stdlib_module_names or top == "builtins":
        raise SpecError(
            f"{where}: {path!r} comes from Python's standard library; a spec never calls those",
            path=where,
            hint="use a NumPy function ('numpy.log1p') or write the function in your project or library",
        )
    module = _import_module(module_name, path, where)
    obj = getattr(module, attr, None)
    if obj is None:
        public = [
            n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n, None))
        ]
        raise SpecError(
            f"{where}: module {module_name!r} has no function {attr!r}.{did_you_mean(attr, public)}",
            path=where,
        )
    if isinstance(obj, np.ufunc) and top in ("numpy", "scipy"):
        return obj
    if isinstance(obj, type) or not isinstance(obj, types.FunctionType):
        raise SpecError(
            f"{where}: {path!r} is a {type(obj).__name__}, not a Python function or a NumPy ufunc",
            path=where,
            hint="classes are built with 'class:'; 'function:' names a function to pass as a value",
        )
    return obj


def _import_module(module_name: str, path: str, where: str) -> Any:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        parent = module_name.rpartition(".")[0]
        options: list[str] = []
        if parent:
            try:
                pkg = importlib.import_module(parent)
                options = [m.name for m in pkgutil.iter_modules(getattr(pkg, "__path__", []))]
                options = [f"{parent}.{o}" for o in options if not o.startswith("_")]
            except ImportError:
                options = []
        raise SpecError(
            f"{where}: cannot import module {module_name!r} for class {path!r} ({exc}).{did_you_mean(module_name, options)}",
            path=where,
        ) from None
    except Exception as exc:
        raise SpecError(
            f"{where}: importing {module_name!r} failed: {type(exc).__name__}: {exc}", path=where
        ) from exc
    return module


def _accepted_params(cls: type) -> set[str]:
    """The parameter names a class takes; empty (anything goes) when it takes ``**kwargs``.

    LightGBM and XGBoost pass unknown keyword arguments on to their engines, so only the
    estimator itself can judge them.
    """
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return set()
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return set()
    return {n for n, p in sig.parameters.items() if n != "self" and p.kind != p.VAR_POSITIONAL}


# The kinds of object a spec may build. A spec or manifest can come from anyone (a manifest file
# handed to ``reproduce``), so only classes with scikit-learn's estimator interface are ever
# called; a later function syntax adds its own kind here rather than loosening this check.
BUILDABLE_KINDS = ("estimator",)


def is_estimator_class(obj: Any) -> bool:
    """A class with scikit-learn's estimator interface (``fit`` and ``get_params``)."""
    return (
        isinstance(obj, type)
        and callable(getattr(obj, "fit", None))
        and callable(getattr(obj, "get_params", None))
    )


def check_buildable(cls: type, path: str, where: str) -> None:
    """Refuse, before calling it, any class that is not an estimator: ``subprocess.Popen`` must never run."""
    if is_estimator_class(cls):
        return
    missing = [m for m in ("fit", "get_params") if not callable(getattr(cls, m, None))]
    raise SpecError(
        f"{where}: {path!r} is not a scikit-learn estimator (it has no {' and no '.join(missing)}); "
        "a spec may only build estimators",
        path=where,
        hint="name an estimator class (a subclass of sklearn.base.BaseEstimator, or any class with "
        "fit and get_params); other callables are never called from a spec or a manifest",
    )


def _build(cls_path: str, params: dict[str, Any], where: str) -> Any:
    cls = resolve_class(cls_path, where)
    check_buildable(cls, cls_path, where)
    accepted = _accepted_params(cls)
    if hasattr(cls, "get_params") and accepted:
        for key in params:
            if key not in accepted:
                raise SpecError(
                    f"{where}: {cls.__name__} has no parameter {key!r}.{did_you_mean(key, accepted)}",
                    path=f"{where}.params.{key}",
                    hint="valid parameters: " + ", ".join(sorted(accepted)),
                )
    built = {k: _param_value(v, f"{where}.params.{k}") for k, v in params.items()}
    try:
        return cls(**built)
    except Exception as exc:
        raise SpecError(
            f"{where}: {cls.__name__}({built}) failed: {type(exc).__name__}: {exc}", path=where
        ) from exc


def _param_value(value: Any, where: str) -> Any:
    """A param that is a mapping with 'class' is a nested estimator; lists may hold them too."""
    if isinstance(value, dict) and "class" in value:
        extra = set(value) - {"class", "params"}
        if extra:
            raise SpecError(
                f"{where}: a nested estimator takes only 'class' and 'params', found {sorted(extra)}",
                path=where,
            )
        return _build(value["class"], dict(value.get("params") or {}), where)
    if isinstance(value, dict) and "function" in value:
        if set(value) != {"function"}:
            raise SpecError(
                f"{where}: a function value takes only 'function', found {sorted(value)}",
                path=where,
            )
        return resolve_function(value["function"], where)
    if isinstance(value, list):
        return [_param_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def function_modules(pipeline: Any, metrics: list[str | MetricSpec]) -> set[str]:
    """Modules of the Python functions a pipeline's steps and metrics were given (their code is recorded)."""
    found: set[str] = set()
    for est in [pipeline, *(v for v in pipeline.get_params(deep=True).values())]:
        if hasattr(est, "get_params") and not isinstance(est, type):
            for v in est.get_params(deep=False).values():
                if isinstance(v, types.FunctionType):
                    found.add(v.__module__)
    found |= {m.function.rpartition(".")[0] for m in metrics if not isinstance(m, str)}
    return found


def _select_by_dtype(X: pd.DataFrame, kinds: list[str]) -> list[str]:
    from pandas.api import types as pt

    tests: dict[str, Callable[[Any], bool]] = {
        "number": lambda s: pt.is_numeric_dtype(s) and not pt.is_bool_dtype(s),
        "integer": lambda s: pt.is_integer_dtype(s) and not pt.is_bool_dtype(s),
        "float": pt.is_float_dtype,
        "string": lambda s: pt.is_string_dtype(s) or s.dtype == object,
        "category": lambda s: isinstance(s.dtype, pd.CategoricalDtype),
        "bool": pt.is_bool_dtype,
        "datetime": pt.is_datetime64_any_dtype,
    }
    columns: dict[str, Any] = {str(c): X[c] for c in X.columns}
    return [name for name, col in columns.items() if any(tests[k](col) for k in kinds)]


def _select_by_function(path: str, X: pd.DataFrame, where: str) -> list[str]:
    """Columns chosen by a selector function (like ``make_column_selector``): it takes the
    features and returns column names; they are resolved once, here, and recorded."""
    func = resolve_function(path, f"{where}.selector")
    try:
        picked = func(X)
    except Exception as exc:
        raise SpecError(
            f"{where}.selector: {path}(X) raised {type(exc).__name__}: {exc}",
            path=f"{where}.selector",
        ) from exc
    cols = [str(c) for c in X.columns]
    if isinstance(picked, str) or not isinstance(picked, list | tuple | pd.Index):
        raise SpecError(
            f"{where}.selector: {path}(X) returned a {type(picked).__name__}; a selector returns "
            "a list of column names",
            path=f"{where}.selector",
            hint="e.g. return [c for c in X.columns if c.startswith('num_')]",
        )
    names = [str(c) for c in picked]
    unknown = [c for c in names if c not in cols]
    if unknown:
        raise SpecError(
            f"{where}.selector: {path}(X) returned column(s) {unknown} that are not among the features",
            path=f"{where}.selector",
            hint="features: " + ", ".join(cols),
        )
    return names


def selector_modules(spec: Spec) -> set[str]:
    """Modules of the column groups' selector functions (their code is recorded)."""
    found: set[str] = set()
    for step in spec.pipeline:
        for group in step.transformers or []:
            if group.selector is not None:
                found.add(group.selector.function.rpartition(".")[0])
    return found


def _group_columns(group: ColumnGroupSpec, X: pd.DataFrame, where: str) -> list[str]:
    cols = [str(c) for c in X.columns]
    if group.columns is not None:
        for c in group.columns:
            if c not in cols:
                raise SpecError(
                    f"{where}: column {c!r} is not among the features.{did_you_mean(c, cols)}",
                    path=where,
                    hint="features: " + ", ".join(cols),
                )
        chosen = list(group.columns)
    elif group.selector is not None:
        chosen = _select_by_function(group.selector.function, X, where)
    else:
        chosen = _select_by_dtype(X, group.dtype or [])
    return [c for c in chosen if c not in group.exclude]


def _chain(steps: list[StepSpec], where: str) -> Any:
    from sklearn.pipeline import Pipeline

    built = [(s.name, _compile_step(s, None, f"{where}.{s.name}")) for s in steps]
    return built[0][1] if len(built) == 1 else Pipeline(built)


def _compile_step(
    step: StepSpec,
    X: pd.DataFrame | None,
    where: str,
    resolved: dict[str, dict[str, list[str]]] | None = None,
) -> Any:
    if step.transformers is None:
        return _build(step.cls, step.params, where)
    if X is None:
        raise SpecError(
            f"{where}: a step with column groups must be a top-level pipeline step", path=where
        )
    groups: list[tuple[str, Any, list[str]]] = []
    chosen: dict[str, list[str]] = {}
    for g in step.transformers:
        cols = _group_columns(g, X, f"{where}.{g.name}")
        chosen[g.name] = cols
        if not cols:
            raise SpecError(
                f"{where}.{g.name}: the group selects no column",
                path=where,
                hint="features and their types: "
                + ", ".join(f"{c} ({X[c].dtype})" for c in X.columns),
            )
        est = g.steps if isinstance(g.steps, str) else _chain(g.steps, f"{where}.{g.name}")
        groups.append((g.name, est, cols))
    if resolved is not None:
        resolved[step.name] = chosen
    params = dict(step.params)
    params.setdefault("remainder", step.remainder)
    cls = resolve_class(step.cls, where)
    check_buildable(cls, step.cls, where)
    try:
        accepted = set(inspect.signature(cls).parameters) - {"self", "transformers"}
    except (TypeError, ValueError):
        accepted = set()
    for key in params:
        if accepted and key not in accepted:
            groups_named = [g.name for g in step.transformers]
            raise SpecError(
                f"{where}: {cls.__name__} has no parameter {key!r} and no column group of that name."
                f"{did_you_mean(key, [*accepted, *groups_named])}",
                path=f"{where}.params.{key}",
                hint=f"column groups: {', '.join(groups_named)}; parameters: {', '.join(sorted(accepted))}",
            )
    try:
        return cls(groups, **params)
    except TypeError as exc:
        raise SpecError(
            f"{where}: {step.cls} cannot take column groups: {exc}", path=where
        ) from exc


def compile_pipeline(
    spec: Spec, X: pd.DataFrame, frozen: Mapping[str, Any] | None = None
) -> tuple[Any, dict[str, dict[str, list[str]]]]:
    """The spec's steps as an unfitted scikit-learn Pipeline, and the columns each group resolved to.

    ``frozen``: the fitted estimators of the steps taken ``from`` a model (execution/frozen.py),
    by step name; each is wrapped in a FrozenEstimator.
    """
    from sklearn.pipeline import Pipeline

    resolved: dict[str, dict[str, list[str]]] = {}
    steps = [
        (
            s.name,
            _frozen(s, frozen) if s.from_ else _compile_step(s, X, f"pipeline.{s.name}", resolved),
        )
        for s in spec.pipeline
    ]
    if any(hasattr(est, "fit_resample") for _, est in steps):
        # samplers resample while fitting and are skipped when predicting: imbalanced-learn's
        # Pipeline does that (scikit-learn's would call transform on them)
        from imblearn.pipeline import Pipeline as ResamplingPipeline

        return ResamplingPipeline(steps), resolved
    return Pipeline(steps), resolved


def _frozen(step: StepSpec, frozen: Mapping[str, Any] | None) -> Any:
    from seedline.execution.frozen import freeze

    if frozen is None or step.name not in frozen:
        raise SpecError(
            f"pipeline.{step.name}: the step is taken from {step.from_!r}, which was not loaded",
            path=f"pipeline.{step.name}.from",
            hint="steps taken 'from' a model are loaded from the project's store by 'seedline run'",
        )
    return freeze(frozen[step.name])


def check_metrics(metrics: list[str | MetricSpec]) -> None:
    """Every metric is a scikit-learn scorer name or a custom metric whose function imports."""
    build_scoring(metrics)


def build_scoring(metrics: list[str | MetricSpec]) -> dict[str, Any]:
    """Metric name -> scorer: scikit-learn's by name, custom ones through ``make_scorer``."""
    from sklearn.metrics import get_scorer, get_scorer_names, make_scorer

    known = list(get_scorer_names())
    scoring: dict[str, Any] = {}
    for i, m in enumerate(metrics):
        if isinstance(m, str):
            if m not in known:
                raise SpecError(
                    f"metrics: {m!r} is not a scikit-learn scorer name.{did_you_mean(m, known)}",
                    path="metrics",
                    hint="see sklearn.metrics.get_scorer_names() for the full list, or give a custom "
                    "metric as {name: ..., function: package.module.score_function}",
                )
            scoring[m] = get_scorer(m)
            continue
        where = f"metrics.{m.name}"
        if m.name in known:
            raise SpecError(
                f"{where}: {m.name!r} is the name of a scikit-learn scorer; give the custom metric another name",
                path=f"metrics.{i}.name",
            )
        func = resolve_function(m.function, where)
        try:
            scoring[m.name] = make_scorer(
                func,
                greater_is_better=m.greater_is_better,
                response_method=m.response_method,
                **m.params,
            )
        except (TypeError, ValueError) as exc:
            raise SpecError(f"{where}: make_scorer failed: {exc}", path=where) from exc
    return scoring
