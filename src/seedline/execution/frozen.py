"""Steps taken already fitted from a registered model or a run (spec key ``from: MODEL/STEP``).

Building on an earlier model is the point of pipelines: a new run may reuse, say, the
preprocessing that ``penguins@production`` fitted, without refitting it. The step is loaded
from the source run's stored model (through the one model loader, with the same trust
rules as ``serve``), wrapped in scikit-learn's ``FrozenEstimator`` (its ``fit`` does
nothing), and recorded with where it came from. Its fitted-state fingerprint must equal
the one the source run recorded for that step.

A reference names a model (``NAME``, ``NAME@VERSION``, ``NAME@ALIAS``) or a run id, then
the step. What it resolved to (the run id) is recorded, so that ``reproduce`` takes the
step from the same run even after the alias has moved on (``pins``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seedline.core.errors import SeedlineError, did_you_mean
from seedline.core.spec import Spec
from seedline.execution.persist import load_model, model_types
from seedline.records.manifest import FrozenSourceRecord, Manifest


class FrozenStepError(SeedlineError):
    """Raised when a step cannot be taken from the model or run its spec names."""


@dataclass
class FrozenStep:
    """A fitted step loaded from its source, and where it came from."""

    estimator: Any
    source: FrozenSourceRecord


def frozen_steps_of(spec: Spec) -> dict[str, tuple[str, str]]:
    """{step name: (model or run, source step)} of the spec's steps taken from a model."""
    return {s.name: src for s in spec.pipeline if (src := s.frozen_source) is not None}


def resolve_frozen_steps(
    spec: Spec, root: Path, pins: dict[str, str] | None = None
) -> dict[str, FrozenStep]:
    """Load every ``from:`` step of ``spec`` from the project's store.

    ``pins`` maps a step name to the run id it must come from (``reproduce`` passes what
    the original run recorded, so a moved alias does not change the proof).
    """
    wanted = frozen_steps_of(spec)
    if not wanted:
        return {}
    from seedline.records.tracking import Store

    store = Store.find(root)
    try:
        return {
            name: _load(store, name, model_ref, step, (pins or {}).get(name))
            for name, (model_ref, step) in wanted.items()
        }
    finally:
        store.close()


def _source_run(
    store: Any, model_ref: str, where: str
) -> tuple[Manifest, str | None, list[str] | None]:
    """The run a model reference or run id means, the NAME@VERSION it named, and the local types
    its registration trusted (None for a run id: the run's own project-local classes)."""
    from seedline.records.registry import ModelRef, Registry

    registry = Registry(store)
    name = ModelRef.parse(model_ref).name if "@" in model_ref else model_ref
    if registry.has_model(name):
        version = registry.resolve(model_ref)
        return (
            store.manifest(version.run_id),
            f"{version.name}@{version.version}",
            list(version.trusted_local),
        )
    if "@" in model_ref:
        registry.resolve(model_ref)  # raises the registry's own 'no model named' error
    try:
        manifest = store.manifest(model_ref)
    except SeedlineError as exc:
        raise FrozenStepError(
            f"{where}: {model_ref!r} is neither a registered model nor a run of this store",
            hint="give a model as NAME, NAME@VERSION or NAME@ALIAS ('seedline models' lists them) or a run id ('seedline runs')",
        ) from exc
    return manifest, None, None


def _load(store: Any, name: str, model_ref: str, step: str, pin: str | None) -> FrozenStep:
    where = f"pipeline.{name} (from {model_ref}/{step})"
    trusted: list[str] | None
    if pin is not None:
        manifest, model, trusted = store.manifest(pin), None, None
        model_ref_note = f"{model_ref} (pinned to run {pin})"
    else:
        manifest, model, trusted = _source_run(store, model_ref, where)
        model_ref_note = model_ref
    recorded = {s.name: s for s in manifest.steps}
    if step not in recorded:
        raise FrozenStepError(
            f"{where}: run {manifest.run_id} has no top-level step {step!r}.{did_you_mean(step, list(recorded))}",
            hint=f"its steps: {', '.join(recorded)}",
        )
    address = manifest.artifacts.get("model")
    if manifest.status != "succeeded" or not address:
        raise FrozenStepError(
            f"{where}: run {manifest.run_id} has no saved model (status {manifest.status!r})"
        )
    # the run's own project-local classes are trusted as its registration decided (for a run
    # id: the classes of the modules it ran from this project); anything else must be on the
    # trusted list, as for 'serve'
    data = store.objects.get(address)
    if trusted is None:
        own = [n for n in manifest.code.local_modules]
        trusted = [t for t in model_types(data) if any(t.startswith(f"{m}.") for m in own)]
    pipeline = load_model(data, trusted=trusted, where=f"the model of {model_ref_note}")
    fitted_step = dict(getattr(pipeline, "steps", [])).get(step)
    if fitted_step is None:
        raise FrozenStepError(
            f"{where}: the saved model of run {manifest.run_id} has no step {step!r}"
        )
    return FrozenStep(
        estimator=fitted_step,
        source=FrozenSourceRecord(
            ref=f"{model_ref}/{step}",
            run_id=manifest.run_id,
            step=step,
            model=model,
            fitted=recorded[step].fitted,
        ),
    )


def freeze(estimator: Any) -> Any:
    """scikit-learn's FrozenEstimator around a fitted estimator: fit does nothing, the rest delegates."""
    from sklearn.frozen import FrozenEstimator

    return FrozenEstimator(estimator)


__all__ = [
    "FrozenStep",
    "FrozenStepError",
    "freeze",
    "frozen_steps_of",
    "resolve_frozen_steps",
]
