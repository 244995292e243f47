"""Where a project's store lives: ``seedline.toml`` (committed with the project), overridden by the environment.

The store's location is deliberately *not* part of the spec: moving a store (or pointing a
clone at the team store) must never change a spec fingerprint. A project declares it in
``seedline.toml`` beside ``seedline.yaml``::

    [store]                                  # the store `seedline run` uses
    database = "postgresql+psycopg://ana@db.internal/seedline"
    objects = "s3://ml-team/seedline"

    [store.objects_options]                  # passed to fsspec / s3fs
    endpoint_url = "http://127.0.0.1:8333"

    [remotes.team]                           # a named remote for push / pull
    database = "postgresql+psycopg://ana@db.internal/seedline"
    objects = "s3://ml-team/seedline"

    [data.s3]                                # passed to fsspec when a data source is an s3:// URL
    endpoint_url = "http://127.0.0.1:8333"

``SEEDLINE_DATABASE_URL`` and ``SEEDLINE_OBJECTS_URL`` override ``[store]``. Without either,
the store is the embedded one: ``.seedline/metadata.db`` and ``.seedline/objects``.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from seedline.core.errors import StoreError, did_you_mean
from seedline.storage.embedded import (
    CONFIG_FILENAME,
    DATABASE_ENV,
    DATABASE_FILENAME,
    OBJECTS_DIRNAME,
    OBJECTS_ENV,
)
from seedline.storage.urls import normalise_database_url, redact_text, redact_url

REMOTE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


class StoreLocation(BaseModel):
    """A database URL and an objects URL (either may be left to its default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    database: str | None = None
    objects: str | None = None
    objects_options: dict[str, Any] = {}

    @field_validator("database")
    @classmethod
    def _database_url(cls, v: str | None) -> str | None:
        if v is None:
            return None
        if "://" not in v:
            raise ValueError(
                f"database must be a SQLAlchemy URL such as sqlite:///path/metadata.db or "
                f"postgresql+psycopg://user@host/db, got {redact_url(v)!r}"
            )
        return normalise_database_url(v)

    def redacted(self) -> dict[str, Any]:
        """This location with passwords hidden, for display."""
        return {
            "database": redact_url(self.database) if self.database else None,
            "objects": redact_url(self.objects) if self.objects else None,
        }


class ProjectConfig(BaseModel):
    """The contents of ``seedline.toml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: StoreLocation = StoreLocation()
    remotes: dict[str, StoreLocation] = {}
    # fsspec protocol -> filesystem options for data sources read by URL (``[data.s3]``)
    data: dict[str, dict[str, Any]] = {}

    def data_options(self, protocol: str) -> dict[str, Any]:
        """The options ``[data.PROTOCOL]`` gives for data sources read through fsspec."""
        return dict(self.data.get(protocol, {}))

    @field_validator("remotes")
    @classmethod
    def _remote_names(cls, v: dict[str, StoreLocation]) -> dict[str, StoreLocation]:
        for name in v:
            if not REMOTE_NAME.match(name):
                raise ValueError(
                    f"remote name {name!r} must start with a letter and hold letters, digits, '_' or '-'"
                )
        return v

    def remote(self, name: str) -> StoreLocation:
        """The remote called ``name``, or a StoreError listing the declared ones."""
        try:
            return self.remotes[name]
        except KeyError:
            known = sorted(self.remotes)
            raise StoreError(
                f"no remote named {name!r} in {CONFIG_FILENAME}.{did_you_mean(name, known)}",
                hint=(f"declared remotes: {', '.join(known)}; " if known else "")
                + f"declare one as [remotes.{name}] with database = ... and objects = ... in {CONFIG_FILENAME}",
            ) from None


def load_project_config(project_root: str | Path) -> ProjectConfig:
    """``seedline.toml`` of the project (an empty config when there is none)."""
    path = Path(project_root) / CONFIG_FILENAME
    if not path.is_file():
        return ProjectConfig()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise StoreError(
            f"{path}: cannot be read as TOML: {exc}",
            hint="see docs/storage.md for the format of seedline.toml",
        ) from None
    try:
        return ProjectConfig.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                leaf = str(err["loc"][-1])
                allowed = (
                    ["store", "remotes", "data"]
                    if len(err["loc"]) == 1
                    else list(StoreLocation.model_fields)
                )
                msg = f"unknown key.{did_you_mean(leaf, allowed)}"
            # pydantic would echo the input, which may hold a password
            problems.append(f"{where}: {redact_text(msg)}")
        raise StoreError(
            f"{path}: " + "; ".join(problems),
            hint="[store] and [remotes.NAME] accept database, objects and objects_options (docs/storage.md); "
            "[data.PROTOCOL] holds fsspec options for data sources (docs/spec.md)",
        ) from None


@dataclass(frozen=True)
class ResolvedStore:
    """The URLs a store opens with, and where each one came from (for ``seedline`` to explain itself)."""

    database_url: str
    objects_url: str
    objects_options: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def redacted(self) -> dict[str, str]:
        return {"database": redact_url(self.database_url), "objects": redact_url(self.objects_url)}


def anchor_url(url: str, project_root: Path) -> str:
    """Relative local paths (``sqlite:///rel.db``, ``objects/``) are relative to the project, not to the shell's folder."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rest = url[len("sqlite:///") :]
        if rest and not rest.startswith(":memory:") and not Path(rest).is_absolute():
            return f"sqlite:///{(project_root / rest).resolve()}"
    if "://" not in url and not Path(url).expanduser().is_absolute():
        return str((project_root / url).resolve())
    return url


def resolve_store(store_dir: str | Path, project_root: str | Path | None = None) -> ResolvedStore:
    """The database and objects URLs of the store at ``store_dir``: environment > seedline.toml > embedded."""
    store_dir = Path(store_dir)
    root = Path(project_root) if project_root is not None else store_dir.parent
    cfg = load_project_config(root).store
    database, objects, sources = None, None, {}
    if os.environ.get(DATABASE_ENV):
        database, sources["database"] = os.environ[DATABASE_ENV], f"${DATABASE_ENV}"
    elif cfg.database:
        database, sources["database"] = anchor_url(cfg.database, root), CONFIG_FILENAME
    if os.environ.get(OBJECTS_ENV):
        objects, sources["objects"] = os.environ[OBJECTS_ENV], f"${OBJECTS_ENV}"
    elif cfg.objects:
        objects, sources["objects"] = anchor_url(cfg.objects, root), CONFIG_FILENAME
    if database is None:
        database, sources["database"] = f"sqlite:///{store_dir / DATABASE_FILENAME}", "embedded"
    if objects is None:
        objects, sources["objects"] = str(store_dir / OBJECTS_DIRNAME), "embedded"
    return ResolvedStore(
        database_url=normalise_database_url(database),
        objects_url=objects,
        objects_options=dict(cfg.objects_options),
        sources=sources,
    )


__all__ = [
    "CONFIG_FILENAME",
    "DATABASE_ENV",
    "OBJECTS_ENV",
    "ProjectConfig",
    "ResolvedStore",
    "StoreLocation",
    "anchor_url",
    "load_project_config",
    "resolve_store",
]
