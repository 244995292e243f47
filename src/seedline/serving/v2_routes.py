"""The Open Inference Protocol (KServe V2, REST/JSON) endpoints: health, metadata, inference."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from seedline.core.version import __version__
from seedline.serving.bodies import (
    V2InferenceRequest,
    decode_json,
    off_loop,
    openapi_body,
    read_body,
    refuse_binary_extension,
    validate_v2,
)
from seedline.serving.model import ServedModel
from seedline.serving.protocol import Request as Parsed
from seedline.serving.protocol import jsonable, parse_v2, shape_of, v2_datatype
from seedline.serving.responses import BAD_INPUT, error_response, json_response


def not_ready(served: ServedModel, *, mlflow: bool = False) -> Response:
    body: dict[str, Any] = {
        "error": f"model {served.source.ref} is not ready: {served.reason or served.status}",
        "parity": served.parity,
    }
    if mlflow:
        body = {
            "error_code": "TEMPORARILY_UNAVAILABLE",
            "message": body["error"],
            "parity": served.parity,
        }
    return json_response(body, 503)


def _wrong_model(served: ServedModel, name: str, version: str | None) -> Response | None:
    if name != served.name:
        return json_response(
            {"error": f"no model named {name!r} here; this server serves {served.name!r}"}, 404
        )
    if version is not None and version != served.version:
        return json_response(
            {
                "error": f"model {name!r} has no version {version!r} here; this server serves version {served.version!r}"
            },
            404,
        )
    return None


def v2_router(served: ServedModel, example: dict[str, Any]) -> APIRouter:
    """Routes of the V2 protocol for ``served``."""
    router = APIRouter(tags=["v2"])

    @router.get("/v2/health/live", summary="Liveness")
    async def live() -> Response:
        return json_response({"live": True})

    @router.get(
        "/v2/health/ready", summary="Readiness (503 until the model is loaded and passed parity)"
    )
    async def ready() -> Response:
        # with --workers N, any worker may answer: ready only once every worker is
        if served.ready and (
            served.config.workers <= 1
            or await asyncio.to_thread(served.metrics.ready_processes) >= served.config.workers
        ):
            return json_response({"ready": True})
        if served.ready:
            return json_response(
                {
                    "ready": False,
                    "status": "loading",
                    "reason": "this worker is ready; other workers are still loading the model",
                    "parity": served.parity,
                },
                503,
            )
        return json_response(
            {
                "ready": False,
                "status": served.status,
                "reason": served.reason,
                "parity": served.parity,
            },
            503,
        )

    @router.get("/v2", summary="Server metadata")
    async def server_metadata() -> Response:
        return json_response(
            {
                "name": "seedline",
                "version": __version__,
                "extensions": ["mlflow_scoring", "metrics"],
            }
        )

    @router.get("/v2/models/{name}", summary="Model metadata and input schema")
    @router.get("/v2/models/{name}/versions/{version}", include_in_schema=False)
    async def model_metadata(name: str, version: str | None = None) -> Response:
        return _wrong_model(served, name, version) or json_response(served.metadata())

    @router.get("/v2/models/{name}/ready", summary="Model readiness")
    @router.get("/v2/models/{name}/versions/{version}/ready", include_in_schema=False)
    async def model_ready(name: str, version: str | None = None) -> Response:
        wrong = _wrong_model(served, name, version)
        if wrong is not None:
            return wrong
        return json_response(
            {"name": served.name, "ready": served.ready}, 200 if served.ready else 503
        )

    def parse(body: bytes) -> Parsed:
        payload = decode_json(body)
        validate_v2(payload)
        return parse_v2(payload, served.schema, has_proba=served.has_proba)

    @router.post(
        "/v2/models/{name}/infer",
        summary="Predict (Open Inference Protocol)",
        openapi_extra=openapi_body(V2InferenceRequest, example),
    )
    @router.post("/v2/models/{name}/versions/{version}/infer", include_in_schema=False)
    async def infer(name: str, request: Request, version: str | None = None) -> Response:
        wrong = _wrong_model(served, name, version)
        if wrong is not None:
            return wrong
        if not served.ready:
            return not_ready(served)
        try:
            refuse_binary_extension(request)
            body = await read_body(request)
            parsed = await off_loop(len(body), lambda: parse(body))
            request.state.request_id = parsed.request_id
            request.state.rows = parsed.rows
            assert served.batcher is not None
            out = await served.batcher.predict(parsed.columns, parsed.rows, parsed.methods)
        except Exception as exc:  # bad input is a 4xx, anything else a 500 answered as JSON
            return error_response(exc, mlflow=False)
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
        result: dict[str, Any] = {"model_name": served.name, "outputs": outputs}
        if served.version:
            result["model_version"] = served.version
        if parsed.request_id is not None:
            result["id"] = parsed.request_id
        return json_response(result)

    return router


__all__ = ["BAD_INPUT", "not_ready", "v2_router"]
