"""Running a spec: load, split, seed, fit step by step, fingerprint, score, save, record.

Every phase is recorded in the manifest. A failure after the run has begun is stored as a
failed run with its error; a spec or data error found before it begins stores nothing.
"""

from __future__ import annotations

import inspect
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3
import numpy as np

from seedline.core import collector
from seedline.core.composition import ComposedSpec
from seedline.core.deeplearning import layer_fingerprints, prepare_frameworks
from seedline.core.environment import capture_environment, capture_git
from seedline.core.errors import DataError, PipelineError, SeedlineError, SpecError, did_you_mean
from seedline.core.fingerprint import (
    TableFingerprint,
    fingerprint_array,
    fingerprint_estimator,
    fingerprint_table,
    fingerprint_value,
)
from seedline.core.library_controls import apply_library_controls
from seedline.core.seeding import SeedPlan, fill_random_states, hash_seed_state, is_frozen
from seedline.core.spec import FOLD_KINDS, MetricSpec, Spec, load_spec, read_spec
from seedline.core.version import __version__
from seedline.execution.cache import StepCache, numerics_context
from seedline.execution.compile import (
    build_scoring,
    check_metrics,
    compile_pipeline,
    function_modules,
    selector_modules,
)
from seedline.execution.data import (
    LoadedData,
    check_classification_target,
    empty_columns,
    load_data,
    loader_modules,
    sample_weights,
    select_columns,
)
from seedline.execution.frozen import FrozenStep, resolve_frozen_steps
from seedline.execution.jobs import probe_bytes
from seedline.execution.loadmemo import address_of
from seedline.execution.localcode import LocalCode, project_modules
from seedline.execution.persist import dump_model
from seedline.execution.plots import PERMUTATION_PATH
from seedline.records.manifest import (
    CodeRecord,
    CVRecord,
    DataRecord,
    EnvironmentRecord,
    Manifest,
    ProbeRecord,
    SeedRecord,
    SettingsRecord,
    SourceRecord,
    SpecFileRecord,
    SpecSourcesRecord,
    StepRecord,
)
from seedline.records.recording import RunRecords, new_run_id, open_run_store
from seedline.records.tags import check_tags
from seedline.storage.embedded import now_iso

Progress = Callable[[str, int, int], None]


@dataclass
class RunResult:
    """What ``seedline.run`` returns: the manifest, and the fitted pipeline when the run succeeded.

    A *detached* run (a sweep trial on a worker that has no store) also carries what the
    client must record for it: the objects its manifest references, by address, and the
    modules its pipeline's classes come from (see :func:`record_detached`).
    """

    manifest: Manifest
    model: Any | None
    objects: dict[str, bytes] = field(default_factory=dict)
    class_modules: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.manifest.run_id

    @property
    def status(self) -> str:
        return self.manifest.status

    @property
    def metrics(self) -> dict[str, float]:
        return self.manifest.metrics

    @property
    def fingerprints(self) -> dict[str, str | None]:
        return self.manifest.fingerprints

    def summary(self) -> dict[str, Any]:
        """The scripting contract of ``seedline run --json``."""
        m = self.manifest
        return {
            "run_id": m.run_id,
            "status": m.status,
            "spec": m.spec.get("name"),
            "metrics": dict(m.metrics),
            "fingerprints": dict(m.fingerprints),
            "steps": [{"name": s.name, "fitted": s.fitted, "output": s.output} for s in m.steps],
            "seeds": {
                "master": m.seeds.master if m.seeds else None,
                "hash_seed": m.seeds.hash_seed if m.seeds else None,
            },
            "duration_s": m.timings.get("total"),
            "cv": {"mean": dict(m.cv.mean), "std": dict(m.cv.std)} if m.cv else None,
            "error": m.error,
            "warnings": list(m.warnings),
        }


def _noop(_msg: str, _i: int, _n: int) -> None:
    return None


def _strata(y: Any) -> Any:
    """The target as scikit-learn's stratified splitters see it, made cheap for text labels.

    They sort the classes (``np.unique``) and draw from each row's class number: text labels
    are replaced by their class numbers in sorted order (``pd.factorize(sort=True)``, a hash
    pass), so the rows drawn are the same, without a sort of every label as a Python string.
    Any other target (numbers, missing or mixed values) is handed on unchanged.
    """
    import pandas as pd

    if not isinstance(y, pd.Series) or y.dtype.kind in "biufcmM":
        return y
    if y.isna().any() or pd.api.types.infer_dtype(y, skipna=False) != "string":
        return y
    codes, _classes = pd.factorize(y, sort=True)
    return codes


