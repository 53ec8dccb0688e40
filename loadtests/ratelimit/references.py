"""Reference endpoints for the rate limiter's scenarios: the same protected API
(:func:`services.ratelimit.app.build_protected_app`, same routes, headers and failure policy), guarded
by another check.

- ``create_floor_app``: one plain Redis ``GET`` per request on the hardened limiter's own multiplexed
  connection, then admit: what any Redis-backed check costs at least (scenario ``floor``).
- ``create_limits_app``: the ``limits`` library's moving window (the exact sliding log, as the
  hardened default) on the same Valkey through redis-py (scenario ``limits``). It refuses over the
  limit too, so the same auditor counts its over-admissions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.exceptions import RedisError

from services.core.health import register_health_check
from services.core.lua import RedisCommands
from services.core.resources import HealthCheck, connect_early, pipeline_check
from services.ratelimit.app import build_protected_app, limiter_checks
from services.ratelimit.hardened import FailurePolicy
from services.ratelimit.ports import BackendError, Decision, Policy, RateLimiter
from services.ratelimit.settings import RateLimitSettings


class OneRoundTrip:
    """Admits everything after one plain ``GET``."""

    def __init__(self, redis: RedisCommands) -> None:
        self._redis = redis

    async def check(self, identity: str, policy: Policy) -> Decision:
        await self._redis.execute_command("GET", f"floor:{{{identity}}}")
        return Decision(allowed=True, remaining=policy.limit, reset_s=0)


@asynccontextmanager
async def _open_floor(app: FastAPI, settings: RateLimitSettings) -> AsyncIterator[RateLimiter]:
    """The same connection and failure policy as the hardened limiter: only the check differs."""
    async with limiter_checks(settings) as checks:
        await connect_early(checks)
        register_health_check(app, name="redis", check=pipeline_check(checks))
        yield FailurePolicy(OneRoundTrip(checks), on_error=settings.ratelimit_on_redis_error)


def create_floor_app(_: str) -> FastAPI:
    """uvicorn factory (the variant name is unused: there is one floor)."""
    return build_protected_app(
        title="Rate limiter floor", settings=RateLimitSettings(), open_limiter=_open_floor
    )


class LimitsLibraryWindow:
    """The ``limits`` library's moving window behind the lab's limiter port. One ``hit`` per check,
    as the library is used in front of an API; the remaining count is not asked for (it would be a
    second round trip), so a refusal says 0 and an admission the policy's limit."""

    def __init__(self, limiter: MovingWindowRateLimiter) -> None:
        self._limiter = limiter

    async def check(self, identity: str, policy: Policy) -> Decision:
        item = RateLimitItemPerSecond(policy.limit, policy.window_s, namespace=policy.name)
        try:
            allowed = await self._limiter.hit(item, identity)
        except (RedisError, OSError) as exc:  # the failure policy decides, as for the hardened limiter
            raise BackendError(f"{type(exc).__name__}: {exc}") from exc
        return Decision(allowed=allowed, remaining=policy.limit if allowed else 0, reset_s=policy.window_s)


@asynccontextmanager
async def _open_limits(app: FastAPI, settings: RateLimitSettings) -> AsyncIterator[RateLimiter]:
    storage = RedisStorage("async+" + settings.redis_url, implementation="redispy")
    register_health_check(app, name="redis", check=_storage_check(storage))
    yield FailurePolicy(
        LimitsLibraryWindow(MovingWindowRateLimiter(storage)), on_error=settings.ratelimit_on_redis_error
    )


def _storage_check(storage: RedisStorage) -> HealthCheck:
    async def check() -> None:
        if not await storage.check():
            raise ConnectionError("the limits library cannot reach Redis")

    return check


def create_limits_app(_: str) -> FastAPI:
    """uvicorn factory for the ``limits`` library's limiter."""
    return build_protected_app(
        title="Rate limiter (limits library)", settings=RateLimitSettings(), open_limiter=_open_limits
    )
