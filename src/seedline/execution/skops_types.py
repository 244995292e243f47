"""Importing skops without crawling scikit-learn, the estimator types skops trusts, and writing skops files.

``import skops.io`` builds its default trusted list by calling scikit-learn's
``all_estimators()``, which imports every module of scikit-learn and, through the
array-API shims, PyTorch when it is installed: seconds (tens of seconds under load)
billed to whatever first saves or loads a model. ``skops_io()`` imports skops with that
crawl turned into an empty list, and ``untrusted_types`` then adds to skops' default list,
one file at a time, exactly the types of that file that ``all_estimators()`` would have
listed: public, concrete scikit-learn estimators. Loading checks the same types as before;
only the modules the model itself uses are imported.

At the same import skops names the module of each SciPy ufunc (they carry no
``__module__``) by asking every loaded module for it with ``getattr``: hundreds of ufuncs
times the thousands of modules a seedline command has loaded, most of them misses that
build and drop an ``AttributeError``, about a second. ``_module_of`` gives the same answer,
in the same order, reading plain modules' ``__dict__`` and falling back to ``getattr``
for any module that could answer otherwise (a ``__getattr__``, a module subclass); it
stands in for skops' lookup only while skops is being imported.

The default list is the one skops keeps (``SKLEARN_ESTIMATOR_TYPE_NAMES``), extended in
place, so every later ``skops.io.loads`` in the process sees the additions. Code that uses
skops directly in a process where seedline imported it first sees a shorter default list:
stricter, never looser.

``skops_dumps`` writes what ``skops.io.dumps`` writes, with the schema on one line (see
there for why), and answers skops' "is this array written yet" from a view of the names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import inspect
import json
import sys
import threading
import warnings
import zipfile
from collections.abc import Callable, Iterator, KeysView, Sequence
from contextlib import contextmanager
from io import BytesIO
from types import ModuleType
from typing import Any

# modules all_estimators() leaves out (sklearn.utils.discovery._MODULE_TO_IGNORE)
_IGNORED_PARTS = frozenset(
    {"tests", "externals", "setup", "conftest", "experimental", "estimator_checks"}
)
_import_lock = threading.Lock()


def _no_estimators(type_filter: Any = None) -> list[tuple[str, type]]:
    return []


def skops_io() -> ModuleType:
    """``skops.io``, imported without ``all_estimators()`` when it is not loaded yet.

    Whoever imported it first, it leaves knowing seedline's pandas node (idempotent).
    """
    from seedline.execution.skops_pandas import register

    module = _import_skops()
    register()
    _register_stable_states()
    return module


def _import_skops() -> ModuleType:
    loaded = sys.modules.get("skops.io")
    if loaded is not None:
        return loaded
    with _import_lock:
        loaded = sys.modules.get("skops.io")
        if loaded is not None:
            return loaded
        import sklearn.utils

        # skops reads the name at its own import (``from sklearn.utils import all_estimators``)
        real = sklearn.utils.all_estimators
        sklearn.utils.all_estimators = _no_estimators
        try:
            with _fast_module_lookup():
                import skops.io
        finally:
            sklearn.utils.all_estimators = real
        return skops.io


_SKOPS_UTILS = "skops.io._utils"
_MISSING = object()
_NO_NAMES: dict[str, Any] = {}


class _LoadedModules:
    """``sys.modules`` in order, each plain module's namespace beside it, and an index of the
    names they hold; rebuilt whenever ``sys.modules`` changes.

    The index (``first``: each name, the first namespace holding it) stands in for a scan of
    every namespace per lookup (a quarter of a millisecond each over the two thousand modules
    of a run, on a machine with slow memory). It is exact as long as no namespace gains a name
    while ``sys.modules`` stays as it is, which holds for every module but those still being
    imported (``live``), whose namespaces are read again at every lookup. The lookup stands in
    for skops' only while skops imports (``_fast_module_lookup``, which starts each import
    with a fresh index): between two lookups only skops' module code runs then, binding names
    in its own modules, which are live. Code that binds a name in a module imported earlier,
    with nothing imported meanwhile (an import hook could), is not seen until the next import.
    """

    def __init__(self) -> None:
        self.key: tuple[int, int, str | None] = (0, -1, None)
        self.names: list[str] = []
        self.modules: list[Any] = []
        self.namespaces: list[dict[str, Any]] = []
        self.special: list[int] = []  # positions getattr must ask: a module subclass, a non-module
        self.live: list[int] = []  # plain modules still being imported
        self.hooks: list[int] = []  # the other plain modules with a module-level __getattr__
        self.first: dict[str, int] = {}

    def forget(self) -> None:
        """Build afresh at the next lookup, whatever ``sys.modules`` looks like then."""
        self.key = (0, -1, None)

    def current(self) -> _LoadedModules:
        modules = sys.modules
        key = (id(modules), len(modules), next(reversed(modules), None))
        if key != self.key:
            self.key = key
            self.names, self.modules = list(modules), list(modules.values())
            self.namespaces, self.special, self.live, self.hooks = [], [], [], []
            for i, (name, module) in enumerate(zip(self.names, self.modules, strict=True)):
                skip = name in ("__main__", "__mp_main__") or module is None
                plain = type(module) is ModuleType and isinstance(module.__dict__, dict)
                self.namespaces.append(module.__dict__ if plain and not skip else _NO_NAMES)
                if skip:
                    continue
                if not plain:
                    self.special.append(i)
                elif _importing(module):
                    self.live.append(i)
                elif "__getattr__" in module.__dict__:
                    self.hooks.append(i)
            live = set(self.live)
            first: dict[str, int] = {}
            for i in range(len(self.namespaces) - 1, -1, -1):  # the earliest holder wins
                if i not in live:
                    first.update(dict.fromkeys(self.namespaces[i], i))
            self.first = first
        return self

    def holder(self, name: str, obj: Any) -> int:
        """The position of the first namespace whose ``name`` is ``obj`` (``len`` when none)."""
        spaces = self.namespaces
        hit = len(spaces)
        start = self.first.get(name)
        if start is not None:
            hit = next(
                (i for i in range(start, len(spaces)) if spaces[i].get(name, _MISSING) is obj),
                hit,
            )
        # still being imported, so possibly holding more now than when indexed; in order
        return next((i for i in self.live if i < hit and spaces[i].get(name, _MISSING) is obj), hit)


def _importing(module: ModuleType) -> bool:
    """Whether the import system is still running this module's code (its namespace may grow)."""
    spec = module.__dict__.get("__spec__")
    return getattr(spec, "_initializing", False) is True