def _kfold(
    spec: Spec, frame: Any, y: Any, plan: SeedPlan
) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict[str, Any]]:
    """Folds (plain, stratified, grouped, repeated, or by time), shuffled with the plan's 'split' seed."""
    from sklearn.model_selection import (
        GroupKFold,
        KFold,
        RepeatedKFold,
        RepeatedStratifiedKFold,
        StratifiedKFold,
        TimeSeriesSplit,
    )

    s = spec.split
    seed = plan.derive("split")
    idx = np.arange(len(y))
    try:
        if s.kind == "timeseries":
            order = _time_order(frame, s.column or "")
            tss = TimeSeriesSplit(n_splits=s.n_splits, gap=s.gap or 0)
            splits = [(order[tr], order[te]) for tr, te in tss.split(order)]
        elif s.n_repeats is not None and s.n_repeats > 1:
            cls = RepeatedStratifiedKFold if s.stratify else RepeatedKFold
            splits = list(
                cls(n_splits=s.n_splits, n_repeats=s.n_repeats, random_state=seed).split(
                    idx, _strata(y) if s.stratify else y
                )
            )
        elif s.groups is not None:
            if s.groups not in frame.columns:
                raise SpecError(
                    f"split.groups: column {s.groups!r} is not in the data",
                    path="split.groups",
                    hint="columns: " + ", ".join(map(str, frame.columns)),
                )
            splits = list(
                GroupKFold(n_splits=s.n_splits).split(idx, y, groups=frame[s.groups].to_numpy())
            )
        elif s.stratify:
            splits = list(
                StratifiedKFold(n_splits=s.n_splits, shuffle=True, random_state=seed).split(
                    idx, _strata(y)
                )
            )
        else:
            splits = list(KFold(n_splits=s.n_splits, shuffle=True, random_state=seed).split(idx))
    except ValueError as exc:
        raise SpecError(f"split: {exc}", path="split") from exc
    info = {
        "kind": s.kind,
        "seed": seed,
        "n_splits": s.n_splits,
        "stratify": s.stratify,
        "groups": s.groups,
        **({"n_repeats": s.n_repeats} if s.n_repeats is not None else {}),
        **({"column": s.column, "gap": s.gap or 0} if s.kind == "timeseries" else {}),
        "rows": len(idx),
        "train_rows": len(idx),
        "test_rows": len(idx),
        "train_index": fingerprint_value(idx.astype(np.int64), kind="index"),
        "folds": [
            {
                "fold": i,
                "train_rows": len(tr),
                "test_rows": len(te),
                "test_index": fingerprint_value(np.asarray(te, dtype=np.int64), kind="index"),
            }
            for i, (tr, te) in enumerate(splits)
        ],
    }
    return [(np.asarray(tr), np.asarray(te)) for tr, te in splits], info


def _time_order(frame: Any, column: str) -> np.ndarray:
    """Row positions in time order (stable: rows with the same time keep their order)."""
    import pandas as pd

    if column not in frame.columns:
        raise SpecError(
            f"split.column: column {column!r} is not in the data.{did_you_mean(column, [str(c) for c in frame.columns])}",
            path="split.column",
            hint="columns: " + ", ".join(map(str, frame.columns)),
        )
    values = frame[column]
    if values.isna().any():
        raise SpecError(
            f"split.column: the time column {column!r} has {int(values.isna().sum())} missing values",
            path="split.column",
            hint="every row needs a time to be ordered by it",
        )
    if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values)):
        try:
            values = pd.to_datetime(values)
        except (ValueError, TypeError) as exc:
            raise SpecError(
                f"split.column: the values of {column!r} are neither numbers nor dates ({exc})",
                path="split.column",
            ) from None
    return np.argsort(values.to_numpy(), kind="stable")


def _test_mask(frame: Any, column: str) -> np.ndarray:
    """A predefined split column: 'train'/'test' (any case) or booleans, True meaning test."""
    if column not in frame.columns:
        raise SpecError(
            f"split.column: column {column!r} is not in the data.{did_you_mean(column, [str(c) for c in frame.columns])}",
            path="split.column",
            hint="columns: " + ", ".join(map(str, frame.columns)),
        )
    values = frame[column]
    if values.dtype == bool:
        return values.to_numpy()
    lowered = values.astype("string").str.lower()
    unknown = sorted(set(lowered.dropna().unique()) - {"train", "test"})
    if unknown or lowered.isna().any():
        found = ", ".join(repr(u) for u in unknown[:5]) or "missing values"
        raise SpecError(
            f"split.column: {column!r} must hold 'train' or 'test' (or booleans, True for test); found {found}",
            path="split.column",
        )
    return (lowered == "test").to_numpy()


def _split(
    spec: Spec, frame: Any, X: Any, y: Any, plan: SeedPlan
) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
    """A holdout: seeded random, the latest rows by time, or the rows a column marks as test."""
    from sklearn.model_selection import train_test_split

    s = spec.split
    seed = plan.derive("split")
    idx = np.arange(len(X))
    info: dict[str, Any] = {"kind": s.kind}
    if s.kind == "time":
        order = _time_order(frame, s.column or "")
        n_test = max(1, int(np.ceil(s.test_size * len(order))))
        if n_test >= len(order):
            raise SpecError(f"split: test_size {s.test_size} leaves no training rows", path="split")
        tr, te = order[:-n_test], order[-n_test:]
        info.update(column=s.column, test_size=s.test_size)
    elif s.kind == "predefined":
        mask = _test_mask(frame, s.column or "")
        tr, te = idx[~mask], idx[mask]
        if not len(tr) or not len(te):
            raise SpecError(
                f"split.column: {s.column!r} marks {len(te)} test rows and {len(tr)} training rows; both must be more than 0",
                path="split.column",
            )
        info.update(column=s.column)
    else:
        try:
            tr, te = train_test_split(
                idx,
                test_size=s.test_size,
                random_state=seed,
                stratify=_strata(y) if s.stratify else None,
            )
        except ValueError as exc:
            raise SpecError(f"split: {exc}", path="split") from exc
        info.update(seed=seed, test_size=s.test_size, stratify=s.stratify)
    info.update(
        train_rows=len(tr),
        test_rows=len(te),
        train_index=fingerprint_value(np.asarray(tr, dtype=np.int64), kind="index"),
        test_index=fingerprint_value(np.asarray(te, dtype=np.int64), kind="index"),
    )
    return X.iloc[tr], X.iloc[te], y.iloc[tr], y.iloc[te], info


