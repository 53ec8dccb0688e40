"""The one way a design builds its FastAPI app, so every service has the same errors, health and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext

from fastapi import FastAPI

from services.core import health, metrics
from services.core.gc_tuning import tune_after_startup
from services.core.logs import configure_logging
from services.core.problems import HeaderSizeLimitMiddleware, install_problem_handlers
from services.core.settings import CoreSettings

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def build_app(*, title: str, settings: CoreSettings, lifespan: Lifespan | None = None) -> FastAPI:
    """A FastAPI app with problem+json errors, ``/healthz`` and ``/metrics`` installed.

    The design's lifespan opens its resources and registers their health checks with
    :func:`services.core.health.register_health_check`.
    """
    configure_logging(level=settings.log_level)
    app = FastAPI(title=title, lifespan=_with_tuned_gc(lifespan, young_threshold=settings.gc_young_threshold))
    app.state.settings = settings
    app.state.health_checks = {}
    app.state.health_timeout_s = settings.health_timeout_s
    install_problem_handlers(app)
    app.include_router(health.router)
    app.include_router(metrics.router)
    if settings.http_metrics:
        app.add_middleware(metrics.RequestMetricsMiddleware)
    app.add_middleware(HeaderSizeLimitMiddleware, max_bytes=settings.max_header_bytes)
    return app


def _with_tuned_gc(lifespan: Lifespan | None, *, young_threshold: int) -> Lifespan:
    """The design's lifespan, then the collector tuned for serving once everything has started."""

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        async with lifespan(app) if lifespan is not None else nullcontext():
            tune_after_startup(young_threshold=young_threshold)
            yield

    return run


__all__ = ["Lifespan", "build_app"]
