"""The model behind the endpoints: loading, the parity gate, readiness, metadata.

Statuses: ``loading`` (the server is bound and answers 503 while the model loads),
``ready``, ``not ready`` (the parity check failed: the server stays up and says why) and
``failed`` (the model could not be loaded at all: ``seedline serve`` exits non-zero).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from seedline.core import collector
from seedline.core.errors import SeedlineError
from seedline.serving.batching import Batcher
from seedline.serving.metrics import Metrics
from seedline.serving.protocol import jsonable
from seedline.workflow.registration import ModelSource

if TYPE_CHECKING:
    from seedline.serving.app import ServeConfig

server_log = logging.getLogger("seedline.serve")


class ServedModel:
    """The model behind the endpoints: loading, parity, readiness and prediction."""

    def __init__(self, source: ModelSource, config: ServeConfig, metrics: Metrics) -> None:
        self.source = source
        self.config = config
        self.metrics = metrics
        self.name = source.name
        self.version = source.version
        self.schema = source.schema
        self.status = "loading"
        self.reason: str | None = None
        self.hint: str | None = None
        self.parity: dict[str, Any] | None = None
        self.model: Any = None
        self.batcher: Batcher | None = None
        self.has_proba = source.probe.get("proba") is not None
        self.classes: list[Any] | None = None
        self.trusted_override = source.untrusted_types() if config.trust else []

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    @property
    def failed(self) -> bool:
        """The model could not be loaded at all (not merely a failed parity check)."""
        return self.status == "failed"

    def load(self) -> None:
        """Load with skops, re-predict the probe set, decide readiness (runs once, after the server is bound)."""
        from threadpoolctl import threadpool_limits

        from seedline.workflow.integrity import verify_model_fingerprint
        from seedline.workflow.parity import ParityError, check_parity, enforce

        try:
            model = self.source.load(trust=self.config.trust)
            if self.config.expect_fingerprint:
                verify_model_fingerprint(model, self.config.expect_fingerprint, self.source.ref)
            # the thread count of training, for every prediction of this process
            threadpool_limits(limits=self.source.manifest.settings.threads)
            # readiness waits on the probe set only; rows one at a time are checked after
            report = check_parity(model, self.source, action="serve")
            if self.trusted_override:
                report.batching["trusted_types_override"] = self.trusted_override
            self.parity = report.to_dict()
            self.metrics.parity = report.verdict
            try:
                enforce(report, self.source, allow_mismatch=self.config.allow_parity_mismatch)
            except ParityError as exc:
                self.status, self.reason = "not ready", exc.message
                server_log.error("%s; the server stays not ready (hint: %s)", exc.message, exc.hint)
                return
            if report.overridden:
                server_log.warning(
                    "parity check FAILED but --allow-parity-mismatch was given (logged): %s",
                    report.summary(),
                )
            else:
                server_log.info("parity check passed: %s", report.summary())
        except SeedlineError as exc:
            self.status, self.reason = "failed", exc.message
            self.hint = exc.hint
            server_log.error("cannot load %s: %s", self.source.ref, exc.message)
            return
        except Exception as exc:  # a model that cannot load stops the server (see serving.app)
            self.status, self.reason = "failed", f"{type(exc).__name__}: {exc}"
            server_log.exception("cannot load %s", self.source.ref)
            return
        self.model = model
        self.schema = self.schema.with_unseen_policies(model)
        final = model.steps[-1][1] if hasattr(model, "steps") else model
        classes = getattr(final, "classes_", None)
        self.classes = jsonable(np.asarray(classes)) if classes is not None else None
        if isinstance(self.classes, np.ndarray):
            self.classes = self.classes.tolist()
        # each request is predicted on its own until rows one at a time are known to match
        # rows predicted together
        self.batcher = Batcher(
            model,
            self.schema,
            max_rows=self.config.max_batch_rows,
            enabled=False,
            on_batch=self.metrics.observe_batch,
        )
        collector.resume()  # started up, before the first prediction (core.collector)
        self.status = "ready"
        self.metrics.ready = True
        if self.config.batching:
            # on the model's own thread: requests arriving meanwhile wait their turn
            self.batcher.in_model_thread(self.decide_batching)

    def decide_batching(self) -> None:
        """Switch batching on if rows predicted one at a time match rows predicted together (after ready)."""
        from seedline.workflow.parity import check_batching

        assert self.batcher is not None and self.parity is not None
        batching = check_batching(self.model, self.source, self.config.single_row_checks)
        self.parity["batching"] = {**self.parity.get("batching", {}), **batching}
        if batching["consistent"]:
            self.batcher.enabled = True
        else:
            server_log.warning(
                "rows predicted one at a time differ from rows predicted together: requests are not batched"
            )

    def metadata(self) -> dict[str, Any]:
        outputs: list[dict[str, Any]] = [
            {
                "name": "predict",
                "datatype": "BYTES"
                if self.classes and isinstance(self.classes[0], str)
                else "FP64",
                "shape": [-1],
            }
        ]
        if self.has_proba:
            outputs.append(
                {
                    "name": "predict_proba",
                    "datatype": "FP64",
                    "shape": [-1, len(self.classes) if self.classes else -1],
                    "parameters": {"classes": self.classes},
                }
            )
        return {
            "name": self.name,
            "versions": [self.version] if self.version else [],
            "platform": "seedline_sklearn",
            "inputs": [
                {
                    "name": c.name,
                    "datatype": c.v2_datatype,
                    "shape": [-1, 1],
                    "parameters": c.to_dict(),
                }
                for c in self.schema.columns
            ],
            "outputs": outputs,
            "parameters": {
                "ref": self.source.ref,
                "run_id": self.source.run_id,
                "ready": self.ready,
                "parity": self.parity,
                "lineage": self.source.lineage(),
            },
        }


__all__ = ["ServedModel"]
