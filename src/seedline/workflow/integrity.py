"""Checking a loaded model against a fingerprint obtained from somewhere the model file cannot edit.

A bundle records the SHA-256 of its files and the model fingerprint in the same folder as
the model, so anyone who can edit the model can edit those too: they detect damage, not a
deliberate change. ``--expect-fingerprint`` closes that gap. It takes the model fingerprint
(``model:...``, as ``seedline models show`` and ``seedline show`` print it) or a registry
reference or run id of the current project, and the loaded model's canonical fitted state
must hash to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seedline.core.errors import SeedlineError
from seedline.core.fingerprint import fingerprint_estimator, fingerprint_value


class FingerprintMismatchError(SeedlineError):
    """Raised when a loaded model does not hash to the fingerprint the user expects it to have."""


def model_fingerprint(model: Any) -> str:
    """The model fingerprint a run records: each pipeline step's fitted-state fingerprint, in order."""
    steps = getattr(model, "steps", None)
    if steps is None:
        return fingerprint_value([("model", fingerprint_estimator(model))], kind="model")
    return fingerprint_value(
        [(name, fingerprint_estimator(est)) for name, est in steps], kind="model"
    )


def expected_fingerprint(value: str, project: str | Path = ".") -> str:
    """``model:...`` as given, or the model fingerprint of a registry reference or run in the project's store."""
    if value.startswith("model:"):
        return value
    from seedline.workflow.registration import resolve_source

    try:
        source = resolve_source(value, start=project)
    except SeedlineError as exc:
        raise FingerprintMismatchError(
            f"--expect-fingerprint {value!r} is neither a model fingerprint (model:...) nor a model or run here: {exc.message}",
            hint="pass the fingerprint 'seedline models show NAME@VERSION' prints, or a registry reference",
        ) from exc
    if source.bundle is not None:
        raise FingerprintMismatchError(
            f"--expect-fingerprint {value!r} names a bundle folder: a bundle cannot vouch for itself",
            hint="pass a model fingerprint (model:...) or a registry reference",
        )
    fp = source.manifest.fingerprints.get("model")
    if not fp:
        raise FingerprintMismatchError(f"{source.ref} records no model fingerprint")
    return str(fp)


def verify_model_fingerprint(model: Any, expected: str, where: str) -> None:
    """Refuse ``model`` unless its canonical fitted state hashes to ``expected``."""
    actual = model_fingerprint(model)
    if actual != expected:
        raise FingerprintMismatchError(
            f"the model of {where} has the fingerprint {actual}, not the expected {expected}: "
            "it is not the model you meant to load",
            hint="export it again from the registry, or check which model the fingerprint belongs to with 'seedline models show'",
        )


__all__ = [
    "FingerprintMismatchError",
    "expected_fingerprint",
    "model_fingerprint",
    "verify_model_fingerprint",
]
