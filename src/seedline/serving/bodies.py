"""Request bodies: their pydantic models (which the OpenAPI schema is built from) and how they are read.

The models describe the envelope of each protocol; the values inside are checked column
by column against the model's input schema afterwards (``serving.protocol``), so an error
can name the column. Bodies over ``OFF_LOOP_BYTES`` are decoded in a worker thread, so a
large request never holds up the event loop (and with it ``/v2/health/live``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal, TypeVar, get_args

import orjson
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from seedline.serving.protocol import ProtocolError, V2Datatype

T = TypeVar("T")
JSON = "application/json"
OFF_LOOP_BYTES = 64 * 1024
BINARY_HEADER = "inference-header-content-length"


class V2Tensor(BaseModel):
    """One input tensor: a column (shape ``[N]`` or ``[N, 1]``) or the whole table (``[N, n_columns]``)."""

    model_config = ConfigDict(extra="allow")

    name: StrictStr
    shape: list[StrictInt] = Field(min_length=1)
    datatype: V2Datatype
    data: list[Any] = Field(
        description="The values, flat in row-major order or nested per dimension."
    )
    parameters: dict[str, Any] | None = None


class V2Output(BaseModel):
    """An output to compute."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(description="predict, or predict_proba for a classifier.")
    parameters: dict[str, Any] | None = None


class V2InferenceRequest(BaseModel):
    """The body of ``POST /v2/models/{name}/infer`` (Open Inference Protocol, JSON)."""

    model_config = ConfigDict(extra="allow")

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[V2Tensor] = Field(min_length=1)
    outputs: list[V2Output] | None = None


class DataframeSplit(BaseModel):
    """``pandas.DataFrame.to_dict(orient='split')``."""

    columns: list[str] | None = None
    data: list[list[Any]]
    index: list[Any] | None = None


class MLflowParams(BaseModel):
    model_config = ConfigDict(extra="allow")

    predict_method: Literal["predict", "predict_proba"] = "predict"


class MLflowInvocationRequest(BaseModel):
    """The JSON body of ``POST /invocations``: exactly one of the four input formats."""

    dataframe_split: DataframeSplit | None = None
    dataframe_records: list[dict[str, Any]] | None = None
    instances: list[Any] | dict[str, Any] | None = None
    inputs: list[Any] | dict[str, Any] | None = None
    params: MLflowParams | None = None


def openapi_body(model: type[BaseModel], example: Any, *, csv: bool = False) -> dict[str, Any]:
    """``openapi_extra`` for a route whose body is read by hand: the schema comes from the pydantic model."""
    content: dict[str, Any] = {
        JSON: {"schema": model.model_json_schema(ref_template="#/components/schemas/{model}")}
    }
    content[JSON]["example"] = example
    if csv:
        content["text/csv"] = {"schema": {"type": "string"}}
    return {"requestBody": {"required": True, "content": content}}


def component_schemas(*models: type[BaseModel]) -> dict[str, Any]:
    """The ``$defs`` of the models, to be merged into the OpenAPI document's components."""
    out: dict[str, Any] = {}
    for model in models:
        out.update(
            model.model_json_schema(ref_template="#/components/schemas/{model}").get("$defs", {})
        )
    return out


def refuse_binary_extension(request: Request) -> None:
    """tritonclient's binary tensors (``Inference-Header-Content-Length``) are not supported: say so."""
    if BINARY_HEADER in request.headers:
        raise ProtocolError(
            "the binary data extension of the inference protocol (Inference-Header-Content-Length) "
            "is not supported by this server; send the tensors as JSON",
            hint="tritonclient.http: pass binary_data=False to InferInput.set_data_from_numpy and "
            "InferRequestedOutput, or use the MLflow endpoint POST /invocations",
        )


def decode_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"the body is not valid JSON: {exc}") from None


def content_type(request: Request) -> str:
    return request.headers.get("content-type", JSON).split(";")[0].strip().lower()


async def read_body(
    request: Request, *, accept: tuple[str, ...] = (JSON, "application/*+json", "")
) -> bytes:
    """The raw body: 415 for a content type not in ``accept``, 400 for an empty one."""
    ctype = content_type(request)
    if ctype not in accept:
        raise ProtocolError(
            f"content type {ctype!r} is not accepted here; send {JSON}"
            + (" or text/csv" if "text/csv" in accept else ""),
            status=415,
            hint="curl: -H 'Content-Type: application/json'",
        )
    body = await request.body()
    if not body.strip():
        raise ProtocolError(
            "the request body is empty; expected "
            + ("a CSV table with a header" if ctype == "text/csv" else "a JSON object")
        )
    return body


async def off_loop(size: int, fn: Callable[[], T]) -> T:
    """Run ``fn`` (decoding and validating a body) in a worker thread when the body is large."""
    if size > OFF_LOOP_BYTES:
        return await asyncio.to_thread(fn)
    return fn()


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the body"


def validate_v2(payload: Any) -> V2InferenceRequest:
    """The V2 envelope, validated by its pydantic model; the first problem becomes a 400 that names its place."""
    if not isinstance(payload, dict):
        kind = "a list" if isinstance(payload, list) else type(payload).__name__
        raise ProtocolError(
            f"the body must be a JSON object with 'inputs', got {kind}",
            hint='{"inputs": [{"name": "COLUMN", "shape": [1], "datatype": "FP64", "data": [1.0]}, ...]}',
        )
    try:
        return V2InferenceRequest.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = _where(tuple(first["loc"]))
        got = first.get("input")
        shown = repr(got) if len(repr(got)) <= 60 else repr(got)[:57] + "..."
        expected = first["msg"]
        if where.endswith(".datatype"):
            expected = "one of " + ", ".join(get_args(V2Datatype))
        raise ProtocolError(
            f"{where}: {expected}; got {shown}"
            if first["type"] != "missing"
            else f"{where} is missing",
            hint="send one tensor per column, or one 2-D tensor [rows, columns]; see GET /v2/models/{name}",
        ) from None


__all__ = [
    "MLflowInvocationRequest",
    "V2InferenceRequest",
    "content_type",
    "decode_json",
    "off_loop",
    "openapi_body",
    "read_body",
    "refuse_binary_extension",
    "validate_v2",
]
