"""``seedline check --api``: scikit-learn's estimator checks on a spec's project-local classes, in plain words.

A transformer that breaks the estimator API (sets attributes in ``__init__``, changes its
parameters in ``fit``, cannot be cloned, changes its input) is what makes a pipeline hard
to debug: its failures show up far from their cause. This runs
``sklearn.utils.estimator_checks.check_estimator`` on every class of the spec that lives in
the project folder, plus one check of seedline's own on the spec's real training rows
(fit must not change its input), and says what each violation means.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seedline.core.environment import local_modules

# scikit-learn check name -> what a violation means, in words a reader acts on
PLAIN_WORDS: dict[str, str] = {
    "check_no_attributes_set_in_init": "__init__ sets attributes other than its parameters (or leaves some parameters unset): __init__ must only store each argument under its own name",
    "check_parameters_default_constructible": "parameters are changed or validated in __init__, or a default is mutable: store arguments unchanged and validate in fit",
    "check_estimators_overwrite_params": "fit changes the estimator's parameters: fit must leave every constructor parameter as it was",
    "check_dont_overwrite_parameters": "fit adds public attributes whose names do not end with '_': fitted attributes must end with '_', private ones start with '_'",
    "check_estimator_cloneable": "not clonable: sklearn.base.clone fails, so pipelines, grid searches and seedline's cache cannot copy it",
    "check_estimator_repr": "repr() of the estimator fails",
    "check_get_params_invariance": "get_params(deep=False) is not a subset of get_params(deep=True)",
    "check_set_params": "set_params does not set what get_params then returns",
    "check_fit_idempotent": "fitting twice on the same data gives different results: the step is not deterministic (or keeps state between fits)",
    "check_fit_check_is_fitted": "after fit, sklearn's check_is_fitted does not see it as fitted (no attribute ending with '_' is set)",
    "check_estimators_unfitted": "predict/transform before fit does not raise NotFittedError",
    "check_n_features_in": "fit does not set n_features_in_",
    "check_fit2d_1sample": "fit on a single sample fails with an unclear error",
    "check_fit2d_1feature": "fit on a single feature fails",
    "check_transformer_general": "transform does not give the same result as fit_transform on the same data",
    "check_transformers_unfitted": "transform before fit does not raise an error",
    "check_estimators_dtypes": "fit or transform fails on float32 or integer input",
    "check_estimators_empty_data": "fit on empty data does not raise a clear error",
    "check_dtype_object": "fit fails on object-dtype (mixed) input",
    "check_estimators_pickle": "the fitted estimator does not survive pickling (saving and loading)",
    "check_methods_subset_invariance": "predictions on a subset of rows differ from the same rows predicted together",
    "check_methods_sample_order_invariance": "predictions depend on the order of the rows",
    "check_estimator_sparse_array": "sparse input is neither supported nor refused with a clear error",
    "check_estimator_sparse_matrix": "sparse input is neither supported nor refused with a clear error",
    "check_fit_score_takes_y": "fit or score does not accept y",
    "check_do_not_raise_errors_in_init_or_set_params": "__init__ or set_params converts or validates its arguments and raises: store them as given and validate in fit",
    "check_estimators_nan_inf": "fit accepts NaN or infinity without a clear error (use sklearn.utils.validation.validate_data)",
    "check_estimators_empty_data_messages": "fit on empty data does not raise a clear ValueError",
    "check_estimator_sparse_tag": "sparse input is neither supported nor refused as the estimator's tags say",
    "check_mixin_order": "mixins come after BaseEstimator in the class bases: put TransformerMixin/ClassifierMixin first",
}
FIT_CHANGES_INPUT = "fit_does_not_change_input"


@dataclass
class ApiViolation:
    """One failed check: its name, what it means, and the error it raised."""

    check: str
    meaning: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"check": self.check, "meaning": self.meaning, "detail": self.detail}


@dataclass
class ClassReport:
    """The checks run on one project-local class."""

    cls: str
    step: str
    passed: int = 0
    skipped: int = 0
    violations: list[ApiViolation] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.cls,
            "step": self.step,
            "passed": self.passed,
            "skipped": self.skipped,
            "violations": [v.to_dict() for v in self.violations],
        }


@dataclass
class ApiReport:
    spec: str
    classes: list[ClassReport]
    seconds: float

    @property
    def violations(self) -> int:
        return sum(len(c.violations) for c in self.classes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "classes": [c.to_dict() for c in self.classes],
            "violations": self.violations,
            "seconds": self.seconds,
        }


def _meaning(check: str) -> str:
    return PLAIN_WORDS.get(check, f"scikit-learn's {check} failed")


def _first_line(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _local_steps(pipeline: Any, root: Path) -> list[tuple[str, Any]]:
    """(path, estimator) of every estimator in the pipeline whose class comes from the project folder."""
    from seedline.execution.runner import _walk

    found = _walk(pipeline)
    local = local_modules([type(est).__module__ for _, est in found], root)
    seen: set[type] = set()
    out: list[tuple[str, Any]] = []
    for path, est in found:
        if type(est).__module__ in local and type(est) not in seen:
            seen.add(type(est))
            out.append((path, est))
    return out


def _fit_changes_input(est: Any, X: Any, y: Any) -> ApiViolation | None:
    """seedline's own check on the spec's real rows: X and y are the same after fit as before."""
    from sklearn.base import clone

    from seedline.core.fingerprint import fingerprint_value

    X_copy, y_copy = X.copy(), y.copy()
    before = (fingerprint_value(X_copy), fingerprint_value(y_copy))
    try:
        clone(est).fit(X_copy, y_copy)
    except Exception as exc:  # the estimator checks report fit failures; here only mutation counts
        return ApiViolation(
            FIT_CHANGES_INPUT, "fit fails on the spec's own training rows", _first_line(exc)
        )
    after = (fingerprint_value(X_copy), fingerprint_value(y_copy))
    if before != after:
        which = "X" if before[0] != after[0] else "y"
        return ApiViolation(
            FIT_CHANGES_INPUT,
            f"fit modifies its input ({which}) in place: copy it before changing it (X = X.copy())",
            "the fingerprint of the training rows changed during fit",
        )
    return None


def _raw_input(p: Any, path: str, est: Any) -> Any:
    """The raw training columns a step sees (first step, or first step of a column group), else None."""
    parts = path.split("__")
    if parts == [p.pipeline.steps[0][0]]:
        return p.X_train
    if len(parts) not in (2, 3) or parts[1] not in p.resolved.get(parts[0], {}):
        return None
    for name, group, _ in getattr(p.pipeline.named_steps[parts[0]], "transformers", []):
        first = group.steps[0][1] if hasattr(group, "steps") else group
        if name == parts[1] and first is est:
            return p.X_train[p.resolved[parts[0]][parts[1]]]
    return None


def api_check(spec: str | Path, *, sample: int = 200) -> ApiReport:
    """Run the estimator checks on the spec's project-local classes; see the module docstring."""
    from sklearn.utils.estimator_checks import check_estimator

    from seedline.execution.runner import prepare

    t0 = time.perf_counter()
    p = prepare(spec)
    reports: list[ClassReport] = []
    for path, est in _local_steps(p.pipeline, p.root):
        cls = f"{type(est).__module__}.{type(est).__qualname__}"
        report = ClassReport(cls=cls, step=path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = check_estimator(est, on_fail=None, on_skip=None)
        crashes: dict[str, list[str]] = {}
        for r in results:
            if r["status"] == "passed":
                report.passed += 1
            elif r["status"] == "skipped":
                report.skipped += 1
            elif r["status"] == "failed":
                name, exc = r["check_name"], r.get("exception")
                if isinstance(exc, AssertionError):
                    v = ApiViolation(name, _meaning(name), _first_line(exc))
                    if v not in report.violations:
                        report.violations.append(v)
                else:
                    # the estimator's own code raised before the check could test anything:
                    # one cause, many checks; say it once
                    names = crashes.setdefault(_first_line(exc), [])
                    if name not in names:
                        names.append(name)
        for detail, names in crashes.items():
            shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
            meaning = (
                _meaning(names[0])
                if len(names) == 1
                else f"{len(names)} checks stop with the same error raised by the estimator itself "
                "(scikit-learn's checks pass NumPy arrays, sparse matrices and edge cases: "
                "an estimator must accept any array-like input)"
            )
            report.violations.append(ApiViolation(shown, meaning, detail))
        X_in = _raw_input(p, path, est)
        if X_in is not None:
            rows = min(sample, len(X_in))
            bad = _fit_changes_input(est, X_in.iloc[:rows], p.y_train.iloc[:rows])
            if bad is not None:
                report.violations.append(bad)
            else:
                report.passed += 1
        reports.append(report)
    return ApiReport(spec=str(spec), classes=reports, seconds=time.perf_counter() - t0)
