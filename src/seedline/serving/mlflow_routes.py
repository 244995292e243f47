"""MLflow's scoring protocol: ``/ping``, ``/health``, ``/version`` and ``/invocations`` (JSON or CSV)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from seedline.core.version import __version__
from seedline.serving.bodies import (
    JSON,
    MLflowInvocationRequest,
    content_type,
    decode_json,
    off_loop,
    openapi_body,
    read_body,
)
from seedline.serving.model import ServedModel
from seedline.serving.protocol import Request as Parsed
from seedline.serving.protocol import jsonable, parse_csv, parse_mlflow
from seedline.serving.responses import error_response, json_response
from seedline.serving.v2_routes import not_ready


def mlflow_router(served: ServedModel, example: dict[str, Any]) -> APIRouter:
    """Routes of MLflow's scoring protocol for ``served``."""
    router = APIRouter(tags=["mlflow"])

    @router.get("/ping", summary="Health (MLflow)")
    @router.get("/health", include_in_schema=False)
    async def ping() -> Response:
        return Response("\n", status_code=200, media_type=JSON)

    @router.get("/version", summary="Server version")
    async def version_info() -> Response:
        return Response(__version__, media_type=JSON)

    def parse(body: bytes, ctype: str) -> Parsed:
        if ctype == "text/csv":
            return parse_csv(body, served.schema)
        return parse_mlflow(decode_json(body), served.schema, has_proba=served.has_proba)

    @router.post(
        "/invocations",
        summary="Predict (MLflow scoring protocol)",
        openapi_extra=openapi_body(MLflowInvocationRequest, example, csv=True),
    )
    async def invocations(request: Request) -> Response:
        if not served.ready:
            return not_ready(served, mlflow=True)
        try:
            body = await read_body(request, accept=(JSON, "text/csv", ""))
            ctype = content_type(request)
            parsed = await off_loop(len(body), lambda: parse(body, ctype))
            request.state.rows = parsed.rows
            assert served.batcher is not None
            out = await served.batcher.predict(parsed.columns, parsed.rows, parsed.methods)
        except Exception as exc:  # bad input is a 4xx, anything else a 500 answered as JSON
            return error_response(exc, mlflow=True)
        return json_response({"predictions": jsonable(out[parsed.methods[0]])})

    return router


__all__ = ["mlflow_router"]
