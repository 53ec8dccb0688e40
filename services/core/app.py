"""The one way a design builds its FastAPI app, so every service has the same errors, health and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any, TypeVar, cast

import asyncpg
from fastapi import FastAPI

from services.core import health, metrics
from services.core.gc_tuning import tune_after_startup
from services.core.health import register_health_check
from services.core.learner import MINE, LearnerSlot, learner_wiring
from services.core.logs import configure_logging
from services.core.problems import (
    ErrorMapping,
    HeaderSizeLimitMiddleware,
    install_error_mapping,
    install_problem_handlers,
)
from services.core.resources import apply_schema, open_postgres_pool, postgres_check, read_resource
from services.core.settings import CoreSettings

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]
Wiring = TypeVar("Wiring")


def variant_wiring(
    variants: Mapping[str, Wiring],
    variant: str,
    *,
    design: str,
    mine: LearnerSlot | None = None,
    port: type | None = None,
) -> Wiring:
    """What ``variant`` wires in, or a ``ValueError`` that names the variants there are.

    ``mine`` is the learner's variant: the opener that ``mine`` names, taking the same arguments as
    the others, its adapters checked against ``port`` when it opens.
    """
    if variant == MINE and mine is not None and port is not None:
        return cast(Wiring, learner_wiring(mine, port=port))
    if variant not in variants:
        known = sorted([*variants, MINE] if mine is not None else variants)
        raise ValueError(f"unknown {design} variant {variant!r}; expected one of {known}")
    return variants[variant]


def build_app(
    *,
    title: str,
    settings: CoreSettings,
    lifespan: Lifespan | None = None,
    errors: ErrorMapping[Any] | None = None,
) -> FastAPI:
    """A FastAPI app with problem+json errors, ``/healthz`` and ``/metrics`` installed.

    The design's lifespan opens its resources and registers their health checks with
    :func:`services.core.health.register_health_check`; ``errors`` is the design's mapping of its
    domain errors (from its ``errors.py``).
    """
    configure_logging(level=settings.log_level)
    app = FastAPI(title=title, lifespan=_with_tuned_gc(lifespan, young_threshold=settings.gc_young_threshold))
    app.state.settings = settings
    app.state.health_checks = {}
    app.state.health_timeout_s = settings.health_timeout_s
    install_problem_handlers(app)
    if errors is not None:
        install_error_mapping(app, errors)
    app.include_router(health.router)
    app.include_router(metrics.router)
    if settings.http_metrics:
        app.add_middleware(metrics.RequestMetricsMiddleware)
    app.add_middleware(HeaderSizeLimitMiddleware, max_bytes=settings.max_header_bytes)
    return app


@asynccontextmanager
async def open_service_pool(
    app: FastAPI, settings: CoreSettings, *, schema: str, ddl: str
) -> AsyncIterator[asyncpg.Pool]:
    """The service's PostgreSQL pool in its own ``schema``, its tables created from ``ddl`` and its
    health on ``/healthz``: what every service backed by PostgreSQL opens first."""
    async with open_postgres_pool(settings, schema=schema) as pool:
        await apply_schema(pool, ddl)
        register_health_check(app, name="postgres", check=postgres_check(pool))
        yield pool


def pool_lifespan(settings: CoreSettings, *, schema: str, package: str, ddl_file: str) -> Lifespan:
    """The lifespan of a service whose routes only need its pool (``PoolDep``): the pool of
    :func:`open_service_pool`, kept in ``app.state.pool``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ddl = read_resource(package, ddl_file)
        async with open_service_pool(app, settings, schema=schema, ddl=ddl) as pool:
            app.state.pool = pool
            yield

    return lifespan


def _with_tuned_gc(lifespan: Lifespan | None, *, young_threshold: int) -> Lifespan:
    """The design's lifespan, then the collector tuned for serving once everything has started."""

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        async with lifespan(app) if lifespan is not None else nullcontext():
            tune_after_startup(young_threshold=young_threshold)
            yield

    return run


__all__ = ["Lifespan", "build_app", "open_service_pool", "pool_lifespan", "variant_wiring"]