_loaded = _LoadedModules()


def _module_of(obj: Any, name: str, fallback: Callable[[Any, str], str]) -> str:
    """What ``skops.io._utils.whichmodule(obj, name)`` answers, without a miss per module.

    The first loaded module (in ``sys.modules`` order, ``__main__`` skipped) whose attribute
    ``name`` is ``obj``. A plain module answers ``getattr`` from its ``__dict__`` (for a name
    that is not a dunder, which the module type itself could answer), so the first such
    module is found from the index of names (``_LoadedModules``); any module before it that
    could answer otherwise (a ``__getattr__``, a module subclass, not a module) is asked as
    skops asks it.
    """
    module_name = getattr(obj, "__module__", None)
    if module_name is not None:
        return str(module_name)
    if "." in name or name.startswith("__"):
        return fallback(obj, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = _loaded.current()
        hit = loaded.holder(name, obj)
        spaces = loaded.namespaces
        ask = sorted(
            [i for i in loaded.special if i < hit]
            + [i for i in loaded.hooks if i < hit]
            + [i for i in loaded.live if i < hit and "__getattr__" in spaces[i]]
        )
        for i in ask:
            try:
                if getattr(loaded.modules[i], name, _MISSING) is obj:
                    return loaded.names[i]
            except (AttributeError, ImportError):
                continue
    return loaded.names[hit] if hit < len(spaces) else "__main__"


class _PatchSkopsUtils(importlib.abc.MetaPathFinder):
    """Finds ``skops.io._utils`` as usual and, once it has run, points its lookup at ``_module_of``."""

    def __init__(self) -> None:
        self.patched: ModuleType | None = None
        self.original: Callable[[Any, str], str] | None = None

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _SKOPS_UTILS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            original = getattr(module, "whichmodule", None)
            if callable(original):
                self.patched, self.original = module, original
                module.whichmodule = lambda obj, name: _module_of(obj, name, original)  # type: ignore[attr-defined]

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


@contextmanager
def _fast_module_lookup() -> Iterator[None]:
    """skops' module lookup is ``_module_of`` while skops imports; skops' own afterwards."""
    if _SKOPS_UTILS in sys.modules:
        yield
        return
    finder = _PatchSkopsUtils()
    sys.meta_path.insert(0, finder)
    _loaded.forget()
    try:
        yield
    finally:
        _loaded.forget()
        sys.meta_path.remove(finder)
        if finder.patched is not None:
            finder.patched.whichmodule = finder.original  # type: ignore[attr-defined]


# every member's time: a dump's bytes depend on the model alone, not on when it was written
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class _NamedZipFile(zipfile.ZipFile):
    """A ``ZipFile`` whose ``namelist()`` is a live view of the member names, and whose members
    written by name carry a fixed time.

    skops asks ``name not in zip_file.namelist()`` before writing each array; the stock
    ``namelist()`` builds a list each time, quadratic over a forest's hundreds of arrays
    (9 ms of a 150-tree forest's 46 ms dump). The view (``NameToInfo``'s keys: the names
    written, as ``filelist`` holds them) answers ``in`` with one dictionary lookup; in write
    mode nothing else in ``zipfile`` calls ``namelist()``.

    ``writestr(name, ...)`` stamps a member with the time of writing and the system it is
    written on (0 on Windows, 3 elsewhere); here they are :data:`ZIP_TIME` and 3, otherwise
    the member is what the stock ``writestr`` makes of a name (the archive's compression,
    mode 0600).
    """

    def namelist(self) -> KeysView[str]:  # type: ignore[override]
        return self.NameToInfo.keys()

    def writestr(
        self,
        zinfo_or_arcname: str | zipfile.ZipInfo,
        data: Any,
        compress_type: int | None = None,
        compresslevel: int | None = None,
    ) -> None:
        if not isinstance(zinfo_or_arcname, zipfile.ZipInfo):
            info = zipfile.ZipInfo(zinfo_or_arcname, date_time=ZIP_TIME)
            info.compress_type = self.compression
            info.create_system = 3  # as written on Unix, wherever it is written
            info.external_attr = 0o600 << 16
            zinfo_or_arcname = info
        super().writestr(zinfo_or_arcname, data, compress_type, compresslevel)


_BY_VALUE = frozenset({int, float, str, bool, type(None)})


def _numbering_context(zip_file: zipfile.ZipFile) -> Any:
    """skops' ``SaveContext``, numbering objects in the order it meets them rather than by
    ``id()``: the ``__id__`` of each object in the schema, and the name of each array's file.

    An ``id()`` is a memory address, different in every process, so the same model gave
    different bytes from one dump to the next. The numbers only say which occurrences are one
    object (skops' loader shares them), as the ids did: each object is kept alive in the memo
    for the whole dump, as skops keeps it, so no two objects share an id meanwhile, nor a
    number. A plain number, string, ``True``/``False`` or ``None`` is numbered by its type and
    value instead: whether two equal ones are one object is Python's interning, not the
    model's, and they load as equal values either way. Numbers start at 1: skops' loader
    skips an ``__id__`` of 0.
    """
    from skops.io._utils import SaveContext

    numbers: dict[int, int] = {}

    class _Numbering(SaveContext):
        stable = True  # what _register_stable_states' functions look for
        # record arrays written with their padding zeroed, by the id of the array they copy
        zeroed: dict[int, Any] = {}  # noqa: RUF012 - a class made for one dump

        def memoize(self, obj: Any) -> int:
            kind = type(obj)
            # a number, a string, None: by value (which objects share one is interning, an
            # accident of how the model was built); anything else by identity
            key: Any = (kind, repr(obj) if kind is float else obj) if kind in _BY_VALUE else id(obj)
            number = numbers.get(key)
            if number is None:
                self.memo[id(obj)] = obj
                number = numbers[key] = len(numbers) + 1
            return number

    return _Numbering(zip_file=zip_file)


def _stable(save_context: Any) -> bool:
    """Whether ``save_context`` is a dump of ``skops_dumps`` (any other dump is skops' own)."""
    return getattr(save_context, "stable", False) is True


def _ndarray_state(obj: Any, save_context: Any) -> dict[str, Any]:
    """skops' state of an array; in a dump of ``skops_dumps``, a record array is written from
    a copy whose padding bytes are zero.

    A record's padding is whatever memory held before (scikit-learn's tree nodes have 7 such
    bytes in each 64), and ``np.save`` writes it as it is: the same tree gave different bytes.
    The copy is made once per array, field by field into zeros of the same memory order, so
    two occurrences of one array are still one file; the values, and what loads, are the same.
    """
    from skops.io._numpy import ndarray_get_state

    if _stable(save_context) and getattr(obj, "dtype", None) is not None and obj.dtype.fields:
        zeroed = save_context.zeroed
        clean = zeroed.get(id(obj))
        if clean is None:
            import numpy as np

            # zeros from the allocator (np.zeros_like fills field by field: padding untouched)
            fortran = obj.flags.f_contiguous and not obj.flags.c_contiguous
            clean = np.zeros(obj.shape, dtype=obj.dtype, order="F" if fortran else "C")
            clean[...] = obj  # record to record assignment goes field by field
            zeroed[id(obj)] = clean
            save_context.memo.setdefault(-id(obj), obj)  # its id stays its own meanwhile
        obj = clean
    return ndarray_get_state(obj, save_context)


def _element_key(value: Any) -> tuple[str, str, str]:
    kind = type(value)
    return (kind.__module__, kind.__qualname__, repr(value))


def _set_state(obj: Any, save_context: Any) -> dict[str, Any]:
    """skops' state of a set; in a dump of ``skops_dumps``, its elements in a stable order.

    A set iterates in hash order, which for strings changes with ``PYTHONHASHSEED``: its
    elements are written sorted by type and ``repr`` (an element whose ``repr`` names a memory
    address keeps an order that can differ; a set loads the same whatever the order).
    """
    from skops.io._general import set_get_state
    from skops.io._utils import get_module, get_state

    if not _stable(save_context):
        return set_get_state(obj, save_context)
    try:
        values = sorted(obj, key=_element_key)
    except Exception:  # a repr that fails: the set's own order
        values = list(obj)
    return {
        "__class__": obj.__class__.__name__,
        "__module__": get_module(type(obj)),
        "__loader__": "SetNode",
        "content": [get_state(value, save_context) for value in values],
    }


def _bytes_state(obj: Any, save_context: Any) -> dict[str, Any]:
    """skops' state of ``bytes`` or a ``bytearray``; in a dump of ``skops_dumps``, its member is
    named by its content (skops names it by a random UUID, so every dump differed)."""
    from skops.io._general import bytearray_get_state, bytes_get_state
    from skops.io._utils import get_module

    if not _stable(save_context):
        stock = bytearray_get_state if isinstance(obj, bytearray) else bytes_get_state
        return stock(obj, save_context)
    import blake3

    name = f"bytes-{blake3.blake3(obj).hexdigest()[:40]}.bin"
    if name not in save_context.zip_file.NameToInfo:
        save_context.zip_file.writestr(name, bytes(obj))
    return {
        "__class__": obj.__class__.__name__,
        "__module__": get_module(type(obj)),
        "__loader__": "BytearrayNode" if isinstance(obj, bytearray) else "BytesNode",
        "file": name,
    }


def _register_stable_states() -> None:
    """Route skops' arrays, sets and bytes through the functions above, which write the same
    thing in every dump of ``skops_dumps`` and what skops writes in any other (idempotent)."""
    import numpy as np
    from skops.io import _utils

    for kind, state in (
        (np.ndarray, _ndarray_state),
        (set, _set_state),
        (bytes, _bytes_state),
        (bytearray, _bytes_state),
    ):
        if _utils._get_state.dispatch(kind) is not state:
            _utils._get_state.register(kind)(state)


def skops_dumps(obj: Any) -> bytes:
    """``skops.io.dumps(obj)``, with the schema written without indentation.

    skops writes its ``schema.json`` with ``json.dumps(state, indent=2)``, and the standard
    library only encodes in C without an indent: a forest of 200 trees has a schema of
    hundreds of thousands of values, which the pure-Python encoder takes about 0.2 s to
    write (0.45 s to 0.27 s for the whole dump, 4.3 MB to 2.6 MB). This writes the same zip
    as ``dumps`` (the arrays through skops' own ``get_state``, the same members, the same
    schema as JSON data; a test compares the two) with the schema compact; ``skops.io.loads``
    reads either. The zip is a ``_NamedZipFile``, for skops' checks of the names written.

    Unlike ``dumps``, the bytes depend on the model (and the libraries' versions), not on
    when, where or in which process it was written: the members' time and system are fixed,
    objects are numbered rather than named by ``id()`` (``_numbering_context``), record
    arrays are written with zeroed padding, sets in a sorted order and bytes under names
    taken from their content (``_register_stable_states``). Limits in docs/manifest.md.
    """
    skops_io()  # imported the seedline way, with seedline's types registered
    import skops
    from skops.io._utils import get_state

    buffer = BytesIO()
    with _NamedZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zip_file:
        context = _numbering_context(zip_file)
        state = get_state(obj, context)
        context.clear_memo()
        state["protocol"] = context.protocol
        state["_skops_version"] = skops.__version__
        zip_file.writestr("schema.json", json.dumps(state, separators=(",", ":")))
    return buffer.getvalue()


def is_listed_estimator(type_name: str) -> bool:
    """Would ``sklearn.utils.all_estimators()`` list this type (``module.ClassName``)?

    It lists the public, concrete ``BaseEstimator`` subclasses found as public attributes
    of scikit-learn's public modules (no ``._`` in the path, no tests). Only the type's own
    module is imported (and its parents, which Python imports with it).
    """
    module_name, _, class_name = type_name.rpartition(".")
    parts = module_name.split(".")
    if parts[0] != "sklearn" or not class_name or class_name.startswith("_"):
        return False
    if class_name == "BaseEstimator" or any(p in _IGNORED_PARTS for p in parts):
        return False
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return False
    cls = getattr(module, class_name, None)
    from sklearn.base import BaseEstimator

    if not (isinstance(cls, type) and issubclass(cls, BaseEstimator)) or inspect.isabstract(cls):
        return False
    # a public module that exposes it: its own, or the nearest public package above it
    for end in range(len(parts), 1, -1):
        candidate = ".".join(parts[:end])
        if "._" in candidate:
            continue
        owner = sys.modules.get(candidate)
        if owner is not None and getattr(owner, class_name, None) is cls:
            return True
    return False


def untrusted_types(data: bytes) -> list[str]:
    """The types in a skops file that skops' default list does not trust, as stock skops says.

    The file's public scikit-learn estimators are added to the default list on the way, so
    that ``skops.io.loads`` of the same bytes trusts them as a stock import of skops would.
    """
    sio = skops_io()
    found = list(sio.get_untrusted_types(data=data))
    listed = [t for t in found if is_listed_estimator(t)]
    if listed:
        from skops.io import _trusted_types

        defaults: list[str] = _trusted_types.SKLEARN_ESTIMATOR_TYPE_NAMES
        defaults.extend(t for t in listed if t not in defaults)
    return [t for t in found if t not in listed]
