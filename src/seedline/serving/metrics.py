"""Request and latency metrics in the Prometheus text exposition format (``GET /metrics``).

Counters and histograms live in the serving process; with ``--workers N`` each worker
keeps its own and a scrape reaches one of them (label ``pid`` tells which). Updated only
from the event loop thread, so they need no lock.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096)


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.total += 1
        self.sum += value
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                break

    def lines(self, name: str, labels: str) -> list[str]:
        out: list[str] = []
        running = 0
        sep = "," if labels else ""
        for bound, count in zip(self.buckets, self.counts, strict=True):
            running += count
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound:g}"}} {running}')
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.total}')
        out.append(f"{name}_sum{{{labels}}} {self.sum:.6f}")
        out.append(f"{name}_count{{{labels}}} {self.total}")
        return out


class Metrics:
    """The server's counters and histograms."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.started = time.time()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency: dict[str, _Histogram] = {}
        self.rows = 0
        self.batches = _Histogram(BATCH_BUCKETS)
        self.ready = False
        self.parity = "unknown"

    def observe_request(self, handler: str, method: str, status: int, seconds: float) -> None:
        self.requests[(handler, method, status)] += 1
        hist = self.latency.get(handler)
        if hist is None:
            hist = self.latency[handler] = _Histogram(LATENCY_BUCKETS)
        hist.observe(seconds)

    def observe_batch(self, rows: int) -> None:
        self.rows += rows
        self.batches.observe(rows)

    def render(self) -> str:
        pid = os.getpid()
        m = f'model="{self.model}",pid="{pid}"'
        lines = [
            "# HELP seedline_requests_total Requests answered, by handler, method and status code.",
            "# TYPE seedline_requests_total counter",
        ]
        for (handler, method, status), n in sorted(self.requests.items()):
            lines.append(
                f'seedline_requests_total{{{m},handler="{handler}",method="{method}",code="{status}"}} {n}'
            )
        lines += [
            "# HELP seedline_request_duration_seconds Time from request to response, by handler.",
            "# TYPE seedline_request_duration_seconds histogram",
        ]
        for handler, hist in sorted(self.latency.items()):
            lines += hist.lines("seedline_request_duration_seconds", f'{m},handler="{handler}"')
        lines += [
            "# HELP seedline_predicted_rows_total Rows predicted.",
            "# TYPE seedline_predicted_rows_total counter",
            f"seedline_predicted_rows_total{{{m}}} {self.rows}",
            "# HELP seedline_batch_rows Rows per call of the model (requests are batched while it is busy).",
            "# TYPE seedline_batch_rows histogram",
            *self.batches.lines("seedline_batch_rows", m),
            "# HELP seedline_model_ready 1 when the model is loaded and passed its parity check.",
            "# TYPE seedline_model_ready gauge",
            f"seedline_model_ready{{{m}}} {int(self.ready)}",
            "# HELP seedline_parity_info The verdict of the parity check at startup.",
            "# TYPE seedline_parity_info gauge",
            f'seedline_parity_info{{{m},verdict="{self.parity}"}} 1',
            "# HELP seedline_start_time_seconds When the server started (Unix time).",
            "# TYPE seedline_start_time_seconds gauge",
            f"seedline_start_time_seconds{{{m}}} {self.started:.3f}",
        ]
        return "\n".join(lines) + "\n"


__all__ = ["Metrics"]
