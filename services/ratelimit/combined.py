"""Two quotas in one check: the route's policy and the caller's overall budget, counted together by
one Lua script (``sliding_log_all.lua``) over one sliding log per quota. An optional piece beside the
hardened sliding window, not wired into either variant; it is the lab's lesson about Redis Cluster.

A script that names several keys runs on a cluster only if they all hash to one slot; otherwise the
node refuses it with ``CROSSSLOT``. :data:`KeyNaming` says how the logs are named:

- ``"hash-tagged"`` (the fix, the naming the hardened limiter uses): ``rl:all:{alice}:default`` and
  ``rl:all:{alice}:overall`` hash on ``alice`` alone, so one caller's logs share a slot and the
  check runs on whichever node serves it.
- ``"untagged"`` (the flaw): ``rl:all:alice:default`` and ``rl:all:alice:overall`` hash as whole
  strings, to different slots for most callers. A single server never notices; on a cluster every
  such check fails, and behind a fail-open :class:`~services.ratelimit.hardened.FailurePolicy` every
  request is admitted, counted as degraded.

Exposed by ``tests/integration/test_redis_cluster.py`` (the untagged limiter admits a whole burst
on the embedded cluster, the hash-tagged one exactly the limit).
"""

from __future__ import annotations

from typing import Literal

import redis.asyncio as aioredis

from services.core.lua import LuaScript, RedisCommands
from services.core.resources import read_resource
from services.ratelimit.ports import BackendError, Decision, Policy

KeyNaming = Literal["hash-tagged", "untagged"]

_MICROSECONDS = 1_000_000


class CombinedQuota:
    """Admits a request only if both ``policy`` (the route's) and ``overall`` have room for it."""

    def __init__(self, redis: RedisCommands, *, overall: Policy, naming: KeyNaming) -> None:
        self._script = LuaScript(redis, read_resource("services.ratelimit", "sliding_log_all.lua"))
        self._overall = overall
        self._naming = naming

    async def check(self, identity: str, policy: Policy) -> Decision:
        quotas = (policy, self._overall)
        keys = tuple(log_key(identity, quota, naming=self._naming) for quota in quotas)
        arguments = tuple(str(n).encode() for q in quotas for n in (q.limit, q.window_s * _MICROSECONDS))
        try:
            allowed, remaining, now_us = await self._script.run(keys, arguments)
        except (TimeoutError, aioredis.RedisError, OSError) as exc:
            raise BackendError(f"{type(exc).__name__}: {exc}") from exc
        # Waiting out the route's window always frees a slot in it; the overall budget may take longer.
        reset_s = 0 if allowed else policy.window_s
        return Decision(
            allowed=allowed == 1, remaining=remaining, reset_s=reset_s, decided_at=now_us / _MICROSECONDS
        )


def log_key(identity: str, quota: Policy, *, naming: KeyNaming) -> bytes:
    """The log of one caller's quota; hash-tagged, every log of the caller lands in one slot."""
    caller = f"{{{identity}}}" if naming == "hash-tagged" else identity
    return f"rl:all:{caller}:{quota.name}".encode()
