"""The manifest: a run's lock file, a schema-versioned JSON document.

``docs/manifest.md`` explains every field; ``docs/manifest.schema.json`` is generated from
these models (``python -m seedline.records.manifest``) and a test keeps the two in sync.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from seedline.records.reading import MANIFEST_SCHEMA_VERSION as SCHEMA_VERSION


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Record(BaseModel):
    """A manifest section whose keys are known but not all always present.

    It dumps exactly the keys it was given (or that were set since), so a manifest reads
    back and writes out byte for byte as it was stored, whichever seedline version wrote
    it; absent keys read as their defaults.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_serializer(mode="wrap")
    def _only_given(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if k in self.model_fields_set}

    def as_dict(self) -> dict[str, Any]:
        """The section as plain JSON data (what the capture functions produced)."""
        return self.model_dump(mode="json")


class PythonInfo(_Record):
    version: str = ""
    implementation: str = ""
    compiler: str = ""
    executable: str = ""


class PlatformInfo(_Record):
    system: str = ""
    release: str = ""
    platform: str = ""
    libc: str = ""


class CPUInfo(_Record):
    machine: str = ""
    count: int | None = None
    model: str | None = None
    simd: list[str] = Field(
        default_factory=list,
        description="SSE/AVX/FMA/NEON/SVE/AMX flags: they decide the kernels BLAS picks.",
    )


class EnvironmentRecord(_Record):
    """The machine a run ran on; empty when the run failed before it was captured."""

    python: PythonInfo = Field(default_factory=PythonInfo)
    platform: PlatformInfo = Field(default_factory=PlatformInfo)
    cpu: CPUInfo = Field(default_factory=CPUInfo)
    packages: dict[str, str] = Field(
        default_factory=dict, description="Every installed distribution: name -> version."
    )
    thread_pools: list[dict[str, Any]] = Field(
        default_factory=list, description="BLAS/OpenMP libraries loaded (threadpoolctl)."
    )
    env_vars: dict[str, str] = Field(
        default_factory=dict, description="Environment variables that affect results."
    )
    fingerprint: str | None = Field(default=None, description="env:... fingerprint.")


class LocalModule(_Record):
    path: str = Field(description="Path relative to the project.")
    source: str = Field(description="source:... hash without comments and docstrings.")
    file: str = Field(description="file:... hash of the bytes.")
    object: str | None = Field(
        default=None,
        description="Address of the stored source in the object store (runs since the code travels with the model).",
    )


class ScriptRecord(_Record):
    """The script a ``seedline exec`` run executed."""

    path: str = Field(description="Path relative to the project.")
    fingerprint: str = Field(description="file:... hash of the script's bytes.")


class CodeRecord(_Record):
    """The code a run used: git state and the project's own modules."""

    repository: bool = False
    reason: str | None = Field(default=None, description="Why there is no git information.")
    root: str | None = None
    commit: str | None = None
    dirty: bool = False
    changed_files: list[str] = Field(default_factory=list)
    untracked_files: list[str] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    diff: str | None = Field(default=None, description="diff:... of the uncommitted changes.")
    untracked_not_captured: list[str] = Field(default_factory=list)
    local_modules: dict[str, LocalModule] = Field(default_factory=dict)
    script: ScriptRecord | None = Field(default=None, description="For a script run: the script.")
    diff_object: str | None = Field(
        default=None, description="For a script run: address of the stored uncommitted diff."
    )


class SettingsRecord(_Record):
    """How the run executed."""

    threads: int = Field(default=1, description="BLAS/OpenMP threads (execution.threads).")
    executor: str = Field(default="serial", description="serial, processes or dask.")
    workers: int = 1
    address: str | None = Field(default=None, description="The Dask scheduler, if external.")
    cache: bool | None = Field(default=None, description="Whether the step cache was used.")
    frameworks: list[str] | None = Field(
        default=None, description="For a script run: the deep-learning frameworks it controlled."
    )
    library_controls: dict[str, dict[str, Any]] | None = Field(
        default=None,
        description="Determinism switches seedline filled for LightGBM/XGBoost steps, by parameter path.",
    )


