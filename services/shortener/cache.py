"""Cache-aside on Redis for the redirect path, with stampede protection and negative caching.

A hit answers from Redis in one ``GET`` (its click is added to the replica's in-memory tally,
:mod:`services.shortener.clicks`). A miss goes to PostgreSQL once per code at a time: concurrent
misses in one process share one in-flight read, and across processes one filler holds a short Redis
lock while the others poll the cache. Unknown codes are cached as "missing" for a short TTL, deletes
overwrite the entry with a tombstone, and entries of expiring links never outlive the link.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.core.autopipeline import AutoPipeline
from services.core.resources import read_resource
from services.shortener.hotcache import Absent, HotKeyCache, invalidation_channel
from services.shortener.links import Target, utc_now
from services.shortener.metrics import CACHE_RESULTS
from services.shortener.ports import ClickCounter
from services.shortener.repository import PostgresLinks
from services.shortener.settings import ShortenerSettings

logger = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MISSING = "-"  # the negative entry: no link was ever created under this code


class _Miss:
    """Nothing cached (distinct from a cached "no such link")."""


MISS = _Miss()

# Bound once: ``labels()`` is a dictionary lookup under a lock, not free on the hot path.
_HITS = CACHE_RESULTS.labels("hardened", "hit")
_LOCAL_HITS = CACHE_RESULTS.labels("hardened", "local-hit")
_MISSES = CACHE_RESULTS.labels("hardened", "miss")
_ERRORS = CACHE_RESULTS.labels("hardened", "error")


class CachedRedirects:
    """A :class:`~services.shortener.ports.Redirects` in front of :class:`PostgresLinks`; the
    redirect path's reads go through ``pipeline``, batched per event-loop turn on one connection."""

    def __init__(
        self,
        redis: aioredis.Redis,
        links: PostgresLinks,
        *,
        prefix: str,
        settings: ShortenerSettings,
        pipeline: AutoPipeline,
        clicks: ClickCounter,
        hot: HotKeyCache | None = None,
    ) -> None:
        self._redis = redis
        self._pipeline = pipeline
        self._links = links
        self._clicks = clicks
        self._prefix = prefix
        self._settings = settings
        self._hot = hot
        self._release_lock = redis.register_script(read_resource("services.shortener", "release_lock.lua"))
        self._inflight: dict[str, asyncio.Task[Target | None]] = {}
        self._channel = invalidation_channel(prefix)

    async def follow(self, code: str, *, now: datetime) -> Target | None:
        if self._hot is not None and not isinstance(held := self._hot.get(code), Absent):
            _LOCAL_HITS.inc()
            await self._count_if_live(code, held, now=now)
            return held
        target = await self._follow_shared(code, now=now)
        if self._hot is not None:
            self._hot.put(code, target)
        return target

    async def remember(self, code: str, target: Target) -> None:
        """Overwrite whatever is cached: a new link replaces a "missing" entry, a delete leaves a
        tombstone every replica reads at once."""
        try:
            await self._store(code, target, only_if_absent=False)
            if self._hot is not None:
                self._hot.drop(code)
                await self._redis.publish(self._channel, code)
        except RedisError as exc:  # bounded by the entry's TTL; logged so it is seen
            logger.warning("cache_invalidation_failed code=%s error=%r", code, exc)

    async def _follow_shared(self, code: str, *, now: datetime) -> Target | None:
        try:
            cached = await self._cached(code)
            if isinstance(cached, _Miss):
                _MISSES.inc()
                target = await self._fill_once(code)
            else:
                _HITS.inc()
                target = cached
        except RedisError as exc:  # a cache outage slows redirects down; it must not break them
            _ERRORS.inc()
            logger.warning("cache_unavailable code=%s error=%r", code, exc)
            target = await self._links.find_target(code)
        await self._count_if_live(code, target, now=now)
        return target

    async def _count_if_live(self, code: str, target: Target | None, *, now: datetime) -> None:
        if target is not None and target.is_live(now=now):
            await self._clicks.record(code)

    async def _fill_once(self, code: str) -> Target | None:
        """Concurrent misses for one code in this process share one fill."""
        task = self._inflight.get(code)
        if task is None:
            task = asyncio.create_task(self._fill(code))
            self._inflight[code] = task
            task.add_done_callback(lambda _: self._inflight.pop(code, None))
        return await asyncio.shield(task)

    async def _fill(self, code: str) -> Target | None:
        """Across processes: whoever takes the lock reads the database; the others wait for the cache."""
        token = uuid.uuid4().hex
        deadline = time.monotonic() + self._settings.shortener_fill_wait_s
        while time.monotonic() < deadline:
            if await self._redis.set(
                self._lock_key(code), token, nx=True, px=self._settings.shortener_fill_lock_ttl_ms
            ):
                try:
                    return await self._fill_holding_lock(code)
                finally:
                    await self._release_lock(keys=[self._lock_key(code)], args=[token])
            await asyncio.sleep(self._settings.shortener_fill_poll_ms / 1000)
            cached = await self._cached(code)
            if not isinstance(cached, _Miss):
                return cached
        logger.warning("cache_fill_wait_expired code=%s", code)
        return await self._links.find_target(code)

    async def _fill_holding_lock(self, code: str) -> Target | None:
        cached = await self._cached(code)  # filled while we waited for the lock
        if not isinstance(cached, _Miss):
            return cached
        target = await self._links.find_target(code)
        # NX: a delete's tombstone written while we read the database must win over our older read.
        await self._store(code, target, only_if_absent=True)
        return target

    async def _cached(self, code: str) -> Target | _Miss | None:
        raw = await self._pipeline.execute_command("GET", self._entry_key(code))
        return MISS if raw is None else decode_entry(raw)

    async def _store(self, code: str, target: Target | None, *, only_if_absent: bool) -> None:
        ttl_s = self._ttl_s(target)
        await self._redis.set(self._entry_key(code), encode_entry(target), ex=ttl_s, nx=only_if_absent)

    def _ttl_s(self, target: Target | None) -> int:
        if target is None:
            return self._settings.shortener_negative_ttl_s
        ttl_s = self._settings.shortener_cache_ttl_s + random.randint(
            0, self._settings.shortener_cache_ttl_jitter_s
        )
        if target.expires_at is not None and target.gone_reason(now=utc_now()) is None:
            # Expiry invalidates by itself: the entry disappears when the link does.
            ttl_s = min(ttl_s, max(1, math.ceil((target.expires_at - utc_now()).total_seconds())))
        return ttl_s

    def _entry_key(self, code: str) -> str:
        return f"{self._prefix}link:{code}"

    def _lock_key(self, code: str) -> str:
        return f"{self._prefix}fill-lock:{code}"


def epoch_ms(moment: datetime) -> int:
    """Whole milliseconds since the epoch, exact (no float): how an entry stores its expiry."""
    return (moment - EPOCH) // timedelta(milliseconds=1)


def encode_entry(target: Target | None) -> str:
    if target is None:
        return _MISSING
    expires = epoch_ms(target.expires_at) if target.expires_at else None
    return json.dumps({"u": target.long_url, "e": expires, "d": target.deleted}, separators=(",", ":"))


def decode_entry(raw: bytes | str) -> Target | None:
    text = raw.decode() if isinstance(raw, bytes) else raw
    if text == _MISSING:
        return None
    data = json.loads(text)
    expires = EPOCH + timedelta(milliseconds=data["e"]) if data["e"] is not None else None
    return Target(long_url=data["u"], expires_at=expires, deleted=data["d"])
