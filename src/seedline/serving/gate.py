"""The ASGI gate in front of every endpoint: bearer token, body size limit, metrics and the access log.

A pure ASGI middleware (no task per request). Requests are counted under their route
template (``/v2/models/{name}/infer``) or ``unmatched``, so the raw path never reaches
``/metrics``.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from starlette.routing import BaseRoute, Match

from seedline.serving.metrics import UNMATCHED, Metrics

if TYPE_CHECKING:
    from seedline.serving.app import ServeConfig

HEALTH_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/ping", "/health"})
JSON = "application/json"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = logging.getLogger("seedline.access")


class _BodyTooLarge(BaseException):
    """Raised from ``receive`` when a streamed body passes the limit.

    A BaseException, like ``asyncio.CancelledError``, so that no handler's ``except
    Exception`` turns it into a 500: it must reach the gate, which answers 413.
    """


class Gate:
    """Pure ASGI middleware (no per-request task): token, body size, metrics and the access log."""

    def __init__(
        self, app: ASGIApp, *, config: ServeConfig, metrics: Metrics, routes: Sequence[BaseRoute]
    ) -> None:
        self.app = app
        self.routes = routes
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
            self.metrics.observe_request(self.template(scope), scope["method"], status[0], elapsed)
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

    def template(self, scope: Scope) -> str:
        """The metrics label: the matched route's template, or ``unmatched``; never the raw path."""
        route = scope.get("route")
        if route is None:  # answered before routing (401, 413): match it here
            for candidate in self.routes:
                match, _ = candidate.matches(scope)
                if match is Match.FULL:
                    route = candidate
                    break
        path = getattr(route, "path", None)
        return path if isinstance(path, str) else UNMATCHED

    def _too_large(self, size: int) -> dict[str, Any]:
        return {
            "error": f"the request body is too large: {size} bytes, the limit is {self.max_body}",
            "hint": "send fewer rows per request (or use 'seedline predict' for files), or start the server with a larger --max-body-mb",
        }


__all__ = ["HEALTH_PATHS", "Gate"]
