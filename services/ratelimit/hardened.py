"""Hardened limiter: one atomic Redis sliding window per identity.

The fix for per-process counting is a shared counter; the fix for the window edge is a window that
slides. One Lua script does the whole check (trim, count, admit, expire) in one round trip and
atomically, so concurrent requests on any number of app servers cannot both take the last slot.
The time comes from Redis (``TIME``), never from an app server's clock, so servers with skewed
clocks still agree. Keys carry a hash tag (``{identity}``) so the design runs on Redis Cluster, and
every key has a TTL.

A limiter is a dependency in the request path, so its failure is a decision, not an accident:
its Redis client bounds every wait by a short budget (``services.ratelimit.app.limiter_redis``),
and :class:`FailurePolicy` turns a failed check into an admission (fail-open, counted in
``ratelimit_backend_errors_total``) or a 503 (fail-closed).

Proven by ``tests/integration/test_ratelimit_flaws.py`` and ``test_ratelimit_faults.py``.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
from prometheus_client import Counter

from services.core.lua import LuaScript
from services.core.resources import read_resource
from services.ratelimit.errors import LimiterUnavailable
from services.ratelimit.ports import BackendError, Decision, Policy, RateLimiter
from services.ratelimit.settings import Algorithm, FailureMode

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
        lua = read_resource("services.ratelimit", f"{algorithm.replace('-', '_')}.lua")
        return cls(redis, lua=lua, algorithm=algorithm)

    def __init__(self, redis: aioredis.Redis, *, lua: str, algorithm: Algorithm) -> None:
        self._script = LuaScript(redis, lua)
        self._key_prefix = _KEY_PREFIX[algorithm]
        self._arguments: dict[Policy, tuple[bytes, bytes]] = {}

    # The check runs on every request, so its path to Redis is as short as redis-py allows: every
    # argument already bytes (nothing for the encoder to convert), EVALSHA sent by LuaScript rather
    # than redis-py's Script object, and the Lua script makes each entry's unique member itself
    # rather than take a random token.
    # Found by profiling the check against the one-GET floor (docs/designs/ratelimit.md, "Run it").

    async def check(self, identity: str, policy: Policy) -> Decision:
        key = f"{self._key_prefix}:{{{identity}}}:{policy.name}".encode()
        try:
            allowed, remaining, reset_us, now_us = await self._script.run((key,), self._arguments_of(policy))
        except (TimeoutError, aioredis.RedisError, OSError) as exc:
            raise BackendError(f"{type(exc).__name__}: {exc}") from exc
        return Decision(
            allowed=allowed == 1,
            remaining=max(0, remaining),
            reset_s=-(-reset_us // _MICROSECONDS),  # rounded up: never tell a client to retry too early
            decided_at=now_us / _MICROSECONDS,
        )

    def _arguments_of(self, policy: Policy) -> tuple[bytes, bytes]:
        arguments = self._arguments.get(policy)
        if arguments is None:
            arguments = (str(policy.limit).encode(), str(policy.window_s * _MICROSECONDS).encode())
            self._arguments[policy] = arguments
        return arguments


class FailurePolicy:
    """Wraps a limiter: a check that fails (Redis down, or slower than the client's budget) admits
    or refuses, as configured.

    The time bound is the Redis client's, not an ``asyncio.timeout`` here: the client already gives
    the pool, the connect and the read the budget each and never retries, so a stalled Redis costs
    a request one budget (three in the worst case: a full pool, a new connection, then the read).
    A second timer per check would add a timer-heap entry to every request of the service for no
    tighter bound.
    """

    def __init__(self, inner: RateLimiter, *, on_error: FailureMode) -> None:
        self._inner = inner
        self._on_error = on_error

    async def check(self, identity: str, policy: Policy) -> Decision:
        try:
            return await self._inner.check(identity, policy)
        except BackendError as exc:
            return self._on_backend_error(policy, exc)

    def _on_backend_error(self, policy: Policy, exc: Exception) -> Decision:
        BACKEND_ERRORS.labels(policy.name).inc()
        logger.warning(
            "ratelimit_backend_error policy=%s on_error=%s error=%r", policy.name, self._on_error, exc
        )
        if self._on_error == "closed":
            raise LimiterUnavailable("the rate limiter's store is unavailable") from exc
        return Decision(allowed=True, remaining=policy.limit, reset_s=0, degraded=True)
