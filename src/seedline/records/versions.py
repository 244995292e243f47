"""Registered model versions, read without SQLAlchemy: what ``serve``, ``predict`` and
``export`` need to find a model, and the parity check they log.

``Registry`` (``records.registry``) registers, aliases and lists through SQLAlchemy; a
command that only *uses* a model reads its version here as SQL text over a store's
``_reader`` (``records.reading``'s ``Rows``), so that on the embedded default it runs on the
standard library's ``sqlite3`` (``EmbeddedRecorder``) and never imports SQLAlchemy and the
store's models (about 0.35 s on two cores, most of what such a command waits for beyond the
plain script). Only the answer for a reference that exists is read here: a reference that
names nothing is handed to ``Registry``, which says what exists instead, in one place.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from seedline.core.errors import SeedlineError
from seedline.records.reading import Rows
from seedline.records.recording import RunRecords
from seedline.storage.embedded import now_iso

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
ALIAS_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,99}$")


class RegistryError(SeedlineError):
    """Raised when a model name, version or alias is malformed or unknown, or a registration is impossible."""


class ModelNotFoundError(RegistryError):
    """Raised when a model reference names no registered model, version or alias."""


@dataclass(frozen=True)
class ModelRef:
    """A parsed ``NAME``, ``NAME@VERSION`` or ``NAME@ALIAS``."""

    name: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        name, sep, tail = text.strip().partition("@")
        if not NAME_PATTERN.match(name):
            raise RegistryError(
                f"{name!r} is not a valid model name",
                hint="a name is 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit",
            )
        if not sep:
            return cls(name)
        if tail.isdigit():
            return cls(name, version=int(tail))
        if tail == "latest":
            return cls(name)
        if not ALIAS_PATTERN.match(tail):
            raise RegistryError(
                f"{tail!r} in {text!r} is neither a version number nor a valid alias",
                hint="write NAME@3 for version 3, or NAME@production for an alias",
            )
        return cls(name, alias=tail)

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


@dataclass
class ModelVersion:
    """One registered version and everything the registry knows about it."""

    name: str
    version: int
    run_id: str
    created_at: str
    description: str | None
    model_object: str
    manifest_object: str
    probe_object: str | None
    probe_input_object: str | None
    input_schema: dict[str, Any]
    model_fingerprint: str | None
    predictions_fingerprint: str | None
    aliases: list[str] = field(default_factory=list)
    trusted_local: list[str] = field(default_factory=list)
    """The run's own project-local classes this version may load without --trust (decided at registration)."""

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "run_id": self.run_id,
            "created_at": self.created_at,
            "description": self.description,
            "aliases": self.aliases,
            "objects": {
                "model": self.model_object,
                "manifest": self.manifest_object,
                "probe": self.probe_object,
                "probe_input": self.probe_input_object,
            },
            "fingerprints": {
                "model": self.model_fingerprint,
                "predictions": self.predictions_fingerprint,
            },
            "input_schema": self.input_schema,
            "trusted_local": self.trusted_local,
        }


# the columns of model_versions, in ModelVersion's order (aliases and trusted_local aside)
VERSION_COLUMNS = (
    "name",
    "version",
    "run_id",
    "created_at",
    "description",
    "model_object",
    "manifest_object",
    "probe_object",
    "probe_input_object",
    "input_schema",
    "model_fingerprint",
    "predictions_fingerprint",
    "trusted_local",
)


def model_version(values: Sequence[Any], aliases: list[str]) -> ModelVersion:
    """A version from its row's values (``VERSION_COLUMNS``, in that order) and its aliases."""
    row = dict(zip(VERSION_COLUMNS, values, strict=True))
    trusted = row.pop("trusted_local")
    return ModelVersion(
        **{**row, "version": int(row["version"]), "input_schema": json.loads(row["input_schema"])},
        trusted_local=json.loads(trusted) if trusted else [],
        aliases=sorted(aliases),
    )


def has_model(rows: Rows, name: str) -> bool:
    """Whether any version is registered under ``name``."""
    return bool(rows("SELECT 1 FROM model_versions WHERE name = :name LIMIT 1", {"name": name}))


def find_version(rows: Rows, ref: str | ModelRef) -> ModelVersion | None:
    """The version a reference means (NAME: the latest, NAME@N, NAME@alias), or None when it
    names nothing (``Registry.resolve`` then says what exists); a malformed reference raises."""
    r = ModelRef.parse(ref) if isinstance(ref, str) else ref
    version = r.version
    if r.alias is not None:
        found = rows(
            "SELECT version FROM model_aliases WHERE name = :name AND alias = :alias",
            {"name": r.name, "alias": r.alias},
        )
        version = int(found[0][0]) if found else None
    elif version is None:
        found = rows("SELECT MAX(version) FROM model_versions WHERE name = :name", {"name": r.name})
        version = int(found[0][0]) if found and found[0][0] is not None else None
    if version is None:
        return None
    values = rows(
        f"SELECT {', '.join(VERSION_COLUMNS)} FROM model_versions "
        "WHERE name = :name AND version = :version",
        {"name": r.name, "version": version},
    )
    if not values:
        return None
    aliases = rows(
        "SELECT alias FROM model_aliases WHERE name = :name AND version = :version",
        {"name": r.name, "version": version},
    )
    return model_version(values[0], [str(a[0]) for a in aliases])


PARITY_INSERT = (
    "INSERT INTO parity_checks (at, action, model, run_id, verdict, overridden, detail) "
    "VALUES (:at, :action, :model, :run_id, :verdict, :overridden, :detail)"
)


def record_parity(
    store: RunRecords,
    *,
    action: str,
    model: str | None,
    run_id: str,
    verdict: str,
    overridden: bool,
    detail: dict[str, Any],
) -> None:
    """Log one parity check (and whether a failed one was overridden) in the store."""
    values = {
        "at": now_iso(),
        "action": action,
        "model": model,
        "run_id": run_id,
        "verdict": verdict,
        "overridden": bool(overridden),
        "detail": json.dumps(detail, sort_keys=True, default=str),
    }
    with store._writer() as execute:
        execute(PARITY_INSERT, values)


__all__ = [
    "ModelNotFoundError",
    "ModelRef",
    "ModelVersion",
    "RegistryError",
    "find_version",
    "has_model",
    "model_version",
    "record_parity",
]
