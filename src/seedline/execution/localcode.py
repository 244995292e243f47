"""Project-local modules that travel with a run, a model or a task, checked before they are imported.

A run records every project-local module it used (``manifest.code.local_modules``: its path
in the project, the hash of its bytes and of its tokens) and stores the module's source as
an object. Wherever the project folder is absent (a server, a Dask worker, a teammate's
machine), :class:`LocalCode` brings those modules back: each source is checked against the
hash the run recorded, then served to ``import`` by a finder placed first on
``sys.meta_path``, so ``features.Interactions`` resolves to the recorded ``features.py``
and never to another file that happens to be on ``sys.path``.

A module imported in this process already (from the project folder, say) is kept when its
source is the recorded one, and refused otherwise: one process cannot hold two versions of
a module.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from seedline.core.environment import source_fingerprint
from seedline.core.errors import SeedlineError
from seedline.core.fingerprint import fingerprint_bytes

_ORIGIN = "seedline-code"
"""The pseudo-folder tracebacks name for a module loaded from recorded sources."""


class LocalCodeError(SeedlineError):
    """Raised when a project-local module a model or task needs is missing, altered, or clashes with one already imported."""


@dataclass(frozen=True)
class LocalModule:
    """One project-local module: its import name, its path in the project, its source and recorded hashes."""

    name: str
    path: str
    source: bytes
    file: str
    """The recorded fingerprint of the file's bytes (``file:...``)."""
    tokens: str | None = None
    """The recorded fingerprint of its tokens (``source:...``), when recorded."""

    @property
    def is_package(self) -> bool:
        return Path(self.path).name == "__init__.py"

    def verify(self, where: str) -> None:
        """Raise LocalCodeError unless the source hashes to what was recorded."""
        found = file_fingerprint(self.source)
        if found != self.file:
            raise LocalCodeError(
                f"the source of module {self.name!r} ({self.path}) for {where} does not match the hash "
                f"recorded by the run (expected {self.file}, found {found})",
                hint="the stored or shipped source was altered; export or register the model again from the store",
            )
        if self.tokens is not None:
            text = self.source.decode("utf-8", errors="replace")
            if source_fingerprint(text) != self.tokens:
                raise LocalCodeError(
                    f"the source of module {self.name!r} ({self.path}) for {where} does not match its recorded token hash",
                    hint="export or register the model again from the store",
                )


def file_fingerprint(data: bytes) -> str:
    """The fingerprint a run records for a source file's bytes (the same as ``fingerprint_file``)."""
    return fingerprint_bytes(data, kind="file")


@dataclass(frozen=True)
class LocalCode:
    """The project-local modules of one run, checked against their recorded hashes."""

    modules: tuple[LocalModule, ...] = ()
    where: str = "this model"
    unstored: tuple[str, ...] = ()
    """Local modules the run recorded without storing their source (an older seedline)."""

    def __bool__(self) -> bool:
        return bool(self.modules)

    @property
    def names(self) -> list[str]:
        return sorted(m.name for m in self.modules)

    @classmethod
    def from_record(
        cls,
        local_modules: Mapping[str, Mapping[str, Any]],
        read: Callable[[str], bytes],
        *,
        where: str,
    ) -> LocalCode:
        """The modules a manifest records (``code.local_modules``), their sources read by object address.

        A module recorded without a stored source (a run of an older seedline) must be
        importable otherwise when the code is installed, or LocalCodeError says so.
        """
        modules: list[LocalModule] = []
        missing: list[str] = []
        for name, entry in sorted(local_modules.items()):
            address = entry.get("object")
            if not address:
                missing.append(name)
                continue
            modules.append(
                LocalModule(
                    name=name,
                    path=str(entry.get("path") or f"{name.replace('.', '/')}.py"),
                    source=read(str(address)),
                    file=str(entry.get("file")),
                    tokens=entry.get("source"),
                )
            )
        return cls(tuple(modules), where=where, unstored=tuple(missing))

    def record(self) -> dict[str, dict[str, Any]]:
        """Name -> path and hashes, as written beside an exported model."""
        return {m.name: {"path": m.path, "file": m.file, "source": m.tokens} for m in self.modules}

    def install(self) -> None:
        """Verify every source, then make the modules importable (first on ``sys.meta_path``)."""
        for m in self.modules:
            m.verify(self.where)
        for name in self.unstored:
            if name not in sys.modules and importlib.util.find_spec(name) is None:
                raise LocalCodeError(
                    f"{self.where} needs the project-local module {name!r}, whose source its run did not "
                    "store (it was made by an older seedline), and it is not importable here",
                    hint="load it from the project folder, or run the spec again and register the new run",
                )
        _FINDER.add(self.modules, self.where)


