"""``GET /metrics`` in the Prometheus text format, and per-route request metrics.

Under several uvicorn workers each worker is its own process with its own counters; when the lab
sets ``PROMETHEUS_MULTIPROC_DIR`` the endpoint aggregates every worker's files instead, so a
scrape sees the whole service rather than whichever worker answered.
"""

from __future__ import annotations

import os
import time

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

router = APIRouter(tags=["operations"])

HTTP_REQUESTS = Counter("http_requests_total", "HTTP requests answered", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time from request to the start of the response",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def _registry() -> CollectorRegistry:
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
def metrics() -> Response:
    return Response(generate_latest(_registry()), media_type=CONTENT_TYPE_LATEST)


class RequestMetricsMiddleware:
    """Pure ASGI middleware: counts and times requests by route template, not by raw path,
    so ``/{code}`` stays one series however many codes are requested."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                route = _route_template(scope)
                HTTP_LATENCY.labels(scope["method"], route).observe(time.perf_counter() - started)
                HTTP_REQUESTS.labels(scope["method"], route, str(status)).inc()
            await send(message)

        await self.app(scope, receive, send_and_record)


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", "unmatched")
