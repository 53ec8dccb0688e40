"""Learners' variants as test fixtures: a half fix the exercises grade (it passes some stages and
fails the next), and broken ones that ``lab check`` must report clearly. Not product code.

The order flow's half fix needs no module of its own: it is the naive checkout with its row-lock
setting (``LAB_ORDERS_NAIVE_LOCKING=row-lock``), loaded through the ``mine`` slot."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI

from services.ratelimit.ports import Decision, Policy, RateLimiter
from services.ratelimit.settings import RateLimitSettings


class SharedFixedWindow:
    """Half a fix: one counter in Redis that every worker shares (INCR is atomic), but still a fixed
    window, which forgets everything at its edge."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def check(self, identity: str, policy: Policy) -> Decision:
        now = time.time()
        window = int(now // policy.window_s)
        key = f"half-fix:{policy.name}:{identity}:{window}"
        used = int(await self._redis.incr(key))
        if used == 1:
            await self._redis.expire(key, policy.window_s)
        reset_s = math.ceil((window + 1) * policy.window_s - now)
        if used > policy.limit:
            return Decision(allowed=False, remaining=0, reset_s=reset_s)
        return Decision(allowed=True, remaining=policy.limit - used, reset_s=reset_s)


@asynccontextmanager
async def open_shared_fixed_window(_: FastAPI, settings: RateLimitSettings) -> AsyncIterator[RateLimiter]:
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        yield SharedFixedWindow(redis)
    finally:
        await redis.aclose()


class NoCheck:
    """A limiter that forgot the one method its port requires."""

    async def decide(self, identity: str, policy: Policy) -> Decision:
        return Decision(allowed=True, remaining=0, reset_s=1)


@asynccontextmanager
async def open_without_check(_: FastAPI, __: RateLimitSettings) -> AsyncIterator[Any]:
    yield NoCheck()


@asynccontextmanager
async def open_hanging(_: FastAPI, __: RateLimitSettings) -> AsyncIterator[RateLimiter]:
    """Waits at start-up for something that never comes."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")
    yield  # pragma: no cover
