"""seedline: reproducible scikit-learn pipelines, from training to serving.

The public API is imported lazily so that ``import seedline`` (and ``seedline --help``)
stays fast and does not import scikit-learn.
"""

from __future__ import annotations

from seedline.core.version import __version__

# not `from typing import ...`: the CLI's launcher imports this package before anything else
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "Manifest",
    "RunResult",
    "SeedPlan",
    "SeedlineError",
    "Spec",
    "Store",
    "TableFingerprint",
    "__version__",
    "check",
    "data_file",
    "determinism",
    "diff",
    "fingerprint_array",
    "fingerprint_estimator",
    "fingerprint_file",
    "fingerprint_table",
    "fingerprint_value",
    "load_spec",
    "reproduce",
    "run",
    "sweep",
]

_LAZY = {
    "Manifest": "seedline.records.manifest",
    "RunResult": "seedline.execution.runner",
    "SeedPlan": "seedline.core.seeding",
    "SeedlineError": "seedline.core.errors",
    "Spec": "seedline.core.spec",
    "Store": "seedline.records.tracking",
    "TableFingerprint": "seedline.core.fingerprint",
    "fingerprint_array": "seedline.core.fingerprint",
    "fingerprint_estimator": "seedline.core.fingerprint",
    "fingerprint_file": "seedline.core.fingerprint",
    "fingerprint_table": "seedline.core.fingerprint",
    "fingerprint_value": "seedline.core.fingerprint",
    "load_spec": "seedline.core.spec",
    "run": "seedline.execution.runner",
    "reproduce": "seedline.workflow.reproduce",
    "check": "seedline.workflow.check",
    "determinism": "seedline.core.determinism",
    "data_file": "seedline.core.determinism",
    "sweep": "seedline.workflow.sweep",
}

if TYPE_CHECKING:
    from seedline.core.determinism import data_file, determinism
    from seedline.core.errors import SeedlineError
    from seedline.core.fingerprint import (
        TableFingerprint,
        fingerprint_array,
        fingerprint_estimator,
        fingerprint_file,
        fingerprint_table,
        fingerprint_value,
    )
    from seedline.core.seeding import SeedPlan
    from seedline.core.spec import Spec, load_spec
    from seedline.execution.runner import RunResult, run
    from seedline.records.manifest import Manifest
    from seedline.records.tracking import Store
    from seedline.workflow.check import check
    from seedline.workflow.reproduce import reproduce
    from seedline.workflow.sweep import sweep


def diff(run_a: str, run_b: str, *, store: Any = None) -> Any:
    """Why do two runs (ids, prefixes or manifest files) differ? Returns a DiffReport."""
    from seedline.records.tracking import Store
    from seedline.workflow.compare import diff_manifests
    from seedline.workflow.reproduce import load_manifest

    store = store or Store.find()
    return diff_manifests(load_manifest(run_a, store), load_manifest(run_b, store))


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'seedline' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
