"""Optional in-process hot-key cache in front of Redis (``LAB_SHORTENER_HOT_CACHE_TTL_MS``, off by default).

A viral link can exceed what one Redis key serves; a short-lived copy in each app process absorbs
those reads. Deletes are broadcast on a Redis pub/sub channel so every replica drops its copy at once.
Pub/sub delivers at most once: a replica that was disconnected may miss a message, so it clears its
whole cache on reconnect, and the staleness bound is the entry TTL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.exceptions import RedisError

from services.core.background import background
from services.core.cluster import RedisClient
from services.shortener.links import Target
from services.shortener.settings import ShortenerSettings

logger = logging.getLogger(__name__)


def invalidation_channel(prefix: str) -> str:
    return f"{prefix}invalidate"


class Absent:
    """Nothing held (distinct from a held "no such link")."""


ABSENT = Absent()


class HotKeyCache:
    """Entries live ``ttl_s``; past ``max_entries`` the cache starts over (hot keys come right back)."""

    def __init__(self, *, ttl_s: float, max_entries: int) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._entries: dict[str, tuple[float, Target | None]] = {}

    def get(self, code: str) -> Target | Absent | None:
        entry = self._entries.get(code)
        if entry is None or entry[0] <= time.monotonic():
            return ABSENT
        return entry[1]

    def put(self, code: str, target: Target | None) -> None:
        if len(self._entries) >= self._max_entries:
            self._entries.clear()
        self._entries[code] = (time.monotonic() + self._ttl_s, target)

    def drop(self, code: str) -> None:
        self._entries.pop(code, None)

    def clear(self) -> None:
        self._entries.clear()


async def listen_for_invalidations(redis: RedisClient, *, channel: str, cache: HotKeyCache) -> None:
    """Drop every code published on ``channel``; runs for the life of the app."""
    while True:
        try:
            async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(channel)
                cache.clear()  # whatever was published while we were not listening is unknown
                async for message in pubsub.listen():
                    cache.drop(_text(message["data"]))
        except (OSError, RedisError) as exc:
            logger.warning("hot_cache_listener_reconnecting error=%r", exc)
            cache.clear()
            await asyncio.sleep(1.0)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@asynccontextmanager
async def open_hot_cache(
    redis: RedisClient, *, prefix: str, settings: ShortenerSettings
) -> AsyncIterator[HotKeyCache | None]:
    """The cache when ``LAB_SHORTENER_HOT_CACHE_TTL_MS`` is set (``None`` otherwise), and the listener
    that drops what other replicas delete, for as long as the block lasts."""
    if not settings.shortener_hot_cache_ttl_ms:
        yield None
        return
    hot = HotKeyCache(
        ttl_s=settings.shortener_hot_cache_ttl_ms / 1000, max_entries=settings.shortener_hot_cache_max_entries
    )
    async with background(listen_for_invalidations(redis, channel=invalidation_channel(prefix), cache=hot)):
        yield hot
