"""JSON responses of the server, and the one place where an exception becomes an HTTP status.

Bad input is a 4xx whose body says what was expected and what was found. Anything else
is a 500 answered as JSON (never a dropped connection, so the next request on a
keep-alive connection is served), and logged with its traceback.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi.responses import Response

from seedline.serving.batching import ModelRejected
from seedline.serving.protocol import ProtocolError
from seedline.workflow.schema import SchemaViolation

JSON = "application/json"
BAD_INPUT = (ProtocolError, SchemaViolation, ModelRejected)
MLFLOW_CODES = {
    400: "BAD_REQUEST",
    413: "BAD_REQUEST",
    415: "BAD_REQUEST",
    422: "INVALID_PARAMETER_VALUE",
}

server_log = logging.getLogger("seedline.serve")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type=JSON,
        headers=headers,
    )


def error_response(exc: Exception, *, mlflow: bool) -> Response:
    """The answer to a request that raised ``exc``: 400/413/415/422 for bad input, 500 otherwise."""
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
    else:  # a bug; still an answer, never a dropped connection
        server_log.error("unexpected error", exc_info=exc)
        body, status = {"error": f"internal error: {type(exc).__name__}: {exc}"}, 500
    if mlflow:
        code = MLFLOW_CODES.get(status, "INTERNAL_ERROR")
        body = {"error_code": code, "message": body.pop("error"), **body}
    return json_response(body, status)


__all__ = ["BAD_INPUT", "error_response", "json_response"]
