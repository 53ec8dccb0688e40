"""Hardened adapters: the fixes for both of the naive variant's flaws, and nothing else.

Fix 1, creates: a pre-generated key pool (:class:`KeyPool`, its table and generator in
:mod:`services.shortener.keypool`). Codes are generated
ahead of time into a table kept above a low-water mark; each instance leases a batch with one
``FOR UPDATE SKIP LOCKED`` statement and hands codes out from memory, so a create is one ``INSERT``
and never a collision check. Shown by ``tests/integration/test_shortener_keys.py`` (10,000 creates
from two processes, 10,000 distinct codes).

Fix 2, redirects: cache-aside on Redis (:class:`CachedRedirects`) with one database read per code at a
time (no stampede), negative caching and tombstones on delete; a cache hit is one ``GET``, and clicks
are added up in the replica's memory and written to PostgreSQL once a second (:class:`ClickTally`,
whose docstring states what a crash of each part costs). Shown by
``tests/integration/test_shortener_stampede.py`` (200 concurrent misses, one database read),
``test_shortener_replicas.py`` (410 on every replica after a delete) and
``test_shortener_clicks.py`` (no click lost to a Redis crash or a clean stop; a killed replica loses
at most one flush interval of its clicks).

Optional, off by default: a replica-local hot-key cache with delete broadcasts
(:mod:`services.shortener.hotcache`, ``LAB_SHORTENER_HOT_CACHE_TTL_MS``), which trades a stated
staleness bound for a redirect path without network round trips.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
import uuid
from collections import Counter, deque
from datetime import datetime

import asyncpg
from redis.exceptions import RedisError

from services.core.cluster import RedisClient
from services.core.resources import CommandPipeline, read_resource
from services.shortener.cache import MISS, Miss, decode_entry, encode_entry
from services.shortener.clicks import ClickBatch, write_batch
from services.shortener.errors import CodeSpaceExhausted
from services.shortener.hotcache import Absent, HotKeyCache, invalidation_channel
from services.shortener.keypool import LEASE_BATCH, RETIRE_CODE, refill_pool
from services.shortener.links import Target, utc_now
from services.shortener.metrics import CACHE_RESULTS, KEYPOOL_LEASED
from services.shortener.ports import ClickCounter
from services.shortener.repository import PostgresLinks
from services.shortener.settings import ShortenerSettings

# What a cache outage looks like to the client. redis-py's asyncio cluster client, sending on a
# connection a node's restart tore down under it, fails with AttributeError ('NoneType' object has
# no attribute 'writelines') instead of a ConnectionError: the same outage, and the redirect falls
# back to PostgreSQL for it as for any other (seen in test_redis_cluster's killed-node test).
CACHE_OUTAGE: tuple[type[Exception], ...] = (RedisError, AttributeError)
logger = logging.getLogger(__name__)

_LEASE_ATTEMPTS = 100
_LEASE_RETRY_S = 0.05


class KeyPool:
    """A :class:`~services.shortener.ports.CodeSource` handing out leased codes from memory."""

    def __init__(
        self, pool: asyncpg.Pool, *, code_length: int, batch_size: int, low_water: int, target: int
    ) -> None:
        self._pool = pool
        self._code_length = code_length
        self._batch_size = batch_size
        self._low_water = low_water
        self._target = target
        self._leased: deque[str] = deque()
        self._lease_lock = asyncio.Lock()

    async def next_code(self) -> str:
        if not self._leased:
            async with self._lease_lock:  # one lease per instance at a time, not one per request
                if not self._leased:
                    await self._lease_batch()
        return self._leased.popleft()

    async def retire(self, code: str) -> None:
        await self._pool.execute(RETIRE_CODE, code)

    async def refill(self) -> int:
        return await refill_pool(
            self._pool, code_length=self._code_length, low_water=self._low_water, target=self._target
        )

    async def _lease_batch(self) -> None:
        for _ in range(_LEASE_ATTEMPTS):
            codes = await self._pool.fetch(LEASE_BATCH, self._batch_size)
            if codes:
                break
            # The generator fell behind: generate now rather than fail the create, or give the
            # instance that holds the generator lock a moment to commit its codes.
            if not await self.refill():
                await asyncio.sleep(_LEASE_RETRY_S)
        else:
            raise CodeSpaceExhausted("the key pool is empty and could not be refilled")
        self._leased.extend(row["code"] for row in codes)
        KEYPOOL_LEASED.inc(len(codes))
        logger.info("keypool_leased codes=%d", len(codes))


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
        redis: RedisClient,
        links: PostgresLinks,
        *,
        prefix: str,
        settings: ShortenerSettings,
        pipeline: CommandPipeline,
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
        except CACHE_OUTAGE as exc:  # bounded by the entry's TTL; logged so it is seen
            logger.warning("cache_invalidation_failed code=%s error=%r", code, exc)

    async def _follow_shared(self, code: str, *, now: datetime) -> Target | None:
        try:
            cached = await self._cached(code)
            if isinstance(cached, Miss):
                _MISSES.inc()
                target = await self._fill_once(code)
            else:
                _HITS.inc()
                target = cached
        except CACHE_OUTAGE as exc:  # a cache outage slows redirects down; it must not break them
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
            if not isinstance(cached, Miss):
                return cached
        logger.warning("cache_fill_wait_expired code=%s", code)
        return await self._links.find_target(code)

    async def _fill_holding_lock(self, code: str) -> Target | None:
        cached = await self._cached(code)  # filled while we waited for the lock
        if not isinstance(cached, Miss):
            return cached
        target = await self._links.find_target(code)
        # NX: a delete's tombstone written while we read the database must win over our older read.
        await self._store(code, target, only_if_absent=True)
        return target

    async def _cached(self, code: str) -> Target | Miss | None:
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


class ClickTally:
    """A :class:`~services.shortener.ports.ClickCounter` that adds clicks up in memory; the flush loop
    (:func:`services.shortener.clicks.keep_flushing`) writes them to PostgreSQL.

    A redirect answers ``302`` before its click is stored, and this is what that costs: a Redis crash,
    nothing (clicks never pass through Redis); PostgreSQL refusing a flush, nothing while the replica
    lives (the batch is written again, with the same id, once); a graceful stop, nothing (the lifespan
    flushes); a killed replica, what it counted since its last flush: at most one flush interval of
    its own clicks.
    """

    def __init__(self, links: PostgresLinks) -> None:
        self._links = links
        self._counts: Counter[str] = Counter()
        # Taken from the tally, not yet known to be stored. Only the first may have been tried (and
        # may be stored already, its commit unconfirmed), so new counts never join it; they join the
        # second, which keeps the list at two batches however long PostgreSQL is away.
        self._unconfirmed: list[ClickBatch] = []

    async def record(self, code: str) -> None:
        self._counts[code] += 1

    async def unflushed(self, code: str) -> int:
        return self._counts[code] + sum(batch.counts[code] for batch in self._unconfirmed)

    @property
    def pending(self) -> int:
        """Clicks this replica has answered and not yet stored: what a crash now would lose."""
        return self._counts.total() + sum(batch.counts.total() for batch in self._unconfirmed)

    async def flush(self) -> int:
        """Write every pending click; returns how many. A failure leaves them pending and raises."""
        self._take_counts()
        written = 0
        while self._unconfirmed:
            batch = self._unconfirmed[0]
            await write_batch(self._links, batch)
            self._unconfirmed.pop(0)
            written += batch.counts.total()
        return written

    def _take_counts(self) -> None:
        if not self._counts:
            return
        counts, self._counts = self._counts, Counter()
        if len(self._unconfirmed) == 2:
            self._unconfirmed[1].counts.update(counts)
        else:
            self._unconfirmed.append(ClickBatch(counts))
