"""The spec: a pipeline declared as data (YAML or Python), validated with pydantic.

A spec is pure data. It never imports scikit-learn and never touches storage; the
execution layer compiles it into a plain scikit-learn ``Pipeline``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from seedline.core.bounded_yaml import MAX_YAML_NODES, YAMLExpansionError, load_bounded
from seedline.core.composition import ComposedSpec, compose_file
from seedline.core.errors import SpecError, did_you_mean

SPEC_FILENAME = "seedline.yaml"
DTYPE_SELECTORS = ("number", "integer", "float", "string", "category", "bool", "datetime")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
# python:package.module:function, a data loader by import path
_LOADER = re.compile(
    r"^python:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=False)


FROZEN_CLASS = "sklearn.frozen.FrozenEstimator"
# MODEL/STEP: a registered model (NAME, NAME@VERSION, NAME@ALIAS) or a run id, then a top-level step
_FROM = re.compile(
    r"^(?P<model>[A-Za-z0-9_][A-Za-z0-9_.\-]*(@[A-Za-z0-9_.\-]+)?)/(?P<step>[A-Za-z_][A-Za-z0-9_\-]*)$"
)


class StepSpec(_Strict):
    """One step: an import path and its parameters; a ColumnTransformer step also has column groups.

    A step may instead be taken already fitted from a registered model or a run
    (``from: penguins@production/prep``): it is frozen (never refitted) and its class is
    scikit-learn's ``FrozenEstimator``.
    """

    name: str
    cls: str = Field(alias="class")
    params: dict[str, Any] = Field(default_factory=dict)
    transformers: list[ColumnGroupSpec] | None = None
    remainder: str = "drop"
    from_: str | None = Field(
        default=None,
        alias="from",
        description="MODEL/STEP: take this step, fitted, from a registered model or a run, and freeze it.",
    )

    @model_validator(mode="before")
    @classmethod
    def _frozen_step(cls, v: Any) -> Any:
        if not isinstance(v, dict) or v.get("from") is None:
            return v
        if v.get("class", FROZEN_CLASS) != FROZEN_CLASS:
            raise ValueError(
                f"step {v.get('name')!r} gives both 'class' and 'from': a step taken from a model keeps its own class"
            )
        for key in ("params", "transformers"):
            if v.get(key):
                raise ValueError(
                    f"step {v.get('name')!r} is taken fitted 'from' a model: it cannot also have {key!r}"
                )
        return {**v, "class": FROZEN_CLASS}

    @field_validator("from_")
    @classmethod
    def _valid_from(cls, v: str | None) -> str | None:
        if v is not None and not _FROM.match(v):
            raise ValueError(
                f"'from' must be MODEL/STEP, such as 'penguins@production/prep' or 'RUN_ID/prep', got {v!r}"
            )
        return v

    @property
    def frozen_source(self) -> tuple[str, str] | None:
        """(model or run, step name) of a step taken from a model; None for a step fitted here."""
        if self.from_ is None:
            return None
        model, step = self.from_.rsplit("/", 1)
        return model, step

    @field_validator("name")
    @classmethod
    def _valid_name(cls, v: str) -> str:
        if not _NAME.match(v) or "__" in v:
            raise ValueError(
                f"step name {v!r} must start with a letter or '_', use letters, digits, '_' or '-', and not contain '__' (scikit-learn's parameter separator)"
            )
        return v

    @field_validator("cls")
    @classmethod
    def _valid_class(cls, v: str) -> str:
        if "." not in v:
            raise ValueError(
                f"class {v!r} must be a full import path such as 'sklearn.linear_model.LogisticRegression'"
            )
        return v

    @field_validator("remainder")
    @classmethod
    def _valid_remainder(cls, v: str) -> str:
        if v not in ("drop", "passthrough"):
            raise ValueError(f"remainder must be 'drop' or 'passthrough', got {v!r}")
        return v


class FunctionRef(_Strict):
    """A function named by import path: ``{function: package.module.name}``."""

    function: str

    @field_validator("function")
    @classmethod
    def _path(cls, v: str) -> str:
        if "." not in v:
            raise ValueError(
                f"function {v!r} must be a full import path such as 'mypackage.columns.numeric'"
            )
        return v


class ColumnGroupSpec(_Strict):
    """A ColumnTransformer group: columns chosen by name, by dtype or by a selector function,
    transformed by a chain of steps."""

    name: str
    columns: list[str] | None = None
    dtype: list[str] | None = None
    # added after the first release: None keeps older specs' canonical form
    selector: FunctionRef | None = None
    exclude: list[str] = Field(default_factory=list)
    steps: list[StepSpec] | Literal["passthrough", "drop"] = "passthrough"

    @field_validator("dtype", mode="before")
    @classmethod
    def _dtype_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, v: list[str] | None) -> list[str] | None:
        for d in v or []:
            if d not in DTYPE_SELECTORS:
                raise ValueError(
                    f"dtype selector {d!r} is not one of {', '.join(DTYPE_SELECTORS)}.{did_you_mean(d, DTYPE_SELECTORS)}"
                )
        return v

    @model_validator(mode="after")
    def _one_selector(self) -> ColumnGroupSpec:
        given = [k for k in ("columns", "dtype", "selector") if getattr(self, k) is not None]
        if len(given) != 1:
            found = f"; found {' and '.join(map(repr, given))}" if given else ""
            raise ValueError(
                f"column group {self.name!r} needs exactly one of 'columns' (a list of names), 'dtype' "
                f"(one of {', '.join(DTYPE_SELECTORS)}) or 'selector' ({{function: PATH}}, a function "
                f"taking the DataFrame and returning column names){found}"
            )
        return self


class DataSpec(_Strict):
    """Where the table comes from: files relative to the project, fsspec URLs, ``sklearn:load_NAME``,
    ``sql:QUERY.sql`` (with ``database``) or ``python:module:function`` loaders.

    Keys added after the first release default to None and are left out of the canonical
    form, so specs that do not use them keep their fingerprint.
    """

    sources: list[str] = Field(min_length=1)
    target: str
    features: list[str] | None = None
    # a name, never a secret: a SQLAlchemy URL without a password, or env:VARNAME naming the
    # variable that holds the URL (so the spec fingerprint does not move with the URL's value)
    database: str | None = None
    loader_params: dict[str, Any] | None = None
    sample_weight: str | None = None
    # where the data is kept, not what it is: left out of the spec fingerprint (see fingerprint())
    snapshot: bool | None = Field(
        default=None,
        description="Keep a copy of every data file in the store's objects, so a clone without the data can reproduce.",
    )

    @model_validator(mode="before")
    @classmethod
    def _source_alias(cls, v: Any) -> Any:
        if isinstance(v, dict) and "source" in v:
            v = dict(v)
            src = v.pop("source")
            if "sources" in v:
                raise ValueError("give either 'source' or 'sources', not both")
            v["sources"] = [src] if isinstance(src, str) else src
        return v

    @field_validator("database")
    @classmethod
    def _database(cls, v: str | None) -> str | None:
        if v is None:
            return None
        if v.startswith("env:"):
            if not _ENV_NAME.match(v[4:]):
                raise ValueError(
                    f"database {v!r}: 'env:' must be followed by an environment variable name such as env:TRAINING_DB_URL"
                )
            return v
        if "://" not in v:
            raise ValueError(
                "database must be a SQLAlchemy URL such as postgresql+psycopg://ana@db/sales, or "
                "env:VARNAME naming an environment variable that holds the URL"
            )
        try:
            password = urlsplit(v).password
        except ValueError:
            password = None
        if password:
            # never echo the value: it holds the secret
            raise ValueError(
                "database holds a password; a spec is committed and recorded, so it never does. "
                "Put the URL in an environment variable and write database: env:VARNAME, or keep "
                "the password where the driver looks for it (PGPASSWORD, ~/.pgpass)"
            )
        return v

    @model_validator(mode="after")
    def _keys_fit_sources(self) -> DataSpec:
        for src in self.sources:
            if src.startswith("python:") and not _LOADER.match(src):
                raise ValueError(
                    f"data source {src!r} must look like python:package.module:function"
                )
            if src.startswith("sql:") and not src.endswith(".sql"):
                raise ValueError(
                    f"data source {src!r} must name a query file in the project ending in .sql, such as sql:queries/train.sql"
                )
        has_sql = any(s.startswith("sql:") for s in self.sources)
        if has_sql and self.database is None:
            raise ValueError(
                "a sql: source needs 'database': a SQLAlchemy URL without a password, or env:VARNAME"
            )
        if self.database is not None and not has_sql:
            raise ValueError("'database' applies to sql: sources, and there is none")
        if self.loader_params is not None and not any(
            s.startswith("python:") for s in self.sources
        ):
            raise ValueError("'loader_params' applies to python: sources, and there is none")
        if self.sample_weight is not None:
            if self.sample_weight == self.target:
                raise ValueError(f"sample_weight {self.sample_weight!r} is the target column")
            if self.features is not None and self.sample_weight in self.features:
                raise ValueError(
                    f"sample_weight {self.sample_weight!r} is also listed in data.features; "
                    "a weight column is never a feature: remove it from data.features"
                )
        return self


SPLIT_KINDS = ("holdout", "kfold", "given", "time", "timeseries", "predefined")
# kinds that evaluate on folds (then fit the final model on every row)
FOLD_KINDS = ("kfold", "timeseries")
_SPLIT_NEEDS = {"given": "test", "time": "column", "timeseries": "column", "predefined": "column"}


class SplitSpec(_Strict):
    """How rows are split: a seeded holdout, k folds, a given test file, by time, or by a column.

    Keys added after the first release default to None, so that specs which do not use
    them keep their canonical form and fingerprint.
    """

    kind: Literal["holdout", "kfold", "given", "time", "timeseries", "predefined"] = "holdout"
    test_size: float = 0.25
    stratify: bool = False
    n_splits: int = 5
    groups: str | None = None
    n_repeats: int | None = None
    test: str | None = None
    column: str | None = None
    gap: int | None = None

    @field_validator("test_size")
    @classmethod
    def _fraction(cls, v: float) -> float:
        if not 0.0 < v < 1.0:
            raise ValueError(f"test_size must be a fraction in (0, 1), got {v}")
        return v

    @field_validator("n_splits")
    @classmethod
    def _splits(cls, v: int) -> int:
        if v < 2:
            raise ValueError(f"n_splits must be an int in the range [2, inf), got {v}")
        return v

    @model_validator(mode="after")
    def _keys_fit_kind(self) -> SplitSpec:
        key = _SPLIT_NEEDS.get(self.kind)
        if key is not None and getattr(self, key) is None:
            what = (
                "the test file, relative to the project"
                if key == "test"
                else "a column of the data"
            )
            raise ValueError(f"split kind {self.kind!r} needs {key!r}: {what}")
        for extra, kinds in (
            ("test", ("given",)),
            ("column", ("time", "timeseries", "predefined")),
            ("gap", ("timeseries",)),
            ("n_repeats", ("kfold",)),
            ("groups", ("kfold",)),
        ):
            if getattr(self, extra) is not None and self.kind not in kinds:
                raise ValueError(
                    f"{extra!r} applies to split kind {' or '.join(map(repr, kinds))}, not {self.kind!r}"
                )
        if self.n_repeats is not None and (self.n_repeats < 1 or self.groups is not None):
            raise ValueError(
                f"n_repeats must be an int in the range [1, inf) and cannot be combined with groups, got {self.n_repeats}"
            )
        if self.gap is not None and self.gap < 0:
            raise ValueError(f"gap must be an int in the range [0, inf), got {self.gap}")
        if self.stratify and self.kind not in ("holdout", "kfold"):
            raise ValueError(
                f"stratify applies to split kind 'holdout' or 'kfold', not {self.kind!r}"
            )
        return self


class MetricSpec(_Strict):
    """A custom metric: a score function by import path, made into a scorer with ``make_scorer``."""

    name: str
    function: str
    greater_is_better: bool = True
    response_method: Literal["predict", "predict_proba", "decision_function"] = "predict"
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("function")
    @classmethod
    def _path(cls, v: str) -> str:
        if "." not in v:
            raise ValueError(
                f"function {v!r} must be a full import path such as 'sklearn.metrics.fbeta_score'"
            )
        return v


class ExecutionSpec(_Strict):
    """Execution settings. They are recorded; ``threads`` pins BLAS/OpenMP pools while fitting.

    ``keras_backend`` chooses the backend of Keras steps (else ``KERAS_BACKEND``, else torch).
    """

    threads: int = 1
    keras_backend: Literal["torch", "tensorflow", "jax"] | None = None

    @field_validator("threads")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError(f"threads must be an int in the range [1, inf), got {v}")
        return v


class Spec(_Strict):
    """A whole pipeline declaration. ``Spec.from_dict(s.to_dict()) == s`` always holds."""

    name: str
    seed: int
    description: str = ""
    data: DataSpec
    split: SplitSpec = Field(default_factory=SplitSpec)
    pipeline: list[StepSpec] = Field(min_length=1)
    metrics: list[str | MetricSpec] = Field(min_length=1)
    execution: ExecutionSpec = Field(default_factory=ExecutionSpec)

    @field_validator("seed")
    @classmethod
    def _seed_range(cls, v: int) -> int:
        if not 0 <= v < 2**63:
            raise ValueError(f"seed must be an int in the range [0, 2**63), got {v}")
        return v

    @model_validator(mode="after")
    def _unique_names(self) -> Spec:
        seen: set[str] = set()
        for step in self.pipeline:
            if step.name in seen:
                raise ValueError(
                    f"step name {step.name!r} is used twice; step names must be unique"
                )
            seen.add(step.name)
        names = self.metric_names
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"metric name(s) {twice} are used twice; metric names must be unique")
        return self

    @property
    def metric_names(self) -> list[str]:
        """The metrics' names, in order: scorer names and custom metrics' ``name``."""
        return [m if isinstance(m, str) else m.name for m in self.metrics]

    # -- conversions -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able dict with YAML key names; the canonical form of the spec."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], *, source: str | None = None, text: str | None = None
    ) -> Spec:
        """Validate a dict; errors name the key path, and the file and line when ``text`` is given."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise _spec_error(exc, source, text, data) from None

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def fingerprint(self) -> str:
        """The pipeline's identity. ``data.snapshot`` is left out: keeping a copy of the data
        changes where it is stored, never a result, so turning it on keeps every comparison."""
        from seedline.core.fingerprint import fingerprint_bytes

        d = self.to_dict()
        d["data"].pop("snapshot", None)
        text = json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return fingerprint_bytes(text.encode(), kind="spec")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def load_spec(path: str | Path, overrides: list[str] | None = None) -> Spec:
    """Read a YAML spec file, apply ``--set`` overrides, validate, and return the Spec."""
    p = Path(path)
    if p.is_dir():
        p = p / SPEC_FILENAME
    if not p.exists():
        near = sorted(str(x.name) for x in p.parent.glob("*.y*ml")) if p.parent.exists() else []
        raise SpecError(
            f"spec file {str(p)!r} does not exist",
            hint=("YAML files here: " + ", ".join(near))
            if near
            else "run 'seedline init' to scaffold one",
        )
    return read_spec(p, overrides)[0]


