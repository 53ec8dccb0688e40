"""Pre-generated key pool: codes are made ahead of time, leased in batches, handed out from memory.

This module is the pool's table and its generator; the adapter that leases and hands out codes is
:class:`services.shortener.hardened.KeyPool`. The generator (:func:`refill_pool`) keeps the
``key_pool`` table above a low-water mark; any instance may run it, an advisory lock makes it one at
a time. An instance leases a batch with one statement
(``FOR UPDATE SKIP LOCKED``, so concurrent leases never wait on or share a row) and then creates links
with no collision check. A crashed instance wastes at most its unused batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from services.shortener.codes import random_codes
from services.shortener.metrics import KEYPOOL_GENERATED

logger = logging.getLogger(__name__)

LEASE_BATCH = """
UPDATE key_pool SET leased_at = now()
WHERE code IN (SELECT code FROM key_pool WHERE leased_at IS NULL LIMIT $1 FOR UPDATE SKIP LOCKED)
RETURNING code
"""
COUNT_FREE = "SELECT count(*) FROM key_pool WHERE leased_at IS NULL"
# Codes already used by a link (custom aliases) are never added; known codes are skipped by the key.
ADD_CODES = """
INSERT INTO key_pool (code)
SELECT c FROM unnest($1::text[]) AS c WHERE NOT EXISTS (SELECT 1 FROM links WHERE links.code = c)
ON CONFLICT (code) DO NOTHING
"""
RETIRE_CODE = """
INSERT INTO key_pool (code, leased_at) VALUES ($1, now())
ON CONFLICT (code) DO UPDATE SET leased_at = coalesce(key_pool.leased_at, now())
"""
GENERATOR_LOCK = "SELECT pg_try_advisory_xact_lock(hashtext('shortener-keypool-generator'))"
_GENERATE_CHUNK = 10_000


async def refill_pool(pool: asyncpg.Pool, *, code_length: int, low_water: int, target: int) -> int:
    """Top the pool up to ``target`` free codes if it is below ``low_water``; returns codes added.

    Another instance already refilling means this call does nothing: one generator at a time.
    """
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval(GENERATOR_LOCK):
            return 0
        free = await conn.fetchval(COUNT_FREE)
        if free >= low_water:
            return 0
        added = await _add_codes(conn, wanted=target - free, code_length=code_length)
    KEYPOOL_GENERATED.inc(added)
    logger.info("keypool_refilled free_before=%d added=%d", free, added)
    return added


async def _add_codes(conn: asyncpg.Connection, *, wanted: int, code_length: int) -> int:
    """Insert fresh random codes until ``wanted`` are in; collisions just mean another round."""
    added = 0
    for _ in range(100):  # bounded: a nearly full key space must not spin forever
        if added >= wanted:
            break
        chunk = random_codes(count=min(wanted - added, _GENERATE_CHUNK), length=code_length)
        status = await conn.execute(ADD_CODES, chunk)
        added += int(status.split()[-1])
    return added


async def keep_pool_filled(refill: Callable[[], Awaitable[int]], *, interval_s: float) -> None:
    """The generator loop each hardened instance runs; only one refills at a time."""
    while True:
        try:
            await refill()
        except (OSError, asyncpg.PostgresError) as exc:  # the database comes back; keep looping
            logger.warning("keypool_refill_failed error=%r", exc)
        await asyncio.sleep(interval_s)
