"""The model server: FastAPI on uvicorn, speaking the Open Inference Protocol (V2) and MLflow's scoring protocol.

``create_app`` resolves the model reference (registry, run or bundle) and refuses a model
file with types outside the trusted list. At startup the model is loaded with skops and
its probe set re-predicted (``workflow.parity``): until that check passes the server is
live but not ready, and inference answers 503 with the report. ``--allow-parity-mismatch``
lets a failed check through; the override is logged in the registry and the log.

Endpoints: ``/v2/health/live``, ``/v2/health/ready``, ``/v2``, ``/v2/models/{name}[/versions/{v}]``,
``.../ready``, ``.../infer``; ``/ping``, ``/health``, ``/version``, ``/invocations``;
``/metrics`` (Prometheus); ``/docs`` and ``/openapi.json``. A bearer token, when set, is
required on everything but the health endpoints. Every request is logged as one JSON line
on the ``seedline.access`` logger.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from seedline.core.errors import SeedlineError
from seedline.core.version import __version__
from seedline.serving.batching import Batcher, ModelRejected
from seedline.serving.metrics import Metrics
from seedline.serving.protocol import (
    ProtocolError,
    jsonable,
    parse_csv,
    parse_mlflow,
    parse_v2,
    shape_of,
    v2_datatype,
)
from seedline.workflow.registration import (
    ModelSource,
    UntrustedModelError,
    resolve_source,
    untrusted_types,
)
from seedline.workflow.schema import SchemaViolation

CONFIG_ENV = "SEEDLINE_SERVE_CONFIG"
HEALTH_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/ping", "/health"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
JSON = "application/json"

access_log = logging.getLogger("seedline.access")
server_log = logging.getLogger("seedline.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


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


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type=JSON,
        headers=headers,
    )


# -- the served model ---------------------------------------------------------------------------
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
        self.parity: dict[str, Any] | None = None
        self.model: Any = None
        self.batcher: Batcher | None = None
        self.has_proba = source.probe.get("proba") is not None
        self.classes: list[Any] | None = None
        self.trusted_override = untrusted_types(source.model_bytes) if config.trust else []

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    def load(self) -> None:
        """Load with skops, re-predict the probe set, decide readiness (runs once, at startup)."""
        from threadpoolctl import threadpool_limits

        from seedline.workflow.parity import ParityError, check_parity, enforce
        from seedline.workflow.registration import load_estimator

        try:
            model = load_estimator(
                self.source.model_bytes, trust=self.config.trust, where=self.source.ref
            )
            # the thread count of training, for every prediction of this process
            threadpool_limits(limits=self.source.manifest.settings.threads)
            report = check_parity(
                model, self.source, action="serve", single_rows=self.config.single_row_checks
            )
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
            self.status, self.reason = "not ready", exc.message
            server_log.error("cannot load %s: %s", self.source.ref, exc.message)
            return
        except Exception as exc:  # a broken model must leave a live, not-ready server that says why
            self.status, self.reason = "not ready", f"{type(exc).__name__}: {exc}"
            server_log.exception("cannot load %s", self.source.ref)
            return
        self.model = model
        self.schema = self.schema.with_unseen_policies(model)
        final = model.steps[-1][1] if hasattr(model, "steps") else model
        classes = getattr(final, "classes_", None)
        self.classes = jsonable(np.asarray(classes)) if classes is not None else None
        if isinstance(self.classes, np.ndarray):
            self.classes = self.classes.tolist()
        batching_ok = bool(report.batching.get("consistent", False))
        if self.config.batching and not batching_ok:
            server_log.warning(
                "rows predicted one at a time differ from rows predicted together: requests are not batched"
            )
        self.batcher = Batcher(
            model,
            self.schema,
            max_rows=self.config.max_batch_rows,
            enabled=self.config.batching and batching_ok,
            on_batch=self.metrics.observe_batch,
        )
        self.status = "ready"
        self.metrics.ready = True

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


# -- the ASGI gate: auth, body limit, metrics, access log --------------------------------------
def _handler(path: str) -> str:
    """A bounded label for metrics: the route pattern, never the raw path."""
    if path.startswith("/v2/models/"):
        parts = path.split("/")[3:]
        tail = ["{name}"]
        if len(parts) >= 3 and parts[1] == "versions":
            tail += ["versions", "{version}"]
            parts = parts[2:]
        tail += parts[1:]
        return "/v2/models/" + "/".join(tail)
    known = (
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/ping",
        "/health",
        "/version",
        "/invocations",
        "/metrics",
        "/docs",
        "/openapi.json",
        "/redoc",
    )
    return path if path in known else "other"


class _BodyTooLarge(Exception):
    pass


class Gate:
    """Pure ASGI middleware (no per-request task): token, body size, metrics and the access log."""

    def __init__(self, app: ASGIApp, *, config: ServeConfig, metrics: Metrics) -> None:
        self.app = app
        self.token = config.token.encode() if config.token else None
        self.max_body = config.max_body_bytes
        self.metrics = metrics
        self.log = config.access_log

    async def _reply(
        self,
        send: Send,
        status: int,
        body: dict[str, Any],
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        data = orjson.dumps(body)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", JSON.encode()),
                    (b"content-length", str(len(data)).encode()),
                    *(headers or []),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path: str = scope["path"]
        status = [500]
        state = scope.setdefault("state", {})

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        headers = dict(scope["headers"])
        try:
            if self.token is not None and path not in HEALTH_PATHS:
                auth = headers.get(b"authorization", b"")
                scheme, _, given = auth.partition(b" ")
                if scheme.lower() != b"bearer" or not hmac.compare_digest(
                    given.strip(), self.token
                ):
                    status[0] = 401
                    await self._reply(
                        send,
                        401,
                        {
                            "error": "this server needs a bearer token: the Authorization header is missing or wrong",
                            "hint": "send 'Authorization: Bearer TOKEN' with the token the server was started with",
                        },
                        [(b"www-authenticate", b"Bearer")],
                    )
                    return
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body:
                status[0] = 413
                await self._reply(send, 413, self._too_large(int(length)))
                return
            seen = [0]

            async def receive_limited() -> Message:
                message = await receive()
                if message["type"] == "http.request":
                    seen[0] += len(message.get("body", b""))
                    if seen[0] > self.max_body:
                        raise _BodyTooLarge
                return message

            try:
                await self.app(scope, receive_limited, send_wrapper)
            except _BodyTooLarge:
                status[0] = 413
                await self._reply(send, 413, self._too_large(seen[0]))
        finally:
            elapsed = time.perf_counter() - start
            self.metrics.observe_request(_handler(path), scope["method"], status[0], elapsed)
            if self.log:
                client = scope.get("client")
                access_log.info(
                    orjson.dumps(
                        {
                            "ts": round(time.time(), 3),
                            "event": "request",
                            "method": scope["method"],
                            "path": path,
                            "status": status[0],
                            "ms": round(elapsed * 1000, 3),
                            "rows": state.get("rows"),
                            "client": f"{client[0]}:{client[1]}" if client else None,
                            "request_id": state.get("request_id"),
                        }
                    ).decode()
                )

    def _too_large(self, size: int) -> dict[str, Any]:
        return {
            "error": f"the request body is too large: {size} bytes, the limit is {self.max_body}",
            "hint": "send fewer rows per request (or use 'seedline predict' for files), or start the server with a larger --max-body-mb",
        }


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


def create_app(config: ServeConfig, *, source: ModelSource | None = None) -> FastAPI:
    """The ASGI app for ``config.ref``; raises SeedlineError when the model cannot be found or is untrusted."""
    if source is None:
        source = resolve_source(config.ref, start=config.project)
    offending = untrusted_types(source.model_bytes)
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

    async def lifespan(_app: FastAPI) -> Any:
        await asyncio.to_thread(served.load)
        if served.batcher is not None:
            served.batcher.start()
        yield
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

    def not_ready(mlflow: bool = False) -> Response:
        body = {
            "error": f"model {source.ref} is not ready: {served.reason or served.status}",
            "parity": served.parity,
        }
        if mlflow:
            body = {
                "error_code": "TEMPORARILY_UNAVAILABLE",
                "message": body["error"],
                "parity": served.parity,
            }
        return _json(body, 503)

    def wrong_model(name: str, version: str | None = None) -> Response | None:
        if name != served.name:
            return _json(
                {"error": f"no model named {name!r} here; this server serves {served.name!r}"}, 404
            )
        if version is not None and version != served.version:
            return _json(
                {
                    "error": f"model {name!r} has no version {version!r} here; this server serves version {served.version!r}"
                },
                404,
            )
        return None

    async def read_json(request: Request) -> Any:
        ctype = request.headers.get("content-type", JSON).split(";")[0].strip().lower()
        if ctype not in (JSON, "application/*+json", ""):
            raise ProtocolError(
                f"content type {ctype!r} is not accepted here; send {JSON}",
                status=415,
                hint="curl: -H 'Content-Type: application/json'",
            )
        body = await request.body()
        if not body.strip():
            raise ProtocolError("the request body is empty; expected a JSON object")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(f"the body is not valid JSON: {exc}") from None

    async def run_model(request: Request, parsed: Any) -> dict[str, np.ndarray]:
        request.state.rows = parsed.rows
        assert served.batcher is not None
        return await served.batcher.predict(parsed.columns, parsed.rows, parsed.methods)

    def error(exc: Exception, *, mlflow: bool) -> Response:
        if isinstance(exc, SchemaViolation):
            body, status = exc.to_dict(), 400
        elif isinstance(exc, ProtocolError):
            body, status = exc.to_dict(), exc.status
        elif isinstance(exc, ModelRejected):
            body = {
                "error": f"the model could not predict these rows: {exc}",
                "hint": "an unseen category the pipeline is set to reject (handle_unknown='error'), or a value it cannot take",
            }
            status = 422
        else:  # pragma: no cover - a bug; still an answer, never a dropped connection
            server_log.exception("unexpected error")
            body, status = {"error": f"internal error: {type(exc).__name__}: {exc}"}, 500
        if mlflow:
            code = {400: "BAD_REQUEST", 415: "BAD_REQUEST", 422: "INVALID_PARAMETER_VALUE"}.get(
                status, "INTERNAL_ERROR"
            )
            body = {"error_code": code, "message": body.pop("error"), **body}
        return _json(body, status)

    # -- Open Inference Protocol ---------------------------------------------------------------
    @app.get("/v2/health/live", tags=["v2"], summary="Liveness")
    async def live() -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready", tags=["v2"], summary="Readiness (model loaded and parity passed)")
    async def ready() -> Response:
        if served.ready:
            return _json({"ready": True})
        return _json(
            {
                "ready": False,
                "status": served.status,
                "reason": served.reason,
                "parity": served.parity,
            },
            503,
        )

    @app.get("/v2", tags=["v2"], summary="Server metadata")
    async def server_metadata() -> Response:
        return _json(
            {
                "name": "seedline",
                "version": __version__,
                "extensions": ["mlflow_scoring", "metrics"],
            }
        )

    @app.get("/v2/models/{name}", tags=["v2"], summary="Model metadata and input schema")
    @app.get("/v2/models/{name}/versions/{version}", tags=["v2"], include_in_schema=False)
    async def model_metadata(name: str, version: str | None = None) -> Response:
        return wrong_model(name, version) or _json(served.metadata())

    @app.get("/v2/models/{name}/ready", tags=["v2"], summary="Model readiness")
    @app.get("/v2/models/{name}/versions/{version}/ready", tags=["v2"], include_in_schema=False)
    async def model_ready(name: str, version: str | None = None) -> Response:
        wrong = wrong_model(name, version)
        if wrong is not None:
            return wrong
        return _json({"name": served.name, "ready": served.ready}, 200 if served.ready else 503)

    v2_body = {
        "requestBody": {
            "required": True,
            "content": {
                JSON: {
                    "schema": {
                        "type": "object",
                        "required": ["inputs"],
                        "properties": {
                            "id": {"type": "string"},
                            "inputs": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["name", "shape", "datatype", "data"],
                                    "properties": {
                                        "name": {"type": "string"},
                                        "shape": {"type": "array", "items": {"type": "integer"}},
                                        "datatype": {"type": "string"},
                                        "data": {"type": "array", "items": {}},
                                    },
                                },
                            },
                            "outputs": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "name": {
                                            "type": "string",
                                            "enum": ["predict", "predict_proba"],
                                        }
                                    },
                                },
                            },
                        },
                    },
                    "example": v2_example,
                }
            },
        }
    }

    @app.post(
        "/v2/models/{name}/infer",
        tags=["v2"],
        summary="Predict (Open Inference Protocol)",
        openapi_extra=v2_body,
    )
    @app.post("/v2/models/{name}/versions/{version}/infer", tags=["v2"], include_in_schema=False)
    async def infer(name: str, request: Request, version: str | None = None) -> Response:
        wrong = wrong_model(name, version)
        if wrong is not None:
            return wrong
        if not served.ready:
            return not_ready()
        try:
            parsed = parse_v2(await read_json(request), served.schema, has_proba=served.has_proba)
            request.state.request_id = parsed.request_id
            out = await run_model(request, parsed)
        except (ProtocolError, SchemaViolation, ModelRejected) as exc:
            return error(exc, mlflow=False)
        outputs: list[dict[str, Any]] = []
        for method in parsed.methods:
            values = out[method]
            entry: dict[str, Any] = {
                "name": method,
                "shape": shape_of(values),
                "datatype": v2_datatype(values if values.dtype != object else values.astype(str)),
                "data": jsonable(values.reshape(-1) if values.ndim > 1 else values),
            }
            if method == "predict_proba":
                entry["parameters"] = {"classes": served.classes}
            outputs.append(entry)
        body: dict[str, Any] = {"model_name": served.name, "outputs": outputs}
        if served.version:
            body["model_version"] = served.version
        if parsed.request_id is not None:
            body["id"] = parsed.request_id
        return _json(body)

    # -- MLflow scoring protocol ---------------------------------------------------------------
    @app.get("/ping", tags=["mlflow"], summary="Health (MLflow)")
    @app.get("/health", tags=["mlflow"], include_in_schema=False)
    async def ping() -> Response:
        return Response("\n", status_code=200, media_type=JSON)

    @app.get("/version", tags=["mlflow"], summary="Server version")
    async def version_info() -> Response:
        return Response(__version__, media_type=JSON)

    mlflow_body = {
        "requestBody": {
            "required": True,
            "content": {
                JSON: {
                    "schema": {
                        "type": "object",
                        "description": "exactly one of dataframe_split, dataframe_records, instances, inputs; optional params.predict_method",
                    },
                    "example": mlflow_example,
                },
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    }

    @app.post(
        "/invocations",
        tags=["mlflow"],
        summary="Predict (MLflow scoring protocol)",
        openapi_extra=mlflow_body,
    )
    async def invocations(request: Request) -> Response:
        if not served.ready:
            return not_ready(mlflow=True)
        try:
            ctype = request.headers.get("content-type", JSON).split(";")[0].strip().lower()
            if ctype == "text/csv":
                body = await request.body()
                if not body.strip():
                    raise ProtocolError(
                        "the request body is empty; expected a CSV table with a header"
                    )
                parsed = parse_csv(body, served.schema)
            elif ctype in (JSON, ""):
                parsed = parse_mlflow(
                    await read_json(request), served.schema, has_proba=served.has_proba
                )
            else:
                raise ProtocolError(
                    f"content type {ctype!r} is not accepted; send application/json or text/csv",
                    status=415,
                )
            out = await run_model(request, parsed)
        except (ProtocolError, SchemaViolation, ModelRejected) as exc:
            return error(exc, mlflow=True)
        values = out[parsed.methods[0]]
        data = jsonable(values)
        return _json({"predictions": data})

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics")
    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    app.add_middleware(Gate, config=config, metrics=metrics)
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory for ``--workers N``: each worker builds its app from ``SEEDLINE_SERVE_CONFIG``."""
    text = os.environ.get(CONFIG_ENV)
    if not text:
        raise ServeError(f"{CONFIG_ENV} is not set; start the server with 'seedline serve'")
    setup_logging()
    config = ServeConfig.from_json(text)
    config.token = config.token or os.environ.get("SEEDLINE_TOKEN") or None
    return create_app(config)


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
    """Check the bind address, build the app (failing fast on a bad reference) and run uvicorn."""
    import uvicorn

    check_bind(host, config.token)
    if workers < 1:
        raise ServeError(f"--workers must be at least 1, got {workers}")
    config.project = str(Path(config.project).resolve())
    setup_logging(log_level)
    app = create_app(config)  # fails here, before binding, on an unknown or untrusted model
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": False,
        "server_header": False,
        "timeout_graceful_shutdown": 5,
    }
    if workers == 1:
        uvicorn.run(app, **common)
        return
    # the token travels in its own variable: names holding TOKEN are never recorded by seedline
    if config.token:
        os.environ["SEEDLINE_TOKEN"] = config.token
    os.environ[CONFIG_ENV] = dataclasses.replace(config, token=None).to_json()
    uvicorn.run("seedline.serving.app:app_from_env", factory=True, workers=workers, **common)


__all__ = ["ServeConfig", "ServeError", "app_from_env", "check_bind", "create_app", "serve"]
