"""The model server: FastAPI on uvicorn, speaking the Open Inference Protocol (V2) and MLflow's scoring protocol.

``create_app`` resolves the model reference (registry, run or bundle), refuses a model
file with types outside the trusted list, and assembles the routers (``v2_routes``,
``mlflow_routes``, ``ops_routes``) behind the ASGI gate (``gate``: token, body limit,
metrics, access log). The server binds first and loads the model afterwards, in a worker
thread: until the model is loaded and its probe set re-predicted (``workflow.parity``),
``/v2/health/ready`` and inference answer 503. A failed parity check leaves the server up
and not ready (``--allow-parity-mismatch`` lets it through, logged); a model that cannot
be loaded at all stops ``seedline serve`` with a non-zero exit and the reason.

A bearer token, when set, is required on everything but the health endpoints. Every
request is logged as one JSON line on the ``seedline.access`` logger.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI

from seedline.core import collector
from seedline.core.errors import SeedlineError
from seedline.core.version import __version__
from seedline.serving.metrics import MULTIPROC_ENV, Metrics
from seedline.workflow.registration import (
    ModelSource,
    UntrustedModelError,
    resolve_source,
)

CONFIG_ENV = "SEEDLINE_SERVE_CONFIG"
STATE_ENV = "SEEDLINE_SERVE_STATE"
FAILED_FILE = "failed.json"
WORKER_HEALTHCHECK_S = 60
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})

server_log = logging.getLogger("seedline.serve")


class ServeError(SeedlineError):
    """Raised when the server cannot start as asked (an unsafe bind address without a token, a bad option)."""


@dataclass
class ServeConfig:
    """Everything a server process (or each of its workers) needs; travels as JSON in ``SEEDLINE_SERVE_CONFIG``."""

    ref: str
    project: str = "."
    token: str | None = None
    trust: bool = False
    allow_parity_mismatch: bool = False
    max_body_bytes: int = 16 * 1024 * 1024
    max_batch_rows: int = 256
    batching: bool = True
    access_log: bool = True
    single_row_checks: int = 16
    workers: int = 1
    expect_fingerprint: str | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        return cls(**json.loads(text))


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Binding beyond loopback needs a token: the model would otherwise answer anyone on the network."""
    if not is_loopback(host) and not token:
        raise ServeError(
            f"refusing to listen on {host} without a bearer token: anyone who can reach it could query the model",
            hint="pass --token TOKEN or set SEEDLINE_TOKEN (clients send 'Authorization: Bearer TOKEN'), or bind to 127.0.0.1",
        )


# -- the application ----------------------------------------------------------------------------
def _example(source: ModelSource) -> tuple[dict[str, Any], dict[str, Any]]:
    row = source.probe_input.iloc[0]
    values: dict[str, Any] = {}
    for c in source.schema.columns:
        v = row[c.name]
        if v is None or (isinstance(v, float) and v != v):
            values[c.name] = None
        elif isinstance(v, np.generic):
            values[c.name] = v.item()
        else:
            values[c.name] = v if isinstance(v, str | int | float | bool) else str(v)
    v2 = {
        "inputs": [
            {"name": c.name, "shape": [1], "datatype": c.v2_datatype, "data": [values[c.name]]}
            for c in source.schema.columns
        ]
    }
    mlflow = {"dataframe_split": {"columns": source.schema.names, "data": [list(values.values())]}}
    return v2, mlflow


def create_app(
    config: ServeConfig,
    *,
    source: ModelSource | None = None,
    on_failure: Callable[[str, str | None], None] | None = None,
) -> FastAPI:
    """The ASGI app for ``config.ref``; raises SeedlineError when the model cannot be found or is untrusted.

    The model is loaded after startup, in a thread. If it cannot be loaded, ``on_failure``
    is called with the reason and a hint (``seedline serve`` stops the server there);
    without it the app stays up, not ready, with status ``failed``.
    """
    from seedline.serving.gate import Gate
    from seedline.serving.mlflow_routes import mlflow_router
    from seedline.serving.model import ServedModel
    from seedline.serving.ops_routes import ops_router
    from seedline.serving.v2_routes import v2_router

    if source is None:
        source = resolve_source(config.ref, start=config.project)
    offending = source.untrusted_types()
    if offending and not config.trust:
        raise UntrustedModelError(offending, source.ref)
    metrics = Metrics(source.name)
    served = ServedModel(source, config, metrics)
    if offending:
        server_log.warning(
            "--trust: loading %s with types outside the trusted list: %s",
            source.ref,
            ", ".join(offending),
        )
    v2_example, mlflow_example = _example(source)

    async def load() -> None:
        server_log.info("loading %s; /v2/health/ready answers 503 until it is ready", source.ref)
        try:
            await asyncio.to_thread(served.load)
        finally:
            collector.resume()  # started up, the model's objects frozen with the rest (core.collector)
        if served.batcher is not None:
            served.batcher.start()
        if served.failed and on_failure is not None:
            on_failure(served.reason or "the model could not be loaded", served.hint)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(load())  # bind first: startup does not wait for the model
        yield
        if not task.done():
            task.cancel()
        if served.batcher is not None:
            await served.batcher.stop()

    app = FastAPI(
        title=f"seedline: {source.name}",
        version=__version__,
        description=(
            f"Serves `{source.ref}` (run `{source.run_id}`) over the Open Inference Protocol (V2) "
            "and MLflow's scoring protocol. The input schema is at `GET /v2/models/{name}`."
        ),
        lifespan=lifespan,
    )
    app.state.served = served
    app.state.metrics = metrics
    app.include_router(v2_router(served, v2_example))
    app.include_router(mlflow_router(served, mlflow_example))
    app.include_router(ops_router(metrics))
    app.add_middleware(Gate, config=config, metrics=metrics, routes=app.router.routes)
    return app


