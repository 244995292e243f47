"""Training-serving parity: before a model serves, predicts a batch or is exported, it re-predicts
its probe set and must give what it gave at training time.

In the environment the run was made in (same interpreter and packages, same CPU family)
the predictions and probabilities must be *bitwise* equal. Elsewhere they may differ within
a stated tolerance (``|a - b| <= atol + rtol * |b|``), but class labels must still agree.
On a mismatch the action is refused and the report says what differs; an explicit
override lets it go on, and every check, overridden or not, is logged in the registry.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seedline.core.errors import SeedlineError
from seedline.records.manifest import EnvironmentRecord
from seedline.workflow.deviation import DEFAULT_ATOL, DEFAULT_RTOL, bitwise_equal, compare_arrays
from seedline.workflow.registration import ModelSource


class ParityError(SeedlineError):
    """Raised when a model no longer predicts its probe set as it did at training time."""

    def __init__(self, report: ParityReport) -> None:
        super().__init__(
            f"parity check failed for {report.model} (run {report.run_id}) before {report.action}: {report.summary()}",
            hint="find the cause with 'seedline reproduce RUN'; to go on anyway pass --allow-parity-mismatch (it is logged)",
        )
        self.report = report


@dataclass
class ParityReport:
    """What re-predicting the probe set showed."""

    action: str
    model: str
    run_id: str
    verdict: str = "failed"  # bitwise | tolerance | failed
    same_environment: bool = True
    rows: int = 0
    predictions: dict[str, Any] = field(default_factory=dict)
    proba: dict[str, Any] | None = None
    tolerance: dict[str, float] = field(default_factory=dict)
    environment: list[str] = field(default_factory=list)
    batching: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    overridden: bool = False

    @property
    def ok(self) -> bool:
        return self.verdict in ("bitwise", "tolerance")

    def summary(self) -> str:
        if self.verdict == "bitwise":
            return f"bitwise: {self.rows} probe rows predicted exactly as at training time"
        if self.verdict == "tolerance":
            dev = (self.proba or {}).get("max_abs", self.predictions.get("max_abs", 0.0))
            return (
                f"within tolerance: {self.rows} probe rows, largest deviation {dev:.3g} "
                f"(rtol={self.tolerance.get('rtol')}, atol={self.tolerance.get('atol')}; "
                f"environment differs: {', '.join(self.environment[:3]) or 'platform'})"
            )
        return "; ".join(self.problems) or "the probe predictions differ"

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "model": self.model,
            "run_id": self.run_id,
            "verdict": self.verdict,
            "ok": self.ok,
            "summary": self.summary(),
            "same_environment": self.same_environment,
            "rows": self.rows,
            "predictions": self.predictions,
            "proba": self.proba,
            "tolerance": self.tolerance,
            "environment": self.environment,
            "batching": self.batching,
            "problems": self.problems,
            "seconds": round(self.seconds, 4),
            "overridden": self.overridden,
        }


def normalise_predictions(pred: Any) -> np.ndarray:
    """Predictions as the run stored them: object labels become fixed-width strings."""
    arr = np.asarray(pred)
    if arr.dtype == object:
        arr = arr.astype(str)
    return arr


def environment_differences(recorded: EnvironmentRecord) -> list[str]:
    """What separates this interpreter from the run's: Python, packages, CPU (empty: same environment)."""
    from seedline.core.environment import capture_environment
    from seedline.workflow.compare import diff_environment, diff_platform

    if recorded.fingerprint is None:
        return ["the run recorded no environment"]
    now = EnvironmentRecord.model_validate(capture_environment())
    diffs = [
        d for d in diff_environment(recorded, now) if d.name.startswith(("python ", "package "))
    ]
    diffs += [d for d in diff_platform(recorded, now) if d.name in ("cpu machine", "cpu simd")]
    return [f"{d.name}: {d.a} -> {d.b}" for d in diffs]