def _given_test(
    spec: Spec, X: Any, y: Any, root: Path, features: list[str]
) -> tuple[Any, Any, Any, Any, dict[str, Any], dict[str, Any]]:
    """Every row of the data trains; the test rows come from the file ``split.test``."""
    from seedline.execution.data import read_source, sample_weights

    uri = spec.split.test or ""
    frame, record = read_source(uri, root, spec.data)
    missing = [c for c in [*features, spec.data.target] if c not in frame.columns]
    if missing:
        raise DataError(
            f"split.test: {uri!r} lacks column(s) {missing} that the training data has",
            hint="the test file needs the same feature columns and the target",
        )
    y_test = frame[spec.data.target]
    if y_test.isna().any():
        raise DataError(
            f"split.test: target column {spec.data.target!r} of {uri!r} has {int(y_test.isna().sum())} missing values",
            hint="drop those rows from the test file; seedline never drops rows silently",
        )
    record["weights"] = sample_weights(frame, spec.data, where=f"split.test {uri!r}")
    idx = np.arange(len(X))
    info = {
        "kind": "given",
        "test": uri,
        "test_fingerprint": record["fingerprint"],
        "train_rows": len(X),
        "test_rows": len(frame),
        "train_index": fingerprint_value(idx.astype(np.int64), kind="index"),
        "test_index": fingerprint_value(np.arange(len(frame), dtype=np.int64), kind="index"),
    }
    return X, frame[features], y, y_test, info, record


def _shape(a: Any) -> list[int] | None:
    shape = getattr(a, "shape", None)
    return [int(s) for s in shape] if shape is not None else None


def _resolve_spec(
    spec: Spec | str | Path, overrides: list[str] | None, project_root: str | Path | None
) -> tuple[Spec, Path, ComposedSpec | None]:
    if isinstance(spec, Spec):
        if overrides:
            from seedline.core.spec import apply_overrides

            spec = Spec.from_dict(apply_overrides(spec.to_dict(), overrides))
        return spec, Path(project_root or ".").resolve(), None
    path = Path(spec)
    if path.is_dir():
        path = path / "seedline.yaml"
    if not path.is_file():
        load_spec(path)  # raises the 'does not exist' error with its hints
    loaded, composed = read_spec(path, overrides)
    root = Path(project_root).resolve() if project_root else path.resolve().parent
    return loaded, root, composed if composed.composed else None


@dataclass
class Prepared:
    """A spec made ready to fit: data loaded and split, pipeline compiled and seeded."""

    spec: Spec
    root: Path
    loaded: LoadedData
    table: TableFingerprint
    features: list[str]
    pipeline: Any
    resolved: dict[str, dict[str, list[str]]]
    plan: SeedPlan
    random_states: dict[str, dict[str, Any]]
    # determinism switches filled for LightGBM / XGBoost steps (core/library_controls.py)
    controls: dict[str, dict[str, Any]]
    X_train: Any
    X_test: Any
    y_train: Any
    y_test: Any
    split: dict[str, Any]
    folds: list[tuple[np.ndarray, np.ndarray]]
    warnings: list[str]
    composed: ComposedSpec | None = None
    # a given test file's source record (split kind 'given'); recorded beside the data sources
    test_sources: list[dict[str, Any]] = field(default_factory=list)
    # steps taken fitted from a model (spec key 'from'), by step name
    frozen: dict[str, FrozenStep] = field(default_factory=dict)
    # data.sample_weight of the training and the test rows (None without weights)
    w_train: Any = None
    w_test: Any = None


def forget_shadowed_modules(root: Path) -> None:
    """Forget modules this project provides that this process imported from another folder.

    In a long-lived process (a notebook, a test session) a run of project B after project A
    would otherwise get A's ``features`` module for B's ``features.X``: not what ``python -m``
    in B imports, and the run would neither record nor store B's source. Only modules from
    user folders are forgotten, never the standard library's or an installed package's.
    """
    here = root.resolve()
    try:
        provided = {p.stem for p in here.glob("*.py")}
        provided |= {p.parent.name for p in here.glob("*/__init__.py")}
    except OSError:  # a worker that may not read the project folder has none of its modules
        return
    installed = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})
    for name, module in list(sys.modules.items()):
        if name.partition(".")[0] not in provided:
            continue
        file = getattr(module, "__file__", None)
        if not file or "site-packages" in file or file.startswith(installed):
            continue
        if not Path(file).resolve().is_relative_to(here):
            del sys.modules[name]


