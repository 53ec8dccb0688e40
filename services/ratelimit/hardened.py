"""Hardened limiter: one atomic Redis sliding window per identity.

The fix for per-process counting is a shared counter; the fix for the window edge is a window that
slides. One Lua script does the whole check (trim, count, admit, expire) in one round trip and
atomically, so concurrent requests on any number of app servers cannot both take the last slot.
The time comes from Redis (``TIME``), never from an app server's clock, so servers with skewed
clocks still agree. Keys carry a hash tag (``{identity}``) so the design runs on Redis Cluster, and
every key has a TTL.

A limiter is a dependency in the request path, so its failure is a decision, not an accident.
Every check goes out on one multiplexed connection (:class:`~services.core.autopipeline.AutoPipeline`),
so no check waits for a pooled connection, and the budget is counted from the moment the check is
written: "degraded" means Redis failed or took longer than the budget, never that this process was
busy. :class:`FailurePolicy` turns such a failed check into an admission (fail-open, counted in
``ratelimit_backend_errors_total``) or a 503 (fail-closed). An app server that is itself overloaded
sheds (:class:`ShedWhenBusy`): past a bound of checks in flight it answers 503 with ``Retry-After``
rather than queue more, and never admits unchecked.

Proven by ``tests/integration/test_ratelimit_flaws.py`` (bursts of 300 and 1,000 at the defaults
admit exactly the limit) and ``test_ratelimit_faults.py``.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
from prometheus_client import Counter

from services.core.lua import LuaScript, RedisCommands
from services.core.resources import read_resource
from services.ratelimit.errors import LimiterOverloaded, LimiterUnavailable
from services.ratelimit.ports import BackendError, Decision, Policy, RateLimiter
from services.ratelimit.settings import Algorithm, FailureMode

logger = logging.getLogger(__name__)

BACKEND_ERRORS = Counter(
    "ratelimit_backend_errors_total", "Checks the limiter could not make because Redis failed", ["policy"]
)
SHED = Counter(
    "ratelimit_shed_total", "Requests refused with 503 because too many checks were in flight", ["policy"]
)

_KEY_PREFIX = {"sliding-log": "rl:log", "sliding-counter": "rl:ctr"}
_MICROSECONDS = 1_000_000


class RedisSlidingWindow:
    """``algorithm`` picks the script: ``sliding-log`` (exact) or ``sliding-counter`` (approximate)."""

    @classmethod
    def for_algorithm(cls, redis: RedisCommands, algorithm: Algorithm) -> RedisSlidingWindow:
        lua = read_resource("services.ratelimit", f"{algorithm.replace('-', '_')}.lua")
        return cls(redis, lua=lua, algorithm=algorithm)

    def __init__(self, redis: RedisCommands, *, lua: str, algorithm: Algorithm) -> None:
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
    """Wraps a limiter: a check that fails (Redis down, or slower than the budget) admits or
    refuses, as configured.

    The time bound is the auto-pipeline's, not an ``asyncio.timeout`` here: one timer per batch of
    checks, counted from the write, and nothing retried, so a stalled Redis costs a request one
    budget (two when the connection is being made again). A timer per check would add a timer-heap
    entry to every request for no tighter bound, and would fire on a busy loop's own lateness.
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


class ShedWhenBusy:
    """Wraps a limiter: at most ``max_in_flight`` checks of this process wait on Redis at once; one
    more is refused with :class:`LimiterOverloaded` (503, ``Retry-After``) instead of joining them.

    What an overloaded app server must not do is turn its own backlog into admissions: the checks
    waiting behind a flood each hold a request open, and a limiter that let them time out and fail
    open would admit the flood. Shedding refuses the excess at once, before it costs Redis anything.
    """

    def __init__(self, inner: RateLimiter, *, max_in_flight: int) -> None:
        self._inner = inner
        self._max_in_flight = max_in_flight
        self._in_flight = 0

    async def check(self, identity: str, policy: Policy) -> Decision:
        if self._in_flight >= self._max_in_flight:
            SHED.labels(policy.name).inc()
            raise LimiterOverloaded(f"{self._in_flight} checks are already waiting on the rate limiter")
        self._in_flight += 1
        try:
            return await self._inner.check(identity, policy)
        finally:
            self._in_flight -= 1