def project_modules(root: Path, names: Iterable[str]) -> list[LocalModule]:
    """``names`` and every project-local module they import (found through their globals), parents included.

    A module is project-local when its file lies under ``root`` and outside any
    ``site-packages``, or when it was itself loaded from recorded sources (a model loaded
    earlier in this process): the run then used, and records, that source. Only modules
    already imported in this process are considered.
    """
    root = root.resolve()

    def local(name: str) -> LocalModule | None:
        mod = sys.modules.get(name)
        recorded = _FINDER.served(name)
        if recorded is not None and getattr(mod, "__seedline_source__", None) == recorded.file:
            return recorded
        file = getattr(mod, "__file__", None)
        if not file:
            return None
        path = Path(file).resolve()
        if root not in path.parents or "site-packages" in path.parts:
            return None
        data = path.read_bytes()
        return LocalModule(
            name=name,
            path=path.relative_to(root).as_posix(),
            source=data,
            file=file_fingerprint(data),
            tokens=source_fingerprint(data.decode("utf-8", errors="replace")),
        )

    found: dict[str, LocalModule] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        module = local(name)
        if module is None:
            continue
        found[name] = module
        parent = name.rpartition(".")[0]
        if parent:
            todo.append(parent)
        for value in list(vars(sys.modules[name]).values()):
            dep = (
                value.__name__
                if isinstance(value, ModuleType)
                else getattr(value, "__module__", None)
            )
            if isinstance(dep, str) and dep not in found:
                todo.append(dep)
    return [found[n] for n in sorted(found)]


class _RecordedSourceFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves recorded project-local modules to ``import``, ahead of ``sys.path``."""

    def __init__(self) -> None:
        self._modules: dict[str, LocalModule] = {}
        self._lock = threading.Lock()

    def add(self, modules: Iterable[LocalModule], where: str) -> None:
        with self._lock:
            for m in modules:
                known = self._modules.get(m.name)
                if known is not None and known.file != m.file:
                    raise LocalCodeError(
                        f"{where} needs module {m.name!r} with source {m.file}, but this process already "
                        f"loaded another version of it ({known.file})",
                        hint="serve models whose local modules differ from separate processes",
                    )
                loaded = sys.modules.get(m.name)
                if known is None and loaded is not None:
                    current = _loaded_fingerprint(loaded)
                    if current == m.file:
                        continue  # imported already, from the very source recorded
                    if current != m.file:
                        raise LocalCodeError(
                            f"{where} needs module {m.name!r} as its run recorded it ({m.file}), but this process "
                            + (
                                f"already imported a different {m.name!r} ({current})"
                                if current
                                else f"already imported a {m.name!r} whose source cannot be read back to compare"
                            )
                            + (
                                f" from {loaded.__file__}"
                                if getattr(loaded, "__file__", None)
                                else ""
                            ),
                            hint="run from a folder where the module is the recorded one, or from a folder without it",
                        )
                self._modules[m.name] = m
            if self not in sys.meta_path:
                sys.meta_path.insert(0, self)

    def served(self, name: str) -> LocalModule | None:
        """The recorded module this finder serves under ``name``, if any."""
        return self._modules.get(name)

    def find_spec(
        self, fullname: str, path: Any = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        m = self._modules.get(fullname)
        if m is None:
            return None
        spec = importlib.util.spec_from_loader(
            fullname, self, origin=f"{_ORIGIN}/{m.path}", is_package=m.is_package
        )
        if spec is not None and m.is_package:
            spec.submodule_search_locations = []
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        m = self._modules[module.__name__]
        module.__seedline_source__ = m.file  # type: ignore[attr-defined]
        exec(compile(m.source, f"{_ORIGIN}/{m.path}", "exec"), module.__dict__)


def _loaded_fingerprint(module: ModuleType) -> str | None:
    recorded = getattr(module, "__seedline_source__", None)
    if isinstance(recorded, str):
        return recorded
    file = getattr(module, "__file__", None)
    if not file:
        return None
    try:
        return file_fingerprint(Path(file).read_bytes())
    except OSError:
        return None


_FINDER = _RecordedSourceFinder()


__all__ = ["LocalCode", "LocalCodeError", "LocalModule", "file_fingerprint", "project_modules"]