class ProbeRecord(_Record):
    """The probe set: rows whose predictions parity checks compare."""

    set: str | None = Field(default=None, description="'test split' or 'every row' (k-fold).")
    rows: int | None = None
    input: str | None = Field(default=None, description="Fingerprint of the probe rows.")
    predictions: str | None = None
    proba: str | None = None


class FoldRecord(_Record):
    fold: int
    train_rows: int
    test_rows: int
    test_index: str | None = None
    key: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    model: str | None = None
    steps: list[dict[str, Any]] = Field(default_factory=list)
    predictions: str | None = None
    seconds: float | None = None
    seed: int | None = None


class CVRecord(_Record):
    """k-fold cross-validation: each fold, then each metric's mean and std over the folds."""

    folds: list[FoldRecord] = Field(default_factory=list)
    mean: dict[str, float] = Field(default_factory=dict)
    std: dict[str, float] = Field(default_factory=dict)
    workers: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


class SeedRecord(_M):
    master: int = Field(description="The spec's master seed.")
    hash_seed: dict[str, Any] = Field(
        description="PYTHONHASHSEED the interpreter ran with, and whether it was pinned."
    )
    derived: dict[str, int] = Field(
        description="Every seed derived from the plan: stable path -> 32-bit seed."
    )
    random_states: dict[str, dict[str, Any]] = Field(
        description="Every random_state parameter of the pipeline: param path -> {seed, source: plan|explicit}."
    )
    globals: dict[str, Any] = Field(
        description="Global generators seeded before fitting (python.random, numpy.random, torch ...)."
    )


class SourceRecord(_M):
    uri: str = Field(
        description="Path relative to the project, an fsspec URL, sklearn:load_NAME, sql:QUERY.sql or python:module:function."
    )
    kind: Literal["csv", "parquet", "sklearn", "fsspec", "sql", "python"]
    fingerprint: str = Field(
        description="file:... for files and URLs (their bytes); for bundled datasets, SQL queries and loaders, the table fingerprint."
    )
    bytes: int | None = None
    rows: int
    table: dict[str, Any] = Field(
        description="Table fingerprint of this source: digest, rows, schema, columns."
    )
    snapshot: str | None = Field(
        default=None,
        description="Object address of a copy of the file kept in the store (data snapshot), or null.",
    )
    query: str | None = Field(
        default=None, description="sql: the fingerprint of the query file (file:...)."
    )
    database: str | None = Field(
        default=None, description="sql: the database URL the query ran on, password hidden."
    )
    module: str | None = Field(default=None, description="python: the loader function's module.")
    code: str | None = Field(
        default=None, description="python: the fingerprint of the loader module's source file."
    )


class DataRecord(_M):
    sources: list[SourceRecord]
    table: dict[str, Any] = Field(
        description="Fingerprint of the combined table, with one hash per column."
    )
    target: str
    features: list[str]
    split: dict[str, Any] = Field(
        description="Split kind, seed, sizes and fingerprints of the row indices."
    )


class FrozenSourceRecord(_M):
    ref: str = Field(
        description="The spec's MODEL/STEP as written, e.g. 'penguins@production/prep'."
    )
    run_id: str = Field(
        description="The run whose fitted step was taken (what the reference resolved to)."
    )
    step: str
    model: str | None = Field(
        default=None, description="NAME@VERSION when the reference named a registered model."
    )
    fitted: str = Field(
        description="The source step's fitted-state fingerprint, as its run recorded it."
    )


class StepRecord(_M):
    name: str
    path: str = Field(description="Position in the pipeline, e.g. 'pipeline/clf'.")
    cls: str = Field(alias="class")
    fitted: str = Field(description="estimator:... fingerprint of the canonical fitted state.")
    output: str | None = Field(
        description="Fingerprint of the step's transformed output on the training data (null for the final step)."
    )
    output_shape: list[int] | None = None
    fit_seconds: float
    resolved_columns: dict[str, list[str]] | None = Field(
        default=None, description="For ColumnTransformer steps: the columns each group selected."
    )
    cache: Literal["hit", "miss", "uncacheable", "off"] | None = Field(
        default=None,
        description="Step cache: hit (loaded), miss (fitted and stored), uncacheable (output type not cacheable), off; null when the run did not use the cache.",
    )
    layers: dict[str, str] | None = Field(
        default=None,
        description="For deep-learning steps: layer -> layer:... fingerprint of its weights, in the network's order (torch submodule names; Keras 'position:Class'). reproduce names the first that differs.",
    )
    frozen_from: FrozenSourceRecord | None = Field(
        default=None,
        description="For a step taken fitted from a model or a run (spec key 'from'): where it came from. Its 'fitted' fingerprint equals the source step's.",
    )

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SpecFileRecord(_M):
    path: str = Field(description="Relative to the spec's folder.")
    role: Literal["spec", "extends", "blocks"]
    fingerprint: str