def prepare(
    spec: Spec | str | Path,
    *,
    overrides: list[str] | None = None,
    project_root: str | Path | None = None,
    loaded: LoadedData | None = None,
    frozen: dict[str, FrozenStep] | None = None,
    frozen_pins: dict[str, str] | None = None,
) -> Prepared:
    """Load, validate, compile, seed and split; raises SpecError/DataError and stores nothing.

    With k folds, the final model is fitted on every row, the folds only evaluate, and the
    probe set is every row. Steps taken ``from`` a model are loaded from the project's
    store (``frozen_pins``: step -> the run id they must come from), unless ``frozen``
    already holds them (a sweep trial on a worker).
    """
    spec_obj, root, composed = _resolve_spec(spec, overrides, project_root)
    # imports of user code resolve from the project first, as `python -m` would
    if str(root) in sys.path:
        sys.path.remove(str(root))
    sys.path.insert(0, str(root))
    forget_shadowed_modules(root)
    loaded = loaded or load_data(spec_obj.data, root)
    if spec_obj.data.sample_weight is not None and not loaded.frame.index.is_unique:
        # weights follow the split's rows by index label
        loaded = LoadedData(frame=loaded.frame.reset_index(drop=True), sources=loaded.sources)
    X, y, features = select_columns(loaded.frame, spec_obj.data)
    weights = sample_weights(loaded.frame, spec_obj.data)
    split_column = spec_obj.split.column if spec_obj.split.kind == "predefined" else None
    if split_column is not None and split_column in features:
        # the column that says which rows test is bookkeeping, never a feature
        if spec_obj.data.features is not None:
            raise SpecError(
                f"data.features lists {split_column!r}, the predefined split column",
                path="data.features",
                hint="remove it from data.features: it marks test rows and must not be learned from",
            )
        features = [c for c in features if c != split_column]
        X = X[features]
    check_metrics(spec_obj.metrics)
    # KERAS_BACKEND and CUBLAS_WORKSPACE_CONFIG must be set before the spec's classes import them
    prepare_frameworks(spec_obj.to_dict(), root)
    if frozen is None:
        frozen = resolve_frozen_steps(spec_obj, root, frozen_pins)
    pipeline, resolved = compile_pipeline(
        spec_obj, X, {name: f.estimator for name, f in frozen.items()}
    )
    classifier = _is_classifier(pipeline)
    if classifier:
        check_classification_target(y, spec_obj.data.target)
    warnings = [
        f"feature column {c!r} is entirely missing ({len(X)} of {len(X)} values): it carries no information"
        for c in empty_columns(X)
    ]
    plan = SeedPlan(spec_obj.seed)
    random_states = fill_random_states(pipeline, plan)
    controls = apply_library_controls(pipeline, spec_obj.execution.threads)
    if weights is not None:
        check_weighted_fit(pipeline, spec_obj.data.sample_weight or "")
    folds: list[tuple[np.ndarray, np.ndarray]] = []
    test_sources: list[dict[str, Any]] = []
    w_test_given = None
    if spec_obj.split.kind in FOLD_KINDS:
        folds, split_info = _kfold(spec_obj, loaded.frame, y, plan)
        X_train, X_test, y_train, y_test = X, X, y, y
    elif spec_obj.split.kind == "given":
        X_train, X_test, y_train, y_test, split_info, test_record = _given_test(
            spec_obj, X, y, root, features
        )
        w_test_given = test_record.pop("weights")
        test_sources.append(test_record)
    else:
        X_train, X_test, y_train, y_test, split_info = _split(spec_obj, loaded.frame, X, y, plan)
        if classifier:
            check_classification_target(y_train, spec_obj.data.target, where="the training split")
    w_train = w_test = None
    if weights is not None:
        w_train = weights.loc[X_train.index]
        w_test = w_test_given if spec_obj.split.kind == "given" else weights.loc[X_test.index]
    return Prepared(
        spec=spec_obj,
        root=root,
        loaded=loaded,
        # one source: its table fingerprint is the whole table's, already computed at load
        table=(
            TableFingerprint(
                **{
                    k: loaded.sources[0]["table"][k]
                    for k in ("digest", "columns", "schema", "rows")
                }
            )
            if len(loaded.sources) == 1
            else fingerprint_table(loaded.frame)
        ),
        features=features,
        pipeline=pipeline,
        resolved=resolved,
        plan=plan,
        random_states=random_states,
        controls=controls,
        X_train=X_train,
        X_test=X_test,
        y_train=y_train,
        y_test=y_test,
        split=split_info,
        folds=folds,
        warnings=warnings,
        composed=composed,
        test_sources=test_sources,
        frozen=frozen,
        w_train=w_train,
        w_test=w_test,
    )


def _is_classifier(pipeline: Any) -> bool:
    from sklearn.base import is_classifier

    try:
        return bool(is_classifier(pipeline))
    except Exception:  # an estimator whose tags cannot be read is not known to be one
        return False


def train_input_fingerprint(p: Prepared, index_fingerprint: str | None = None) -> str:
    """Identity of the first step's input: the table, the features, the target and the rows used."""
    parts = [
        "train-input",
        p.table.digest,
        p.features,
        p.spec.data.target,
        index_fingerprint or p.split["train_index"],
    ]
    if p.spec.data.sample_weight is not None:
        # the final step fits on the weights too (left out without them: older cache keys hold)
        parts.append(["sample_weight", p.spec.data.sample_weight])
    return fingerprint_value(parts, kind="input")


def check_weighted_fit(pipeline: Any, column: str) -> None:
    """Weights reach the final step's ``fit``: it must take ``sample_weight``, and no sampler may change the rows."""
    from sklearn.utils.validation import has_fit_parameter

    samplers = [n for n, est in pipeline.steps if hasattr(est, "fit_resample")]
    if samplers:
        raise SpecError(
            f"data.sample_weight {column!r} cannot be combined with the sampler step {samplers[0]!r}: "
            "it changes the rows, and the weights would no longer match them",
            path="data.sample_weight",
            hint="weigh the rows or resample them, not both",
        )
    name, final = pipeline.steps[-1]
    fit = final.fit
    try:
        takes_kwargs = any(
            prm.kind == prm.VAR_KEYWORD for prm in inspect.signature(fit).parameters.values()
        )
    except (TypeError, ValueError):
        takes_kwargs = False
    if not (has_fit_parameter(final, "sample_weight") or takes_kwargs):
        raise SpecError(
            f"data.sample_weight {column!r}: the final step {name!r} ({type(final).__name__}) "
            "takes no sample_weight in fit",
            path="data.sample_weight",
            hint="use an estimator whose fit takes sample_weight, or remove data.sample_weight",
        )


