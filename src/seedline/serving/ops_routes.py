"""Operations endpoints: ``/metrics`` for Prometheus."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import Response

from seedline.serving.metrics import Metrics


def ops_router(metrics: Metrics) -> APIRouter:
    router = APIRouter(tags=["ops"])

    @router.get("/metrics", summary="Prometheus metrics")
    async def metrics_endpoint() -> Response:
        # with several workers this reads every worker's files: off the event loop
        body = await asyncio.to_thread(metrics.render)
        return Response(body, media_type=metrics.content_type)

    return router


__all__ = ["ops_router"]
