"""Clicks counted off the hot path: added up in each replica's memory
(:class:`services.shortener.hardened.ClickTally`) and written to PostgreSQL in one transaction every
``LAB_SHORTENER_CLICK_FLUSH_INTERVAL_S``; this module is the batches, their SQL and the flush loop.

A redirect answers ``302`` before its click is stored; that is the price of a redirect without a
database write, and this module states exactly what it costs:

- **Redis crashes:** nothing. Clicks never pass through Redis, so a killed Redis (which keeps the
  cache in memory only) loses no click.
- **PostgreSQL fails:** nothing while the replica lives. A batch that could not be written stays in
  memory and is written again with the same id; the id is recorded in the same transaction that adds
  the batch, so a batch whose commit was lost on the wire is added once, never twice.
- **The replica stops gracefully:** nothing. Its lifespan writes what is left before it exits.
- **The replica is killed:** what it counted since its last flush, at most one flush interval of its
  own clicks (and, if PostgreSQL was also down, every batch still waiting for it).

The counts a replica reports (``GET /api/v1/urls/{code}``) are the stored ones plus its own pending
ones; another replica's pending clicks show up within one interval.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

import asyncpg

from services.shortener.metrics import CLICKS_FLUSHED
from services.shortener.repository import PostgresLinks

logger = logging.getLogger(__name__)

RECORD_BATCH = "INSERT INTO click_batches (batch_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING batch_id"
# Flushes of several replicas touch the same hot rows; the planner may update them in any order, and
# one flush at a time rules out lock-order deadlocks between them.
FLUSH_LOCK = "SELECT pg_advisory_xact_lock(hashtext('shortener-click-flush'))"
# What a failed flush can raise: the server gone or refusing, the connection lost, the pool's wait over.
FLUSH_FAILURES = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


@dataclass
class ClickBatch:
    """Clicks taken out of the tally together, written together or not at all."""

    counts: Counter[str]
    batch_id: str = field(default_factory=lambda: uuid.uuid4().hex)


class Flushable(Protocol):
    """What the flush loop drives: a tally that writes what it holds, and says how much that is."""

    @property
    def pending(self) -> int: ...

    async def flush(self) -> int: ...


async def write_batch(links: PostgresLinks, batch: ClickBatch) -> None:
    """One transaction: the batch's id recorded and its clicks added, or neither."""
    async with links.pool.acquire() as conn, conn.transaction():
        await conn.execute(FLUSH_LOCK)
        if await conn.fetchval(RECORD_BATCH, batch.batch_id) is not None:
            await links.add_clicks(batch.counts, conn=conn)
    CLICKS_FLUSHED.inc(batch.counts.total())


async def keep_flushing(tally: Flushable, *, interval_s: float) -> None:
    """Each hardened replica's flush loop; an outage delays counts, it does not drop them."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await tally.flush()
        except FLUSH_FAILURES as exc:
            logger.warning("click_flush_failed pending=%d error=%r", tally.pending, exc)


async def flush_on_shutdown(tally: Flushable) -> None:
    """The last flush of a replica that stops; if PostgreSQL is down now, its pending clicks are lost,
    and the log says how many."""
    try:
        await tally.flush()
    except FLUSH_FAILURES as exc:
        logger.error("click_flush_on_shutdown_failed lost=%d error=%r", tally.pending, exc)