def read_spec(path: Path, overrides: list[str] | None = None) -> tuple[Spec, ComposedSpec]:
    """Like :func:`load_spec` for an existing file, and also say which files the spec came from."""
    from seedline.core.fingerprint import fingerprint_file

    composed = compose_file(path, parse_yaml, fingerprint_file)
    data = composed.data
    # a 'sweep:' section describes searches over the spec, not the pipeline: 'seedline sweep'
    # reads it; a run ignores it, and it is not part of the spec's fingerprint
    data.pop("sweep", None)
    if overrides:
        data = apply_overrides(data, overrides)
    # file:line in errors only where the lines are this file's own
    text = None if overrides or composed.composed else path.read_text(encoding="utf-8")
    return Spec.from_dict(data, source=str(path), text=text), composed


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    """Parse a spec's YAML text into a mapping; malformed or bomb-like YAML is a SpecError."""
    try:
        data = load_bounded(text)
    except YAMLExpansionError as exc:
        raise SpecError(
            str(exc),
            file=source,
            line=exc.line,
            hint="write the repeated values out, or use fewer nested aliases; a spec is limited "
            f"to {MAX_YAML_NODES:,} values",
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(
            f"malformed YAML: {problem}",
            file=source,
            line=mark.line + 1 if mark is not None else None,
            hint="check indentation and that every 'key: value' has a space after the colon",
        ) from None
    if not isinstance(data, dict):
        raise SpecError(
            f"expected a mapping of keys (name, seed, data, pipeline, metrics), found {type(data).__name__}",
            file=source,
            line=1,
        )
    return data


# -- overrides ---------------------------------------------------------------------------------
_STEP_KEYS = {
    "name",
    "class",
    "params",
    "transformers",
    "remainder",
    "columns",
    "dtype",
    "exclude",
    "selector",
    "steps",
}


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``path.to.key=value`` overrides to a spec dict (values parsed as YAML).

    Lists of named items (pipeline steps, column groups) are addressed by name; inside a
    step, a key that is not a step field is a parameter: ``pipeline.clf.C=1`` sets
    ``params.C`` of the step named ``clf``.
    """
    import copy

    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise SpecError(
                f"override {item!r} must look like path.to.key=value",
                hint="e.g. --set pipeline.clf.C=0.5",
            )
        path, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        _set_path(out, path.strip().split("."), value, path)
    return out


def _named_child(node: dict[str, Any], name: str) -> dict[str, Any] | None:
    """A column group of a step, or a step of a group, addressed by its name."""
    for key in ("transformers", "steps"):
        for item in node.get(key) or []:
            if isinstance(item, dict) and item.get("name") == name:
                return item
    return None


def _set_path(node: Any, parts: list[str], value: Any, full: str) -> None:
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            names = [x.get("name") for x in node if isinstance(x, dict)]
            if part not in names:
                raise SpecError(
                    f"override {full!r}: no item named {part!r} here; names are {', '.join(map(str, names))}.{did_you_mean(part, [str(n) for n in names])}"
                )
            if last:
                raise SpecError(
                    f"override {full!r} names a whole step; set one of its keys instead"
                )
            node = node[names.index(part)]
            continue
        if not isinstance(node, dict):
            raise SpecError(f"override {full!r}: {'.'.join(parts[:i])!r} is a value, not a mapping")
        child = _named_child(node, part)
        if child is not None and not last:
            node = child
            continue
        if "class" in node and part not in _STEP_KEYS:
            node = node.setdefault("params", {})
        if last:
            node[part] = value
            return
        # a key the file leaves out is created; validation then rejects names the schema lacks
        node = node.setdefault(part, {})


# -- errors that point at the file and line ------------------------------------------------------
def _named_path(loc: tuple[Any, ...], data: Any) -> str:
    """'pipeline.prep.transformers.cat.dtype' rather than 'pipeline.0.transformers.1.dtype'."""
    parts: list[str] = []
    node = data
    for part in loc:
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            node = node[part]
            name = node.get("name") if isinstance(node, dict) else None
            parts.append(str(name) if name else str(part))
        else:
            parts.append(str(part))
            node = node.get(part) if isinstance(node, dict) else None
    return ".".join(parts)


def _spec_error(
    exc: ValidationError, source: str | None, text: str | None, data: Any = None
) -> SpecError:
    # an unknown key explains a 'missing' one next to it (a typo), so report it first
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    err = errors[0]
    loc = tuple(err["loc"])
    path = _named_path(loc, data)
    line = _line_of(text, loc) if text is not None else None
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        msg = f"unknown key {path!r}" + did_you_mean(str(loc[-1]), allowed).replace(" Did", ". Did")
        hint = "allowed keys here: " + ", ".join(sorted(allowed)) if allowed else None
        return SpecError(msg, file=source, line=line, path=path, hint=hint)
    if err["type"] == "missing":
        return SpecError(f"missing required key {path!r}", file=source, line=line, path=path)
    text_msg = str(err["msg"]).removeprefix("Value error, ")
    got = err.get("input")
    detail = (
        f" (got {got!r})"
        if err["type"] not in ("value_error",) and not isinstance(got, dict | list)
        else ""
    )
    where = f"{path!r}: " if path else ""
    return SpecError(f"{where}{text_msg}{detail}", file=source, line=line, path=path)


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = Spec
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part)) or next(
            (f for f in model.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return []
        nested = _model_in(field.annotation)
        if nested is None:
            return []
        model = nested
    return [f.alias or n for n, f in model.model_fields.items()]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at ``loc`` (or of its nearest existing parent)."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = 1
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == str(part):
                    nxt = v
                    line = k.start_mark.line + 1
                    break
            node = nxt
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


StepSpec.model_rebuild()
ColumnGroupSpec.model_rebuild()
