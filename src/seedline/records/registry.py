"""The model registry: named models with integer versions, movable aliases, and the parity-check log.

A version points at the run that made it (and so at its data, code, environment and
seeds) and at the objects serving needs: the skops model, the manifest, the probe
predictions and the probe *input* rows stored at registration. References are
``NAME`` (the latest version), ``NAME@3`` (a version), ``NAME@alias`` and ``NAME@latest``.
Every parity check made before serving, batch prediction or export is logged here,
overrides included.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from seedline.core.errors import did_you_mean
from seedline.records import tracking
from seedline.records.reading import list_models
from seedline.records.tracking import Store
from seedline.records.versions import (
    ALIAS_PATTERN,
    VERSION_COLUMNS,
    ModelNotFoundError,
    ModelRef,
    ModelVersion,
    RegistryError,
    model_version,
)
from seedline.storage.metadata import (
    ModelAliasRow,
    ModelVersionRow,
    ParityCheckRow,
    RunRow,
    now_iso,
)

RESERVED_ALIASES = frozenset({"latest"})


def _version(row: ModelVersionRow, aliases: list[str]) -> ModelVersion:
    return model_version([getattr(row, column) for column in VERSION_COLUMNS], aliases)


class Registry:
    """The registry of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- writing ---------------------------------------------------------------------------
    def create_version(
        self,
        *,
        name: str,
        run_id: str,
        model_object: str,
        manifest_object: str,
        probe_object: str | None,
        probe_input_object: str | None,
        input_schema: dict[str, Any],
        model_fingerprint: str | None,
        predictions_fingerprint: str | None,
        description: str | None = None,
        trusted_local: list[str] | None = None,
    ) -> ModelVersion:
        """Add the next integer version of ``name`` (1 for a new name).

        ``trusted_local``: the run's own project-local classes that this version may load
        without ``--trust`` (the decision is recorded with the version).
        """
        ref = ModelRef.parse(name)
        if ref.version is not None or ref.alias is not None or "@" in name:
            raise RegistryError(
                f"register under a plain name, not {name!r}", hint="e.g. --name churn"
            )
        for _attempt in range(5):
            try:
                with self.store._transaction() as s:
                    if s.get(RunRow, run_id) is None:
                        raise RegistryError(f"run {run_id} is not in this store")
                    latest = s.scalar(
                        select(func.max(ModelVersionRow.version)).where(
                            ModelVersionRow.name == name
                        )
                    )
                    row = ModelVersionRow(
                        name=name,
                        version=int(latest or 0) + 1,
                        run_id=run_id,
                        created_at=now_iso(),
                        description=description,
                        model_object=model_object,
                        manifest_object=manifest_object,
                        probe_object=probe_object,
                        probe_input_object=probe_input_object,
                        input_schema=json.dumps(input_schema, sort_keys=True),
                        model_fingerprint=model_fingerprint,
                        predictions_fingerprint=predictions_fingerprint,
                        trusted_local=json.dumps(sorted(trusted_local)) if trusted_local else None,
                    )
                    s.add(row)
                return _version(row, [])
            except IntegrityError:
                continue  # another process took this version number at the same moment
        raise RegistryError(
            f"could not allocate a version of {name!r}: too many concurrent registrations"
        )

    def set_alias(self, name: str, alias: str, version: int) -> int | None:
        """Point ``name@alias`` at ``version``; returns the version it pointed at before, if any."""
        if not ALIAS_PATTERN.match(alias) or alias in RESERVED_ALIASES:
            raise RegistryError(
                f"{alias!r} cannot be an alias",
                hint="an alias starts with a letter, holds letters, digits, '_' or '-', and is not 'latest'",
            )
        self.get(name, version)
        with self.store._transaction() as s:
            row = s.get(ModelAliasRow, (name, alias))
            before = row.version if row is not None else None
            if row is None:
                s.add(ModelAliasRow(name=name, alias=alias, version=version, updated_at=now_iso()))
            else:
                row.version = version
                row.updated_at = now_iso()
        return before

    def remove_alias(self, name: str, alias: str) -> int:
        with self.store._transaction() as s:
            row = s.get(ModelAliasRow, (name, alias))
            if row is None:
                raise ModelNotFoundError(
                    f"model {name!r} has no alias {alias!r}.{did_you_mean(alias, self.aliases(name))}"
                )
            version = row.version
            s.execute(
                delete(ModelAliasRow).where(
                    ModelAliasRow.name == name, ModelAliasRow.alias == alias
                )
            )
        return version

    # -- reading ---------------------------------------------------------------------------
    def names(self) -> list[str]:
        with self.store._session() as s:
            return list(
                s.scalars(select(ModelVersionRow.name).distinct().order_by(ModelVersionRow.name))
            )

    def has_model(self, name: str) -> bool:
        with self.store._session() as s:
            return (
                s.scalar(
                    select(ModelVersionRow.version).where(ModelVersionRow.name == name).limit(1)
                )
                is not None
            )

    def aliases(self, name: str) -> list[str]:
        with self.store._session() as s:
            return sorted(s.scalars(select(ModelAliasRow.alias).where(ModelAliasRow.name == name)))

    def _aliases_by_version(self, name: str) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        with self.store._session() as s:
            for row in s.scalars(select(ModelAliasRow).where(ModelAliasRow.name == name)):
                out.setdefault(row.version, []).append(row.alias)
        return out

    def versions(self, name: str) -> list[ModelVersion]:
        aliases = self._aliases_by_version(name)
        with self.store._session() as s:
            rows = list(
                s.scalars(
                    select(ModelVersionRow)
                    .where(ModelVersionRow.name == name)
                    .order_by(ModelVersionRow.version)
                )
            )
        if not rows:
            self._unknown(name)
        return [_version(r, aliases.get(r.version, [])) for r in rows]

    def get(self, name: str, version: int) -> ModelVersion:
        with self.store._session() as s:
            row = s.get(ModelVersionRow, (name, version))
        if row is None:
            known = [v.version for v in self.versions(name)]
            raise ModelNotFoundError(
                f"model {name!r} has no version {version}",
                hint=f"its versions: {', '.join(map(str, known))}",
            )
        return _version(row, self._aliases_by_version(name).get(version, []))

    def resolve(self, ref: str | ModelRef) -> ModelVersion:
        """The version a reference means: NAME (latest), NAME@N, NAME@alias, NAME@latest."""
        r = ModelRef.parse(ref) if isinstance(ref, str) else ref
        if r.version is not None:
            return self.get(r.name, r.version)
        if r.alias is not None:
            with self.store._session() as s:
                row = s.get(ModelAliasRow, (r.name, r.alias))
            if row is None:
                if not self.has_model(r.name):
                    self._unknown(r.name)
                known = self.aliases(r.name)
                raise ModelNotFoundError(
                    f"model {r.name!r} has no alias {r.alias!r}.{did_you_mean(r.alias, known)}",
                    hint=(f"its aliases: {', '.join(known)}; " if known else "")
                    + f"set one with 'seedline alias {r.name}@{r.alias} VERSION'",
                )
            return self.get(r.name, row.version)
        with self.store._session() as s:
            latest = s.scalar(
                select(func.max(ModelVersionRow.version)).where(ModelVersionRow.name == r.name)
            )
        if latest is None:
            self._unknown(r.name)
        return self.get(r.name, int(latest or 0))

    def _unknown(self, name: str) -> NoReturn:
        names = self.names()
        raise ModelNotFoundError(
            f"no registered model is named {name!r}.{did_you_mean(name, names)}",
            hint=(
                f"registered models: {', '.join(names)}"
                if names
                else "register one with 'seedline register RUN --name NAME'"
            ),
        )

    def list_models(self) -> list[dict[str, Any]]:
        """One entry per name: latest version, number of versions, aliases, latest run."""
        with self.store._reader() as rows:
            return list_models(rows)

    def parity_history(self, *, run_id: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        with self.store._session() as s:
            q = select(ParityCheckRow).order_by(ParityCheckRow.id.desc()).limit(limit)
            if run_id is not None:
                q = q.where(ParityCheckRow.run_id == run_id)
            rows = list(s.scalars(q))
        return [
            {
                "at": r.at,
                "action": r.action,
                "model": r.model,
                "run_id": r.run_id,
                "verdict": r.verdict,
                "overridden": bool(r.overridden),
                "detail": json.loads(r.detail),
            }
            for r in rows
        ]

    def referenced_objects(self) -> set[str]:
        """Objects that registered versions need; store maintenance must keep them."""
        keep: set[str] = set()
        with self.store._session() as s:
            for row in s.scalars(select(ModelVersionRow)):
                keep.update(
                    x
                    for x in (
                        row.model_object,
                        row.manifest_object,
                        row.probe_object,
                        row.probe_input_object,
                    )
                    if x
                )
        return keep


def _registry_references(store: Store) -> set[str]:
    return Registry(store).referenced_objects()


# store maintenance (``seedline cache prune``) asks every registered hook what it must keep
_hooks = getattr(tracking, "_REFERENCE_HOOKS", None)
if isinstance(_hooks, list) and _registry_references not in _hooks:
    _hooks.append(_registry_references)


__all__ = [
    "ModelNotFoundError",
    "ModelRef",
    "ModelVersion",
    "Registry",
    "RegistryError",
]
