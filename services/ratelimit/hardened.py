"""Hardened limiter: one atomic Redis sliding window per identity.

The fix for per-process counting is a shared counter; the fix for the window edge is a window that
slides. One Lua script does the whole check (trim, count, admit, expire) in one round trip and
atomically, so concurrent requests on any number of app servers cannot both take the last slot.
The time comes from Redis (``TIME``), never from an app server's clock, so servers with skewed
clocks still agree. Keys carry a hash tag (``{identity}``) so the design runs on Redis Cluster, and
every key has a TTL.

A limiter is a dependency in the request path, so its failure is a decision, not an accident:
:class:`FailurePolicy` bounds every check by a short timeout and then either admits (fail-open,
counted in ``ratelimit_backend_errors_total``) or refuses with 503 (fail-closed).

Proven by ``tests/integration/test_ratelimit_flaws.py`` and ``test_ratelimit_faults.py``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets

import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.commands.core import AsyncScript

from services.core.resources import read_resource
from services.ratelimit.errors import LimiterUnavailable
from services.ratelimit.ports import BackendError, Decision, Policy, RateLimiter
from services.ratelimit.settings import Algorithm
from services.ratelimit.settings import FailurePolicy as FailurePolicyName

logger = logging.getLogger(__name__)

BACKEND_ERRORS = Counter(
    "ratelimit_backend_errors_total", "Checks the limiter could not make because Redis failed", ["policy"]
)

_KEY_PREFIX = {"sliding-log": "rl:log", "sliding-counter": "rl:ctr"}
_MICROSECONDS = 1_000_000


class RedisSlidingWindow:
    """``algorithm`` picks the script: ``sliding-log`` (exact) or ``sliding-counter`` (approximate)."""

    @classmethod
    def for_algorithm(cls, redis: aioredis.Redis, algorithm: Algorithm) -> RedisSlidingWindow:
        """The window with its Lua script registered (loaded into Redis on first use, and again
        after a Redis restart)."""
        lua = read_resource("services.ratelimit", f"{algorithm.replace('-', '_')}.lua")
        return cls(redis, script=redis.register_script(lua), algorithm=algorithm)

    def __init__(self, redis: aioredis.Redis, *, script: AsyncScript, algorithm: Algorithm) -> None:
        self._redis = redis
        self._script = script
        self._algorithm = algorithm

    async def check(self, identity: str, policy: Policy) -> Decision:
        key = f"{_KEY_PREFIX[self._algorithm]}:{{{identity}}}:{policy.name}"
        args: list[int | str] = [policy.limit, policy.window_s * _MICROSECONDS, secrets.token_hex(6)]
        try:
            allowed, remaining, reset_us, now_us = await self._script(keys=[key], args=args)
        except (TimeoutError, aioredis.RedisError, OSError) as exc:
            raise BackendError(f"{type(exc).__name__}: {exc}") from exc
        return Decision(
            allowed=bool(allowed),
            remaining=max(0, int(remaining)),
            reset_s=math.ceil(int(reset_us) / _MICROSECONDS),
            decided_at=int(now_us) / _MICROSECONDS,
        )


class FailurePolicy:
    """Wraps a limiter: every check is bounded by ``timeout_s``; a failed check admits or refuses."""

    def __init__(self, inner: RateLimiter, *, on_error: FailurePolicyName, timeout_s: float) -> None:
        self._inner = inner
        self._on_error = on_error
        self._timeout_s = timeout_s

    async def check(self, identity: str, policy: Policy) -> Decision:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._inner.check(identity, policy)
        except (BackendError, TimeoutError) as exc:
            return self._on_backend_error(policy, exc)

    def _on_backend_error(self, policy: Policy, exc: Exception) -> Decision:
        BACKEND_ERRORS.labels(policy.name).inc()
        logger.warning(
            "ratelimit_backend_error policy=%s on_error=%s error=%r", policy.name, self._on_error, exc
        )
        if self._on_error == "closed":
            raise LimiterUnavailable("the rate limiter's store is unavailable") from exc
        return Decision(allowed=True, remaining=policy.limit, reset_s=0, degraded=True)