def _stop_on_failure(
    state: Path, supervisor: int | None = None, server: list[Any] | None = None
) -> Callable[[str, str | None], None]:
    """Record why the model cannot be loaded, then stop: the one server in this process, or the workers' supervisor.

    A single process sets uvicorn's ``should_exit`` (a SIGTERM to itself would be re-raised
    by uvicorn after shutdown and end the process before ``serve`` can report the reason).
    """

    def stop(reason: str, hint: str | None) -> None:
        (state / FAILED_FILE).write_text(json.dumps({"reason": reason, "hint": hint}))
        if server:
            server[0].should_exit = True
        elif supervisor is not None:
            os.kill(supervisor, signal.SIGTERM)

    return stop


def _failure(state: Path) -> ServeError | None:
    path = state / FAILED_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return ServeError(f"cannot serve the model: {data['reason']}", hint=data.get("hint"))


def app_from_env() -> FastAPI:
    """uvicorn factory for ``--workers N``: each worker builds its app from ``SEEDLINE_SERVE_CONFIG``."""
    text = os.environ.get(CONFIG_ENV)
    if not text:
        raise ServeError(f"{CONFIG_ENV} is not set; start the server with 'seedline serve'")
    setup_logging()
    config = ServeConfig.from_json(text)
    config.token = config.token or os.environ.get("SEEDLINE_TOKEN") or None
    state = os.environ.get(STATE_ENV)
    on_failure = _stop_on_failure(Path(state), supervisor=os.getppid()) if state else None
    return create_app(config, on_failure=on_failure)


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("seedline.access",):
        log = logging.getLogger(name)
        log.handlers[:] = [handler]
        log.setLevel(logging.INFO)
        log.propagate = False
    serve_handler = logging.StreamHandler(sys.stderr)
    serve_handler.setFormatter(logging.Formatter("%(levelname)s:  [seedline] %(message)s"))
    server_log.handlers[:] = [serve_handler]
    server_log.setLevel(getattr(logging, level.upper(), logging.INFO))
    server_log.propagate = False


def serve(
    config: ServeConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    log_level: str = "info",
) -> None:
    """Check the bind address and the model reference, then bind and serve; raises ServeError if the model cannot load."""
    import uvicorn

    check_bind(host, config.token)
    if workers < 1:
        raise ServeError(f"--workers must be at least 1, got {workers}")
    config.project = str(Path(config.project).resolve())
    config.workers = workers
    if config.expect_fingerprint:
        from seedline.workflow.integrity import expected_fingerprint

        config.expect_fingerprint = expected_fingerprint(config.expect_fingerprint, config.project)
    setup_logging(log_level)
    state = Path(tempfile.mkdtemp(prefix="seedline-serve-"))
    # the variables set below for the workers are this call's: put back as they were after it
    saved = {k: os.environ.get(k) for k in (MULTIPROC_ENV, STATE_ENV, CONFIG_ENV, "SEEDLINE_TOKEN")}
    try:
        if workers > 1:
            # every worker writes its metrics here and one scrape sums them (set before
            # prometheus_client is imported by a worker)
            (state / "metrics").mkdir()
            os.environ[MULTIPROC_ENV] = str(state / "metrics")
        os.environ[STATE_ENV] = str(state)
        # fails here, before binding, on an unknown or untrusted model
        holder: list[Any] = []
        app = create_app(config, on_failure=_stop_on_failure(state, server=holder))
        common: dict[str, Any] = {
            "host": host,
            "port": port,
            "log_level": log_level,
            "access_log": False,
            "server_header": False,
            "timeout_graceful_shutdown": 5,
            # no route speaks WebSocket: not importing a WebSocket library saves 0.17 s of start-up
            "ws": "none",
        }
        if workers == 1:
            holder.append(uvicorn.Server(uvicorn.Config(app, **common)))
            holder[0].run()
        else:
            # the token travels in its own variable: names holding TOKEN are never recorded by seedline
            if config.token:
                os.environ["SEEDLINE_TOKEN"] = config.token
            os.environ[CONFIG_ENV] = dataclasses.replace(config, token=None).to_json()
            collector.resume()  # the supervisor loads no model; its workers start afresh
            if "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config).parameters:
                # a worker answers its supervisor's pings while it imports and loads the
                # model; on a busy machine that takes far longer than uvicorn's 5 s
                common["timeout_worker_healthcheck"] = WORKER_HEALTHCHECK_S
            uvicorn.run(
                "seedline.serving.app:app_from_env", factory=True, workers=workers, **common
            )
        failure = _failure(state)
        if failure is not None:
            raise failure
    finally:
        shutil.rmtree(state, ignore_errors=True)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


__all__ = ["ServeConfig", "ServeError", "app_from_env", "check_bind", "create_app", "serve"]