class SpecSourcesRecord(_M):
    """Where a composed spec (``extends`` / ``use``) came from."""

    files: list[SpecFileRecord] = Field(
        description="The spec file, the files it extends and the block files it uses, with their fingerprints."
    )
    origin: dict[str, str] = Field(
        default_factory=dict,
        description="Flattened spec key (pipeline.clf.params.C) -> file that set it, for values not set by the spec file itself.",
    )


class Manifest(_M):
    schema_version: int = SCHEMA_VERSION
    seedline_version: str
    run_id: str
    parent_run: str | None = None
    status: Literal["running", "succeeded", "failed"]
    created_at: str
    finished_at: str | None = None
    spec: dict[str, Any] = Field(description="The canonical spec, overrides applied.")
    spec_fingerprint: str
    overrides: list[str] = Field(default_factory=list, description="The --set overrides, as given.")
    spec_sources: SpecSourcesRecord | None = Field(
        default=None,
        description="For a spec that uses 'extends' or 'use': the files it was composed from.",
    )
    project_root: str = Field(
        description="Absolute path of the project when the run was made (informative)."
    )
    seeds: SeedRecord | None = None
    settings: SettingsRecord = Field(
        default_factory=SettingsRecord,
        description="Execution settings: threads, executor, workers.",
    )
    data: DataRecord | None = None
    environment: EnvironmentRecord = Field(default_factory=EnvironmentRecord)
    code: CodeRecord = Field(default_factory=CodeRecord)
    steps: list[StepRecord] = Field(default_factory=list)
    fingerprints: dict[str, str | None] = Field(
        default_factory=dict,
        description="Headline fingerprints: model, predictions, spec, data, environment, code.",
    )
    probe: ProbeRecord = Field(
        default_factory=ProbeRecord, description="The probe set and its predictions."
    )
    metrics: dict[str, float] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds per phase.")
    artifacts: dict[str, str] = Field(
        default_factory=dict, description="Object addresses: model (skops), diff, ..."
    )
    error: dict[str, Any] | None = None
    warnings: list[str] = Field(
        default_factory=list,
        description="Problems that did not stop the run, e.g. a feature column that is entirely missing.",
    )
    cv: CVRecord | None = Field(
        default=None,
        description="k-fold runs: per fold its rows, metrics, fingerprints and seed; then each metric's mean and std (the headline metrics are the means).",
    )
    sweep: dict[str, Any] | None = Field(
        default=None,
        description="A sweep trial: the sweep's id, the trial's key and its overrides.",
    )
    reproduction: dict[str, Any] | None = Field(
        default=None,
        description="For a run made by 'seedline reproduce': the original run, the verdict, the first divergent step, deviations and differences.",
    )

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        """Parse a manifest; a newer schema or a malformed document is a clear error."""
        import json

        from pydantic import ValidationError

        from seedline.core.errors import SeedlineError

        try:
            version = json.loads(text).get("schema_version")
        except (ValueError, AttributeError):
            raise SeedlineError(
                "not a seedline manifest: the document is not a JSON object"
            ) from None
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise SeedlineError(
                f"manifest schema version {version} is newer than this seedline understands ({SCHEMA_VERSION})",
                hint="upgrade seedline to read it",
            )
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            raise SeedlineError(
                f"not a seedline manifest (schema version {SCHEMA_VERSION}): {where}: {first['msg']}",
                hint="make one with 'seedline show RUN --json > run.json'",
            ) from None


def json_schema() -> dict[str, Any]:
    schema = Manifest.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"seedline run manifest, schema version {SCHEMA_VERSION}"
    return schema


if __name__ == "__main__":  # pragma: no cover - regenerates docs/manifest.schema.json
    sys.stdout.write(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")
