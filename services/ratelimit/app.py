"""``create_app(variant)``: the protected API wired to the naive or the hardened limiter.

The two variants differ only here, in which limiter the guard is given.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from services.core.app import build_app, variant_wiring
from services.core.health import register_health_check
from services.core.learner import learner_slot
from services.core.resources import CommandPipeline, command_pipeline, connect_early, pipeline_check
from services.ratelimit import api
from services.ratelimit.errors import ERRORS
from services.ratelimit.hardened import FailurePolicy, RedisSlidingWindow, ShedWhenBusy
from services.ratelimit.limiter import RateLimitGuard
from services.ratelimit.naive import FixedWindowCounter
from services.ratelimit.ports import Policy, RateLimiter
from services.ratelimit.settings import RateLimitSettings

OpenLimiter = Callable[[FastAPI, RateLimitSettings], AbstractAsyncContextManager[RateLimiter]]


@asynccontextmanager
async def open_naive_limiter(_: FastAPI, __: RateLimitSettings) -> AsyncIterator[RateLimiter]:
    """Counts in this process's memory: nothing to open."""
    yield FixedWindowCounter()


@asynccontextmanager
async def open_hardened_limiter(app: FastAPI, settings: RateLimitSettings) -> AsyncIterator[RateLimiter]:
    """The sliding window on the checks' one multiplexed connection, its failure policy and shedding."""
    async with limiter_checks(settings) as checks:
        await connect_early(checks)
        register_health_check(app, name="redis", check=pipeline_check(checks))
        window = RedisSlidingWindow.for_algorithm(checks, settings.ratelimit_algorithm)
        guarded = FailurePolicy(window, on_error=settings.ratelimit_on_redis_error)
        yield ShedWhenBusy(guarded, max_in_flight=settings.ratelimit_max_in_flight)


def limiter_checks(settings: RateLimitSettings) -> CommandPipeline:
    """The checks' one multiplexed connection (a cluster client on a cluster), every batch bounded
    by the limiter's budget."""
    return command_pipeline(settings, timeout_s=settings.ratelimit_redis_timeout_ms / 1000)


VARIANTS: dict[str, OpenLimiter] = {"naive": open_naive_limiter, "hardened": open_hardened_limiter}


def policies(settings: RateLimitSettings) -> tuple[Policy, dict[str, Policy]]:
    default = Policy("default", settings.ratelimit_limit, settings.ratelimit_window_s)
    per_route = {
        route: Policy(o.name, o.limit, o.window_s) for route, o in settings.ratelimit_route_policies.items()
    }
    return default, per_route


def create_app(variant: str, settings: RateLimitSettings | None = None) -> FastAPI:
    settings = settings or RateLimitSettings()
    open_limiter = variant_wiring(
        VARIANTS,
        variant,
        design="rate-limiter",
        mine=learner_slot(settings, design="ratelimit"),
        port=RateLimiter,
    )
    return build_protected_app(
        title=f"Rate limiter ({variant})", settings=settings, open_limiter=open_limiter
    )


def build_protected_app(*, title: str, settings: RateLimitSettings, open_limiter: OpenLimiter) -> FastAPI:
    """The protected API guarded by whatever limiter ``open_limiter`` opens (the bench adds a baseline)."""
    default, per_route = policies(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_limiter(app, settings) as limiter:
            app.state.rate_limit_guard = RateLimitGuard(
                limiter, default=default, per_route=per_route, trusted_proxies=settings.trusted_proxies
            )
            yield

    app = build_app(title=title, settings=settings, lifespan=lifespan, errors=ERRORS)
    app.include_router(api.router)
    return app
