"""Clicks counted off the hot path: one Redis ``HINCRBY`` per redirect, written to PostgreSQL in batches.

Never lost, never counted twice: a flush atomically renames the pending hash to a batch of its own,
adds the batch to ``links.clicks`` in one transaction that also records the batch id, and only then
deletes it from Redis. A batch left behind by a crashed instance is taken over once its claim expires;
a batch applied twice is recognised by its id and added once.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Mapping

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from services.shortener.metrics import CLICKS_COUNTED_IN_DATABASE, CLICKS_FLUSHED
from services.shortener.repository import PostgresLinks

logger = logging.getLogger(__name__)

RECORD_BATCH = "INSERT INTO click_batches (batch_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING batch_id"
# Flushes of several instances touch the same hot rows; one at a time rules out lock-order deadlocks.
FLUSH_LOCK = "SELECT pg_advisory_xact_lock(hashtext('shortener-click-flush'))"


class RedisClickBuffer:
    """A :class:`~services.shortener.ports.ClickCounter` buffering counts in a Redis hash."""

    def __init__(
        self, redis: aioredis.Redis, links: PostgresLinks, *, prefix: str, claim_ttl_s: float
    ) -> None:
        self._redis = redis
        self._links = links
        self._pool = links.pool
        self.pending_key = f"{prefix}clicks:pending"
        self._batch_prefix = f"{prefix}clicks:batch:"
        self._claim_prefix = f"{prefix}clicks:claim:"
        self._claim_ttl_ms = int(claim_ttl_s * 1000)

    async def record(self, code: str) -> None:
        try:
            await self._redis.hincrby(self.pending_key, code, 1)
        except RedisError as exc:
            # Degraded, not broken: while Redis is out, count the way the naive variant does.
            CLICKS_COUNTED_IN_DATABASE.inc()
            logger.warning("click_buffer_unavailable code=%s error=%r", code, exc)
            await self._links.add_click(code)

    async def record_many(self, counts: Mapping[str, int]) -> None:
        """Several codes' clicks in one round trip (what an in-process tally pushes)."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for code, clicks in counts.items():
                    pipe.hincrby(self.pending_key, code, clicks)
                await pipe.execute()
        except RedisError as exc:
            CLICKS_COUNTED_IN_DATABASE.inc(sum(counts.values()))
            logger.warning("click_buffer_unavailable codes=%d error=%r", len(counts), exc)
            await self._links.add_clicks(counts)

    async def unflushed(self, code: str) -> int:
        try:
            return int(await self._redis.hget(self.pending_key, code) or 0)
        except RedisError as exc:  # the pending count is unknown, the stored count is still right
            logger.warning("click_buffer_unavailable code=%s error=%r", code, exc)
            return 0

    async def flush(self) -> int:
        """Move what is pending into PostgreSQL; returns the clicks written."""
        batch_id = uuid.uuid4().hex
        await self._claim(batch_id)
        try:
            await self._redis.rename(self.pending_key, self._batch_prefix + batch_id)
        except ResponseError:  # "no such key": nothing was clicked since the last flush
            await self._redis.delete(self._claim_prefix + batch_id)
            return 0
        return await self._apply(batch_id)

    async def recover_orphans(self) -> int:
        """Apply batches whose flusher died between renaming and applying them."""
        written = 0
        async for key in self._redis.scan_iter(match=self._batch_prefix + "*", count=100):
            batch_id = _text(key).removeprefix(self._batch_prefix)
            if await self._claim(batch_id):
                logger.info("click_batch_recovered batch=%s", batch_id)
                written += await self._apply(batch_id)
        return written

    async def _claim(self, batch_id: str) -> bool:
        claimed = await self._redis.set(self._claim_prefix + batch_id, "1", nx=True, px=self._claim_ttl_ms)
        return bool(claimed)

    async def _apply(self, batch_id: str) -> int:
        counts = await self._redis.hgetall(self._batch_prefix + batch_id)
        clicks = {_text(code): int(n) for code, n in counts.items()}
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(FLUSH_LOCK)
            if await conn.fetchval(RECORD_BATCH, batch_id) is not None:
                await self._links.add_clicks(clicks, conn=conn)
        await self._redis.delete(self._batch_prefix + batch_id, self._claim_prefix + batch_id)
        CLICKS_FLUSHED.inc(sum(clicks.values()))
        return sum(clicks.values())


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class InProcessTally:
    """A :class:`~services.shortener.ports.ClickCounter` adding clicks up in memory and pushing them to
    the Redis buffer every ``LAB_SHORTENER_CLICK_TALLY_MS``: no network on the redirect path at all,
    at the price of losing at most one interval of clicks if the process is killed."""

    def __init__(self, buffer: RedisClickBuffer) -> None:
        self._buffer = buffer
        self._counts: Counter[str] = Counter()

    async def record(self, code: str) -> None:
        self._counts[code] += 1

    async def unflushed(self, code: str) -> int:
        return self._counts[code] + await self._buffer.unflushed(code)

    async def push(self) -> None:
        counts, self._counts = self._counts, Counter()
        if counts:
            await self._buffer.record_many(counts)


async def keep_pushing(tally: InProcessTally, *, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        await tally.push()  # record_many never raises: a Redis outage falls back to PostgreSQL


async def keep_flushing(clicks: RedisClickBuffer, *, interval_s: float, recovery_interval_s: float) -> None:
    """Each hardened instance's flush loop; an outage delays counts, it does not drop them."""
    next_recovery = time.monotonic()
    while True:
        await asyncio.sleep(interval_s)
        try:
            await clicks.flush()
            if time.monotonic() >= next_recovery:
                next_recovery = time.monotonic() + recovery_interval_s
                await clicks.recover_orphans()
        except (OSError, RedisError, asyncpg.PostgresError) as exc:
            logger.warning("click_flush_failed error=%r", exc)