def fit_steps(
    pipeline: Any,
    X: Any,
    y: Any,
    *,
    resolved: dict[str, dict[str, list[str]]] | None = None,
    progress: Progress | None = None,
    cache: StepCache | None = None,
    input_fingerprint: str | None = None,
    records: list[StepRecord] | None = None,
    seed_plan: SeedPlan | None = None,
    sample_weight: Any = None,
) -> list[StepRecord]:
    """Fit the pipeline's steps in place, one by one, as Pipeline.fit would, fingerprinting each.

    For every step: the fingerprint of its fitted state and of its transformed output on
    the training data (none for the final step). With a cache and the fingerprint of the
    input, a step whose key is known is loaded instead of fitted. With a seed plan, a
    deep-learning step's generators are seeded from its path right before it fits.
    """
    say = progress or _noop
    # appended to as each step finishes, so a failure keeps the steps fitted before it
    records = [] if records is None else records
    Xt: Any = X
    n = len(pipeline.steps)
    upstream = input_fingerprint
    for i, (name, est) in enumerate(pipeline.steps):
        say(f"fitting {name}", i, n)
        last = i == n - 1
        t = time.perf_counter()
        status = "off"
        key: str | None = None
        output_fp: str | None = None
        if est is None or est == "passthrough":
            cls, fitted = "passthrough", "passthrough"
        elif hasattr(est, "fit_resample") and not last:
            # a sampler (imbalanced-learn) changes the rows and the target the next steps see;
            # it only acts while fitting, and is never cached (the cache keeps X, not y)
            if seed_plan is not None:
                seed_plan.seed_step(f"pipeline/{name}", est)
            Xt, y = est.fit_resample(Xt, y)
            fitted = fingerprint_estimator(est)
            cls = f"{type(est).__module__}.{type(est).__qualname__}"
        elif is_frozen(est):
            # taken fitted from another model: nothing to fit (FrozenEstimator.fit does
            # nothing) and nothing to cache; its fingerprint is the source step's own
            fitted = fingerprint_estimator(est.estimator)
            if not last:
                Xt = est.transform(Xt)
            cls = f"{type(est).__module__}.{type(est).__qualname__}"
        else:
            key = (
                cache.key(f"pipeline/{name}", est, upstream, last)
                if cache is not None and upstream
                else None
            )
            hit = cache.get(key) if cache is not None and key is not None else None
            if hit is not None:
                est = hit.estimator
                pipeline.steps[i] = (name, est)
                if not last:
                    Xt = hit.output
                fitted, output_fp, status = hit.fitted, hit.output_fingerprint, "hit"
            else:
                if seed_plan is not None:
                    seed_plan.seed_step(f"pipeline/{name}", est)
                if last and sample_weight is not None:
                    # Pipeline.fit(X, y, last__sample_weight=w) does the same
                    est.fit(Xt, y, sample_weight=np.asarray(sample_weight))
                elif last:
                    est.fit(Xt, y)
                elif hasattr(est, "fit_transform"):
                    Xt = est.fit_transform(Xt, y)
                else:
                    Xt = est.fit(Xt, y).transform(Xt)
                fitted = fingerprint_estimator(est)
            cls = f"{type(est).__module__}.{type(est).__qualname__}"
        if not last and output_fp is None:
            output_fp = fingerprint_array(Xt, kind="output")
        if status == "off" and cache is not None and key is not None:
            status = cache.put(
                key, f"pipeline/{name}", est, None if last else Xt, fitted, output_fp, last
            )
        secs = time.perf_counter() - t
        records.append(
            StepRecord(
                name=name,
                path=f"pipeline/{name}",
                cls=cls,
                fitted=fitted,
                output=output_fp,
                output_shape=None if last else _shape(Xt),
                fit_seconds=secs,
                resolved_columns=(resolved or {}).get(name),
                cache=status if cache is not None else None,
                layers=layer_fingerprints(est),
            )
        )
        upstream = (
            fingerprint_value([upstream, output_fp], kind="input")
            if upstream and output_fp
            else None
        )
    return records


def record_frozen_sources(steps: list[StepRecord], frozen: dict[str, FrozenStep]) -> None:
    """Say where each frozen step came from; its fitted state must be the source step's, bit for bit."""
    for step in steps:
        source = frozen.get(step.name)
        if source is None:
            continue
        if step.fitted != source.source.fitted:
            raise PipelineError(
                f"step {step.name!r} taken from {source.source.ref} (run {source.source.run_id}) has the fitted "
                f"state {step.fitted}, but that run recorded {source.source.fitted} for it",
                hint="the stored model no longer matches its run's record: run 'seedline fsck'",
            )
        step.frozen_from = source.source


def score(
    pipeline: Any,
    X: Any,
    y: Any,
    metrics: list[str | MetricSpec],
    sample_weight: Any = None,
) -> tuple[dict[str, float], Any, Any | None]:
    """Metrics by scorer name (weighted by ``sample_weight`` when given), predictions, and
    probabilities when the model has them."""
    from sklearn.metrics import check_scoring

    # one multi-metric scorer predicts once for every metric
    scoring = build_scoring(metrics)
    weights = {} if sample_weight is None else {"sample_weight": np.asarray(sample_weight)}
    scores = check_scoring(pipeline, scoring=scoring)(pipeline, X, y, **weights)
    values = {name: float(scores[name]) for name in scoring}
    pred = pipeline.predict(X)
    proba = pipeline.predict_proba(X) if hasattr(pipeline.steps[-1][1], "predict_proba") else None
    return values, pred, proba


def cross_validate(
    p: Prepared,
    *,
    executor: str = "serial",
    workers: int = 1,
    address: str | None = None,
    progress: Progress | None = None,
    plots_seed: int | None = None,
) -> dict[str, Any]:
    """Fit and score every fold on the executor; per-fold results gathered in fold order.

    With ``plots_seed``, the folds' out-of-fold plot data is returned under ``plot_parts``
    (the caller pops it: it is not part of the manifest).
    """
    from seedline.execution.executors import make_executor
    from seedline.execution.jobs import Shared, fold_job, summarise_folds

    say = progress or _noop
    items = {
        f"fold-{i:03d}": {"fold": i, "train": tr, "test": te, "plots_seed": plots_seed}
        for i, (tr, te) in enumerate(p.folds)
    }
    say(f"cross-validating {len(items)} folds", 0, len(items))
    code = (
        shipped_code(p.root, pipeline_class_modules(p.pipeline), where=f"spec {p.spec.name}")
        if executor != "serial"
        else LocalCode()
    )
    shared = Shared(
        spec=p.spec.to_dict(),
        frame=p.loaded.frame,
        root=str(p.root),
        code=code,
        frozen={name: f.estimator for name, f in p.frozen.items()},
    )
    with make_executor(
        executor, workers=workers, address=address, threads=p.spec.execution.threads
    ) as ex:
        results = ex.map(fold_job, items, shared=shared)
        settings = ex.settings()
        info = {k: v.to_dict() for k, v in ex.task_info.items()}
    summary = summarise_folds(results, p.split["folds"])
    if plots_seed is not None:
        summary["plot_parts"] = [r.extra for _, r in sorted(results.items())]
    summary["settings"] = settings
    summary["workers"] = sorted({i.get("worker", "") for i in info.values()})
    mismatched = sorted(k for k, i in info.items() if i.get("hash_seed_matches") is False)
    if mismatched:
        summary["warnings"] = [
            f"folds {', '.join(mismatched)} ran on workers whose PYTHONHASHSEED differs from this process's"
        ]
    return summary


