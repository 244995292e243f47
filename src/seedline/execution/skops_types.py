"""Importing skops without crawling scikit-learn, and the estimator types skops trusts.

``import skops.io`` builds its default trusted list by calling scikit-learn's
``all_estimators()``, which imports every module of scikit-learn and, through the
array-API shims, PyTorch when it is installed: seconds (tens of seconds under load)
billed to whatever first saves or loads a model. ``skops_io()`` imports skops with that
crawl turned into an empty list, and ``untrusted_types`` then adds to skops' default list,
one file at a time, exactly the types of that file that ``all_estimators()`` would have
listed: public, concrete scikit-learn estimators. Loading checks the same types as before;
only the modules the model itself uses are imported.

The default list is the one skops keeps (``SKLEARN_ESTIMATOR_TYPE_NAMES``), extended in
place, so every later ``skops.io.loads`` in the process sees the additions. Code that uses
skops directly in a process where seedline imported it first sees a shorter default list:
stricter, never looser.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import threading
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
            import skops.io
        finally:
            sklearn.utils.all_estimators = real
        return skops.io


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