def check_parity(
    model: Any,
    source: ModelSource,
    *,
    action: str,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
) -> ParityReport:
    """Re-predict the probe set with ``model`` and compare with the predictions stored at training time.

    Whether rows predicted one at a time match them predicted together is a separate check
    (:func:`check_batching`), which a server runs once it is ready.
    """
    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    report = ParityReport(
        action=action,
        model=source.ref,
        run_id=source.run_id,
        rows=len(source.probe_input),
        tolerance={"rtol": rtol, "atol": atol},
    )
    report.environment = environment_differences(source.manifest.environment)
    report.same_environment = not report.environment
    X = source.probe_input
    threads = source.manifest.settings.threads
    want_pred = source.probe.get("predictions")
    want_proba = source.probe.get("proba")
    try:
        with threadpool_limits(limits=threads):
            got_pred = normalise_predictions(model.predict(X))
            got_proba = (
                np.asarray(model.predict_proba(X))
                if want_proba is not None and hasattr(model, "predict_proba")
                else None
            )
    except Exception as exc:
        report.verdict = "failed"
        report.problems.append(
            f"the model raised while predicting its probe set: {type(exc).__name__}: {exc}"
        )
        report.seconds = time.perf_counter() - t0
        return report

    if want_pred is None:
        report.problems.append("the run stored no probe predictions")
        report.seconds = time.perf_counter() - t0
        return report

    # labels
    pred_info: dict[str, Any] = {"bitwise": bitwise_equal(got_pred, want_pred)}
    labels_ok = pred_info["bitwise"]
    if not labels_ok:
        if got_pred.shape != want_pred.shape:
            report.problems.append(
                f"predictions have shape {got_pred.shape}, expected {want_pred.shape}"
            )
        elif want_pred.dtype.kind in "fc" and got_pred.dtype.kind in "fciu":
            pred_info.update(compare_arrays(got_pred, want_pred, rtol=rtol, atol=atol))
            labels_ok = not report.same_environment and pred_info["within"]
            if not labels_ok:
                report.problems.append(
                    f"predictions deviate by up to {pred_info['max_abs']:.3g} (row {pred_info['at'][0] if pred_info['at'] else '?'})"
                    + (
                        " in the same environment, where they must be bitwise equal"
                        if report.same_environment
                        else f", beyond rtol={rtol}, atol={atol}"
                    )
                )
        else:
            a, b = got_pred.astype(str), want_pred.astype(str)
            differ = np.flatnonzero(a != b) if a.shape == b.shape else np.arange(len(a))
            pred_info["differing"] = int(differ.size)
            if differ.size:
                i = int(differ[0])
                pred_info["first"] = {"row": i, "expected": str(b[i]), "got": str(a[i])}
                report.problems.append(
                    f"{differ.size} of {len(b)} predictions differ; first at probe row {i}: expected {b[i]!r}, got {a[i]!r}"
                )
            else:
                # same labels, different dtype (e.g. int32 vs int64)
                pred_info["dtype"] = {"expected": str(want_pred.dtype), "got": str(got_pred.dtype)}
                labels_ok = not report.same_environment
                if not labels_ok:
                    report.problems.append(
                        f"predictions have dtype {got_pred.dtype}, expected {want_pred.dtype}"
                    )
    report.predictions = pred_info

    # probabilities
    proba_ok = True
    proba_bitwise = True
    if want_proba is not None:
        if got_proba is None:
            report.problems.append(
                "the run stored probabilities but the model has no predict_proba"
            )
            proba_ok = False
        elif got_proba.shape != want_proba.shape:
            report.problems.append(
                f"probabilities have shape {got_proba.shape}, expected {want_proba.shape}"
            )
            proba_ok = False
        else:
            info = compare_arrays(got_proba, want_proba, rtol=rtol, atol=atol)
            report.proba = info
            proba_bitwise = info["bitwise"]
            if not proba_bitwise:
                if report.same_environment:
                    proba_ok = False
                    report.problems.append(
                        f"probabilities differ by up to {info['max_abs']:.3g} at probe row {info['at'][0]}, "
                        "in the same environment, where they must be bitwise equal"
                    )
                elif not info["within"]:
                    proba_ok = False
                    report.problems.append(
                        f"probabilities differ by up to {info['max_abs']:.3g} at probe row {info['at'][0]}, "
                        f"beyond rtol={rtol}, atol={atol}"
                    )
    if report.problems:
        report.verdict = "failed"
        if not report.same_environment:
            report.problems.append("environment differs: " + "; ".join(report.environment[:5]))
    elif pred_info["bitwise"] and proba_bitwise:
        report.verdict = "bitwise"
    else:
        report.verdict = "tolerance" if labels_ok and proba_ok else "failed"

    report.seconds = time.perf_counter() - t0
    return report


def check_batching(model: Any, source: ModelSource, rows: int) -> dict[str, Any]:
    """Whether ``rows`` probe rows predicted one at a time match them predicted together, bit for bit.

    ``{"rows_checked": n, "consistent": bool}``; a model that raises is not consistent. A
    server runs it once it is ready (``check_parity`` already passed), and batches
    requests only when it says so.
    """
    from threadpoolctl import threadpool_limits

    X = source.probe_input.iloc[: max(rows, 0)]
    try:
        with threadpool_limits(limits=source.manifest.settings.threads):
            got_pred = normalise_predictions(model.predict(X))
            got_proba = (
                np.asarray(model.predict_proba(X))
                if source.probe.get("proba") is not None and hasattr(model, "predict_proba")
                else None
            )
            consistent = all(
                bitwise_equal(
                    np.asarray(normalise_predictions(model.predict(X.iloc[[i]]))[0]), got_pred[i]
                )
                and (
                    got_proba is None
                    or bitwise_equal(np.asarray(model.predict_proba(X.iloc[[i]]))[0], got_proba[i])
                )
                for i in range(len(X))
            )
    except Exception:
        return {"rows_checked": 0, "consistent": False}
    return {"rows_checked": len(X), "consistent": bool(consistent)}


def enforce(report: ParityReport, source: ModelSource, *, allow_mismatch: bool) -> ParityReport:
    """Log the check; raise ParityError on a failed one unless the user overrode it."""
    report.overridden = bool(allow_mismatch and not report.ok)
    if source.store is not None:
        from seedline.records.versions import record_parity

        record_parity(
            source.store,
            action=report.action,
            model=source.ref if source.registered is not None else None,
            run_id=report.run_id,
            verdict=report.verdict,
            overridden=report.overridden,
            detail=report.to_dict(),
        )
    if not report.ok and not allow_mismatch:
        raise ParityError(report)
    return report


__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_RTOL",
    "ParityError",
    "ParityReport",
    "check_batching",
    "check_parity",
    "enforce",
    "environment_differences",
    "normalise_predictions",
]