def record_local_code(
    put: Callable[[bytes], str], root: Path, class_modules: list[str]
) -> dict[str, dict[str, str]]:
    """Hash and store the source of every project-local module the pipeline's classes need.

    The modules of the classes, and the project-local modules they import in turn. Each
    entry: its path in the project, the hash of its bytes (``file``) and of its tokens
    (``source``), and the address of the stored source (``object``), from which a model
    loads where the project folder is absent.
    """
    return {
        m.name: {"path": m.path, "source": str(m.tokens), "file": m.file, "object": put(m.source)}
        for m in project_modules(root, class_modules)
    }


def shipped_code(root: Path, class_modules: list[str], *, where: str) -> LocalCode:
    """The project-local modules of a pipeline, as sources a worker without the project folder imports."""
    return LocalCode(tuple(project_modules(root, class_modules)), where=where)


def code_fingerprint(code: dict[str, Any]) -> str:
    """The ``code`` fingerprint of a run: commit, uncommitted diff and local module sources."""
    return fingerprint_value(
        [
            code.get("commit"),
            code.get("diff"),
            {k: v["source"] for k, v in (code.get("local_modules") or {}).items()},
        ],
        kind="code",
    )


def pipeline_class_modules(pipeline: Any) -> list[str]:
    return sorted({type(est).__module__ for _, est in _walk(pipeline)})


