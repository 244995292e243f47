"""Request and model metrics for ``GET /metrics``, kept and written by ``prometheus_client``.

Labels are bounded: ``handler`` is the route template (``/v2/models/{name}/infer``), or
``unmatched`` for a path no route serves, never the raw path, so no request can add a
line or grow the page (and no label value can carry a quote or a newline).

With ``--workers N`` every worker writes its values to files in one folder that
``seedline serve`` creates (``prometheus_client``'s multiprocess mode, through
``PROMETHEUS_MULTIPROC_DIR``), and any worker that answers a scrape reports the sum over
all of them. A single process keeps its values in memory, in a registry of its own.
"""

from __future__ import annotations

import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

disable_created_metrics()  # the *_created series double the page and say nothing a scrape needs

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096)
UNMATCHED = "unmatched"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
VERDICTS = ("unknown", "bitwise", "tolerance", "failed")


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class Metrics:
    """The server's counters, histograms and gauges."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, model: str) -> None:
        self.model = model
        self._multi = multiprocess()
        # in multiprocess mode the values live in files; the registry only keeps the objects
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "seedline_requests",
            "Requests answered, by route template, method and status code.",
            ["model", "handler", "method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "seedline_request_duration_seconds",
            "Time from request to response, by route template.",
            ["model", "handler"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rows = Counter(
            "seedline_predicted_rows",
            "Rows predicted.",
            ["model"],
            registry=self.registry,
        )
        self.batches = Histogram(
            "seedline_batch_rows",
            "Rows per call of the model (requests are batched while it is busy).",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.ready_gauge = Gauge(
            "seedline_model_ready",
            "Processes whose model is loaded and passed its parity check.",
            ["model"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.parity_gauge = Gauge(
            "seedline_parity_info",
            "Processes whose parity check at startup gave this verdict.",
            ["model", "verdict"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.started = Gauge(
            "seedline_start_time_seconds",
            "When the server started (Unix time).",
            ["model"],
            registry=self.registry,
            multiprocess_mode="min",
        )
        self.started.labels(model).set(time.time())
        self.ready_gauge.labels(model).set(0)
        self._ready = False
        self._verdict = "unknown"
        self.parity_gauge.labels(model, "unknown").set(1)

    @property
    def ready(self) -> bool:
        return self._ready

    @ready.setter
    def ready(self, value: bool) -> None:
        self._ready = value
        self.ready_gauge.labels(self.model).set(int(value))

    @property
    def parity(self) -> str:
        return self._verdict

    @parity.setter
    def parity(self, verdict: str) -> None:
        self.parity_gauge.labels(self.model, self._verdict).set(0)
        self._verdict = verdict if verdict in VERDICTS else "unknown"
        self.parity_gauge.labels(self.model, self._verdict).set(1)

    def observe_request(self, handler: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(self.model, handler, method, str(status)).inc()
        self.latency.labels(self.model, handler).observe(seconds)

    def observe_batch(self, rows: int) -> None:
        self.rows.labels(self.model).inc(rows)
        self.batches.labels(self.model).observe(rows)

    def ready_processes(self) -> int:
        """How many serving processes have a ready model (all workers' files in multiprocess mode)."""
        if not self._multi:
            return int(self._ready)
        from prometheus_client import multiprocess as mp

        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)
        value = registry.get_sample_value("seedline_model_ready", {"model": self.model})
        return int(value or 0)

    def render(self) -> bytes:
        """The exposition text: this process's values, or the sum over every worker's files."""
        if not self._multi:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess as mp

        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)
        return generate_latest(registry)


__all__ = ["UNMATCHED", "Metrics", "multiprocess"]
