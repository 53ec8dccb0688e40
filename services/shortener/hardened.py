"""Hardened adapters: the fixes for both of the naive variant's flaws, and nothing else.

Fix 1, creates: a pre-generated key pool (:mod:`services.shortener.keypool`). Codes are generated
ahead of time into a table kept above a low-water mark; each instance leases a batch with one
``FOR UPDATE SKIP LOCKED`` statement and hands codes out from memory, so a create is one ``INSERT``
and never a collision check. Shown by ``tests/integration/test_shortener_keys.py`` (10,000 creates
from two processes, 10,000 distinct codes).

Fix 2, redirects: cache-aside on Redis (:mod:`services.shortener.cache`) with one database read per
code at a time (no stampede), negative caching and tombstones on delete; a cache hit is one ``GET``,
and clicks are added up in the replica's memory and written to PostgreSQL once a second
(:mod:`services.shortener.clicks`, which states what a crash of each part costs). Shown by
``tests/integration/test_shortener_stampede.py`` (200 concurrent misses, one database read),
``test_shortener_replicas.py`` (410 on every replica after a delete) and
``test_shortener_clicks.py`` (no click lost to a Redis crash or a clean stop; a killed replica loses
at most one flush interval of its clicks).

Optional, off by default: a replica-local hot-key cache with delete broadcasts
(:mod:`services.shortener.hotcache`, ``LAB_SHORTENER_HOT_CACHE_TTL_MS``), which trades a stated
staleness bound for a redirect path without network round trips.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import redis.asyncio as aioredis

from services.core.autopipeline import AutoPipeline
from services.core.background import background
from services.core.health import register_health_check
from services.core.resources import apply_schema, connect_early, open_redis, read_resource, redis_check
from services.shortener.cache import CachedRedirects
from services.shortener.clicks import ClickTally, flush_on_shutdown, keep_flushing
from services.shortener.hotcache import HotKeyCache, invalidation_channel, listen_for_invalidations
from services.shortener.keypool import KeyPool, keep_pool_filled
from services.shortener.ports import Adapters, Wiring
from services.shortener.settings import ShortenerSettings

logger = logging.getLogger(__name__)


@asynccontextmanager
async def open_adapters(wiring: Wiring) -> AsyncIterator[Adapters]:
    settings, prefix = wiring.settings, wiring.redis_prefix
    async with AsyncExitStack() as stack:
        redis = await stack.enter_async_context(open_redis(settings))
        register_health_check(wiring.app, name="redis", check=redis_check(redis))
        # The redirect path's commands, batched per event-loop turn on one connection.
        pipeline = await stack.enter_async_context(
            AutoPipeline(settings.redis_url, timeout_s=settings.redis_socket_timeout_s)
        )
        await connect_early(pipeline)
        for sql in ("keypool.sql", "clicks.sql"):
            await apply_schema(wiring.pool, read_resource("services.shortener", sql))
        keys = await stack.enter_async_context(open_key_pool(wiring))
        clicks = await stack.enter_async_context(open_click_tally(wiring))
        hot = await stack.enter_async_context(open_hot_cache(redis, prefix=prefix, settings=settings))
        redirects = CachedRedirects(
            redis,
            wiring.links,
            prefix=prefix,
            settings=settings,
            pipeline=pipeline,
            clicks=clicks,
            hot=hot,
        )
        yield Adapters(codes=keys, redirects=redirects, clicks=clicks)


@asynccontextmanager
async def open_key_pool(wiring: Wiring) -> AsyncIterator[KeyPool]:
    """The pool, filled before the first create, and this instance's share of the generator's work."""
    settings = wiring.settings
    keys = KeyPool(
        wiring.pool,
        code_length=settings.shortener_code_length,
        batch_size=settings.shortener_keypool_batch_size,
        low_water=settings.shortener_keypool_low_water,
        target=settings.shortener_keypool_target,
    )
    await keys.refill()
    async with background(keep_pool_filled(keys, interval_s=settings.shortener_keypool_check_interval_s)):
        yield keys


@asynccontextmanager
async def open_click_tally(wiring: Wiring) -> AsyncIterator[ClickTally]:
    """Clicks added up in memory, flushed on a timer and once more on shutdown: a clean stop loses none."""
    tally = ClickTally(wiring.links)
    flushing = keep_flushing(tally, interval_s=wiring.settings.shortener_click_flush_interval_s)
    try:
        async with background(flushing):
            yield tally
    finally:
        await flush_on_shutdown(tally)


@asynccontextmanager
async def open_hot_cache(
    redis: aioredis.Redis, *, prefix: str, settings: ShortenerSettings
) -> AsyncIterator[HotKeyCache | None]:
    """The optional in-process cache and the listener that drops what other replicas delete."""
    if not settings.shortener_hot_cache_ttl_ms:
        yield None
        return
    hot = HotKeyCache(
        ttl_s=settings.shortener_hot_cache_ttl_ms / 1000, max_entries=settings.shortener_hot_cache_max_entries
    )
    async with background(listen_for_invalidations(redis, channel=invalidation_channel(prefix), cache=hot)):
        yield hot