def record_detached(
    store: RunRecords,
    result: RunResult,
    root: Path,
    git_info: dict[str, Any],
    *,
    diff_object: str | None = None,
    notes: dict[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
) -> Manifest:
    """Record a run that a worker made without a store: its objects, code, then the run itself.

    ``git_info`` is the client's ``capture_git`` of the project (the worker has no folder);
    the local modules are hashed and stored here, from the project the client sees.
    ``notes`` are merged into the manifest's ``seeds.hash_seed`` (a worker's hash seed that
    differs from the client's, say).
    """
    manifest = result.manifest
    for address, data in result.objects.items():
        if store.objects.put(data) != address:
            raise SeedlineError(f"object {address} from a worker does not hash to its address")
    if diff_object is not None:
        manifest.artifacts["diff"] = diff_object
    if manifest.status == "succeeded" or result.class_modules:
        code = dict(git_info)
        code["local_modules"] = record_local_code(store.objects.put, root, result.class_modules)
        manifest.code = CodeRecord.model_validate(code)
        if manifest.fingerprints:
            manifest.fingerprints["code"] = code_fingerprint(code)
    if notes and manifest.seeds is not None:
        manifest.seeds.hash_seed.update(notes)
    manifest.project_root = str(root)
    store.begin_run(manifest, tags=tags)
    store.finish_run(manifest, duration_s=manifest.timings.get("total"))
    return manifest


class _Detached:
    """Stands in for the store on a worker: keeps the objects a run writes, to send them back."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put(self, data: bytes) -> str:
        address = blake3.blake3(data).hexdigest()  # the object store's address of these bytes
        self.objects[address] = data
        return address


AfterFit = Callable[[Manifest, Any, "Prepared"], None]


def run(
    spec: Spec | str | Path,
    *,
    overrides: list[str] | None = None,
    project_root: str | Path | None = None,
    store: RunRecords | None = None,
    progress: Progress | None = None,
    parent_run: str | None = None,
    after_fit: AfterFit | None = None,
    use_cache: bool = True,
    executor: str = "serial",
    workers: int = 1,
    address: str | None = None,
    loaded: LoadedData | None = None,
    sweep: dict[str, Any] | None = None,
    detached: bool = False,
    plots: bool = True,
    snapshot: bool | None = None,
    snapshot_max_bytes: int | None = None,
    frozen: dict[str, FrozenStep] | None = None,
    frozen_pins: dict[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> RunResult:
    """Run a spec (a Spec, or the path of a YAML file or of its folder) and record it.

    Raises SpecError/DataError before anything is stored; a failure while fitting or
    scoring is recorded as a failed run and raised as PipelineError (``err.result``).
    ``after_fit`` may add to the manifest of a successful run before it is stored.

    ``detached``: run without a store or the project folder (a sweep trial on a worker):
    nothing is recorded and nothing is cached; the result carries the objects and the
    manifest, which the client records with :func:`record_detached`.
    ``plots=False`` skips the plot data (``seedline run --no-plots``).
    ``snapshot`` keeps the data files in the object store (default: the spec's
    ``data.snapshot``); files above ``snapshot_max_bytes`` are refused before the run begins.
    ``frozen`` / ``frozen_pins``: see :func:`prepare` (steps taken ``from`` a model).
    """
    from threadpoolctl import threadpool_limits

    t_start = time.perf_counter()
    tags = check_tags(tags or {})  # a bad tag fails before any work
    say = progress or _noop
    timings: dict[str, float] = {}
    say("loading data", 0, 1)
    p = prepare(
        spec,
        overrides=overrides,
        project_root=project_root,
        loaded=loaded,
        frozen=frozen,
        frozen_pins=frozen_pins,
    )
    spec_obj, root, pipeline, plan = p.spec, p.root, p.pipeline, p.plan
    timings["load"] = time.perf_counter() - t_start
    collector.resume()  # started up: what follows makes short-lived objects (core.collector)

    sink = _Detached() if detached else None
    opened: RunRecords | None = None  # a store this run opens, it closes
    if not detached and store is None:
        store = opened = open_run_store(root)
    try:  # until the run's own try below takes over, a failure closes what this run opened
        put: Callable[[bytes], str] = sink.put if sink is not None else store.objects.put  # type: ignore[union-attr]
        snapshot_warnings: list[str] = []
        if store is not None and (spec_obj.data.snapshot if snapshot is None else snapshot):
            from seedline.execution import snapshots

            t = time.perf_counter()
            say("keeping a data snapshot", 0, 1)
            snapshot_warnings = snapshots.take(
                store,
                p.loaded.sources,
                root,
                max_bytes=snapshots.max_bytes_from_env()
                if snapshot_max_bytes is None
                else snapshot_max_bytes,
                frame=p.loaded.frame,
            )
            timings["snapshot"] = time.perf_counter() - t
        manifest = Manifest(
            seedline_version=__version__,
            run_id=new_run_id(),
            parent_run=parent_run,
            status="running",
            created_at=now_iso(),
            spec=spec_obj.to_dict(),
            spec_fingerprint=spec_obj.fingerprint(),
            overrides=list(overrides or []),
            spec_sources=(
                SpecSourcesRecord(
                    files=[SpecFileRecord(**f.to_dict()) for f in p.composed.files],
                    origin=p.composed.origin,
                )
                if p.composed
                else None
            ),
            project_root=str(root),
            settings=SettingsRecord(
                threads=spec_obj.execution.threads,
                executor=executor,
                workers=workers,
                address=address,
                cache=use_cache and not detached,
                **({"library_controls": p.controls} if p.controls else {}),
            ),
            data=DataRecord(
                sources=[SourceRecord(**s) for s in [*p.loaded.sources, *p.test_sources]],
                table=p.table.to_dict(),
                target=spec_obj.data.target,
                features=p.features,
                split=p.split,
            ),
            sweep=sweep,
            warnings=[*p.warnings, *snapshot_warnings],
        )
        if store is not None:
            store.begin_run(manifest, tags=tags)
    except BaseException:
        if opened is not None:
            opened.close()
        raise
    phase = "setup"
    model = None
    interrupted: BaseException | None = None
    plots_seed = plan.derive(PERMUTATION_PATH) if plots else None
    plot_parts: list[dict[str, Any]] = []
    cache: StepCache | None = None
    try:
        t = time.perf_counter()
        class_modules = sorted(
            set(pipeline_class_modules(pipeline))
            | function_modules(pipeline, spec_obj.metrics)
            | loader_modules(p.loaded.sources)
            | selector_modules(spec_obj)
        )
        git_info: dict[str, Any] = {}
        if not detached:  # a worker has no project folder: the client records the code
            git_info, diff = capture_git(root)
            if diff:
                manifest.artifacts["diff"] = put(diff)
            git_info["local_modules"] = record_local_code(put, root, class_modules)
            manifest.code = CodeRecord.model_validate(git_info)
        timings["code"] = time.perf_counter() - t

        with threadpool_limits(limits=spec_obj.execution.threads):
            t = time.perf_counter()
            manifest.environment = EnvironmentRecord.model_validate(capture_environment())
            timings["environment"] = time.perf_counter() - t
            if p.folds:
                phase = "cross-validate"
                t = time.perf_counter()
                if sweep is None:
                    summary = cross_validate(
                        p,
                        executor=executor,
                        workers=workers,
                        address=address,
                        progress=say,
                        plots_seed=plots_seed,
                    )
                    for key, value in summary.pop("settings").items():
                        setattr(manifest.settings, key, value)
                else:
                    # a sweep trial is already one task on the sweep's executor: its folds run here
                    summary = cross_validate(p, progress=say, plots_seed=plots_seed)
                    summary.pop("settings")
                plot_parts = summary.pop("plot_parts", [])
                manifest.cv = CVRecord.model_validate(summary)
                timings["cross_validate"] = time.perf_counter() - t
            # seeded right before the final fit: folds run in this process may draw from them
            seeded = plan.seed_globals(pipeline)
            manifest.seeds = SeedRecord(
                master=spec_obj.seed,
                hash_seed=hash_seed_state(),
                derived={},
                random_states=p.random_states,
                globals=seeded,
            )

            phase = "fit"
            t = time.perf_counter()
            cache = (
                StepCache(store, root, numerics_context(manifest.environment.as_dict()))
                if use_cache and store is not None
                else None
            )
            fit_steps(
                pipeline,
                p.X_train,
                p.y_train,
                resolved=p.resolved,
                progress=say,
                cache=cache,
                input_fingerprint=train_input_fingerprint(p),
                records=manifest.steps,
                seed_plan=plan,
                sample_weight=p.w_train,
            )
            record_frozen_sources(manifest.steps, p.frozen)
            timings["fit"] = time.perf_counter() - t
            model = pipeline

            phase = "save"
            t = time.perf_counter()
            model_fp = fingerprint_value([(s.name, s.fitted) for s in manifest.steps], kind="model")
            # a model with this exact fitted state is already stored (say, every step hit the
            # cache): reuse its object rather than serialising it again. Otherwise it is
            # serialised now, before scoring calls its steps: the file holds the state each
            # step's fingerprint was taken of (and the steps fitted here are cached in it)
            known = (
                store.model_object_for(model_fp, [(s.name, s.cls) for s in manifest.steps])
                if store is not None
                else None
            )
            if known is not None:
                model_bytes, model_address = None, known
            else:
                model_bytes = dump_model(pipeline)
                model_address = address_of(model_bytes)
            if cache is not None:
                cache.remember_model(model_address, pipeline, model_bytes)
            serialising = time.perf_counter() - t

            phase = "score"
            n = len(pipeline.steps)
            say("scoring", n, n)
            t = time.perf_counter()
            metrics, pred, proba = score(
                pipeline, p.X_test, p.y_test, spec_obj.metrics, sample_weight=p.w_test
            )
            if manifest.cv is not None:
                # the folds evaluate; the final model saw every row
                metrics = dict(manifest.cv.mean)
            timings["score"] = time.perf_counter() - t

        phase = "save"
        t = time.perf_counter()
        manifest.artifacts["model"] = model_address if model_bytes is None else put(model_bytes)
        if cache is not None:  # the steps fitted here are cached as steps of this model file
            cache.store_with_model(manifest.artifacts["model"])
        manifest.artifacts["probe"] = put(probe_bytes(pred, proba))
        manifest.probe = ProbeRecord(
            set="every row" if p.folds else "test split",
            rows=len(p.X_test),
            input=fingerprint_value(p.X_test, kind="input"),
            predictions=fingerprint_array(pred, kind="predictions"),
            proba=fingerprint_array(proba, kind="proba") if proba is not None else None,
        )
        manifest.metrics = metrics
        manifest.fingerprints = {
            "model": model_fp,
            "predictions": manifest.probe.predictions,
            "spec": manifest.spec_fingerprint,
            "data": p.table.digest,
            "environment": manifest.environment.fingerprint,
            "code": None if detached else code_fingerprint(git_info),
        }
        timings["save"] = time.perf_counter() - t + serialising
        if plots_seed is not None:
            # after every fingerprint and metric is final: plots cannot change them
            t = time.perf_counter()
            say("plotting", n, n)
            manifest.artifacts["plots"] = put(
                _plot_document(p, pipeline, pred, proba, plot_parts, plots_seed)
            )
            timings["plots"] = time.perf_counter() - t
        if after_fit is not None:
            phase = "verify"
            after_fit(manifest, pipeline, p)
        manifest.status = "succeeded"
    except BaseException as exc:
        manifest.status = "failed"
        manifest.error = {
            "phase": phase,
            "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
            "message": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=20),
        }
        model = None
        if not isinstance(exc, Exception):
            interrupted = exc
    finally:
        if cache is not None:  # stopped before the model was stored: its fitted steps still count
            try:
                cache.store_apart()
            except BaseException as exc:  # a second interrupt: the run is still recorded
                interrupted = interrupted or exc
        if manifest.seeds is not None:
            manifest.seeds.derived = dict(sorted(plan.derived.items()))
        timings["total"] = time.perf_counter() - t_start
        manifest.timings = {k: round(v, 6) for k, v in timings.items()}
        manifest.finished_at = now_iso()
        try:
            if store is not None:
                store.finish_run(manifest, duration_s=timings["total"])
        finally:
            if opened is not None:
                opened.close()

    if interrupted is not None:
        raise interrupted
    result = RunResult(manifest=manifest, model=model)
    if sink is not None:
        result = RunResult(
            manifest=manifest,
            model=None,
            objects=sink.objects,
            class_modules=pipeline_class_modules(pipeline),
        )
    if manifest.status == "failed":
        err = manifest.error or {}
        failure = PipelineError(
            f"run {manifest.run_id} failed in phase {phase!r}: {err.get('message')}",
            hint=f"the failure is recorded; 'seedline show {manifest.run_id}' has the traceback",
        )
        failure.result = result
        raise failure
    return result


def _plot_document(
    p: Prepared,
    pipeline: Any,
    pred: Any,
    proba: Any | None,
    parts: list[dict[str, Any]],
    seed: int,
) -> bytes:
    """The run's plot data as JSON: test split, or out-of-fold rows assembled from the folds."""
    import orjson
    from sklearn.base import is_classifier

    from seedline.execution.plots import compute_plots, merge_importances, permutation_importance

    try:
        if parts:
            rows = np.concatenate([x["rows"] for x in parts])
            order = np.argsort(rows, kind="stable")
            pred = np.concatenate([x["pred"] for x in parts])[order]
            probas = [x["proba"] for x in parts]
            proba = None if probas[0] is None else np.concatenate(probas)[order]
            y = p.y_test.iloc[rows[order]]
            good = [x["importance"] for x in parts if "error" not in x["importance"]]
            importance: dict[str, Any] | None = merge_importances(good) if good else None
            split = "out-of-fold"
        else:
            y = p.y_test
            importance = permutation_importance(
                pipeline,
                p.X_test,
                p.y_test,
                seed=seed,
                is_classifier=is_classifier(pipeline.steps[-1][1]),
                pred=pred,
            )
            split = "test split"
        doc = compute_plots(pipeline, y, pred, proba, importance=importance, split=split)
    except Exception as exc:  # plots are extras: a model they cannot handle still records its run
        doc = {"schema": 1, "error": f"{type(exc).__name__}: {exc}"}
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def _walk(est: Any) -> list[tuple[str, Any]]:
    """Every estimator inside ``est`` (itself included), found through get_params."""
    out: list[tuple[str, Any]] = [("", est)]
    if hasattr(est, "get_params"):
        for key, value in est.get_params(deep=True).items():
            if hasattr(value, "get_params") and not isinstance(value, type):
                out.append((key, value))
    return out


__all__ = ["RunResult", "SeedlineError", "run"]
