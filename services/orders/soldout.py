"""The sold-out gate of the hardened checkout: once PostgreSQL has found a sale sold out, Redis
remembers it, and later buyers are answered ``409 out-of-stock`` without a PostgreSQL transaction.

PostgreSQL stays the source of truth; the gate only repeats what it said, where that cannot be wrong
(ADR 0304):

* The mark is written from one PostgreSQL snapshot in which the stock is zero. Within a sale stock
  only goes down, so "sold out" stays true until the sale is opened again.
* The mark carries the keys whose orders succeeded, read from that same snapshot: a retry with one
  of them passes the gate and gets its stored ``201`` from the idempotency table.
* The gate names the sale it belongs to (``flash_sales.opened_at``). Opening a sale replaces it with
  an empty gate for the new sale before the new stock is visible, and a mark is written only while
  Redis still names the sale it was read for, so a slow request of an earlier sale cannot close a new
  one.
* Every wait on Redis is bounded by ``orders_sold_out_gate_timeout_ms``. A failed or slow Redis skips
  the gate (counted in ``orders_sold_out_gate_errors_total``, logged): PostgreSQL answers as if there
  were no gate. Only opening a sale refuses (``503``) when the gate cannot be reset, because a stale
  mark would turn away the buyers of the new stock.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Protocol

import asyncpg
import redis.asyncio as aioredis
from prometheus_client import Counter

from services.core.cluster import RedisClient
from services.core.resources import (
    CommandPipeline,
    command_pipeline,
    connect_early,
    open_bounded_redis,
    read_resource,
)
from services.orders.errors import SoldOutGateUnavailable
from services.orders.ports import PlaceOrder
from services.orders.settings import OrdersSettings

logger = logging.getLogger(__name__)

GATE_ANSWERS = Counter(
    "orders_sold_out_gate", "Orders answered 409 out-of-stock by the sold-out gate, without PostgreSQL"
)
GATE_ERRORS = Counter(
    "orders_sold_out_gate_errors",
    "Sold-out gate operations skipped or refused because Redis failed or was too slow",
    ["operation"],
)

KEY_PREFIX = "orders:hardened:sold-out:"
SALE_FIELD = "sale"
SOLD_OUT_FIELD = "sold-out"
REDIS_FAILURES = (TimeoutError, aioredis.RedisError, OSError)

# One statement, so one snapshot: the sale it describes, whether its stock is gone, and the keys whose
# orders succeeded. The winners are found through the sale's orders (indexed by sku) rather than by
# scanning every idempotency key for the sku.
SOLD_OUT_FACTS = """
SELECT s.opened_at, i.available,
       array(SELECT jsonb_build_array(k.customer_id, k.key)
             FROM orders o
             JOIN idempotency_keys k
               ON k.customer_id = o.customer_id AND k.sku = o.sku AND k.response_status = 201
             WHERE o.sku = s.sku) AS winners
FROM flash_sales s JOIN inventory i USING (sku)
WHERE s.sku = $1
"""
OPENED_AT = "SELECT opened_at FROM flash_sales WHERE sku = $1"


class GateVerdict(Enum):
    SOLD_OUT = "sold-out"  # answer 409 without PostgreSQL
    OPEN = "open"  # ask PostgreSQL
    UNAVAILABLE = "unavailable"  # Redis failed: ask PostgreSQL, and do not try Redis again for this order


@dataclass(frozen=True)
class SoldOut:
    """A sale PostgreSQL found sold out, and the (customer, key) pairs whose orders succeeded."""

    sku: str
    sale: str
    winners: tuple[tuple[str, str], ...]


class SoldOutGate(Protocol):
    """What the hardened checkout asks before an order and tells after a refusal."""

    async def check(self, command: PlaceOrder, *, key: str) -> GateVerdict:
        """Whether this order may be answered sold out without PostgreSQL; never raises."""

    async def reopen(self, conn: asyncpg.Connection, sku: str) -> None:
        """Reset the gate for the sale being opened in ``conn``'s transaction, before it commits;
        :class:`SoldOutGateUnavailable` when that cannot be done."""

    async def remember_if_sold_out(self, sku: str) -> None:
        """After PostgreSQL refused an order: mark the gate if the sale is now sold out; never raises."""


class NoSoldOutGate:
    """``LAB_ORDERS_SOLD_OUT_GATE=false``: every order asks PostgreSQL."""

    async def check(self, command: PlaceOrder, *, key: str) -> GateVerdict:
        return GateVerdict.OPEN

    async def reopen(self, conn: asyncpg.Connection, sku: str) -> None:
        return None

    async def remember_if_sold_out(self, sku: str) -> None:
        return None


class RedisSoldOutGate:
    """One Redis hash per SKU: ``sale`` (which sale it belongs to), ``sold-out`` once marked, and one
    field per winning (customer, key)."""

    def __init__(
        self, redis: RedisClient, pool: asyncpg.Pool, *, checks: CommandPipeline, ttl_s: float
    ) -> None:
        self._redis = redis
        # A flash sale is a spike: thousands of checks at once. Auto-pipelined, the checks of one
        # event-loop turn are one write on one connection, instead of one connection each from a
        # pool that would make the rest wait past the gate's budget.
        self._checks = checks
        self._pool = pool
        self._ttl_ms = int(ttl_s * 1000)
        self._mark = redis.register_script(read_resource("services.orders", "sold_out.lua"))

    async def check(self, command: PlaceOrder, *, key: str) -> GateVerdict:
        fields = (SOLD_OUT_FIELD, winner_field(command.customer_id, key))
        try:
            sold_out, winner = await self._checks.execute_command("HMGET", gate_key(command.sku), *fields)
        except REDIS_FAILURES as exc:
            _skipped("check", command.sku, exc)
            return GateVerdict.UNAVAILABLE
        if sold_out is None or winner is not None:
            return GateVerdict.OPEN
        GATE_ANSWERS.inc()
        return GateVerdict.SOLD_OUT

    async def reopen(self, conn: asyncpg.Connection, sku: str) -> None:
        sale = sale_token(await conn.fetchval(OPENED_AT, sku))
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(gate_key(sku))
                pipe.hset(gate_key(sku), SALE_FIELD, sale)
                pipe.pexpire(gate_key(sku), self._ttl_ms)
                await pipe.execute()
        except REDIS_FAILURES as exc:
            GATE_ERRORS.labels("reopen").inc()
            logger.warning("sold_out_gate_reset_failed sku=%s error=%r", sku, exc)
            raise SoldOutGateUnavailable(sku) from exc

    async def remember_if_sold_out(self, sku: str) -> None:
        try:
            sold_out = await find_sold_out(self._pool, sku)
            if sold_out is not None:
                await self._mark_sold_out(sold_out)
        except Exception as exc:  # the refusal is already committed; the gate must not change it
            _skipped("mark", sku, exc)

    async def _mark_sold_out(self, sold_out: SoldOut) -> None:
        winners = [winner_field(customer, key) for customer, key in sold_out.winners]
        marked = await self._mark(keys=[gate_key(sold_out.sku)], args=[sold_out.sale, self._ttl_ms, *winners])
        if marked:
            logger.info("sold_out_gate_marked sku=%s winners=%d", sold_out.sku, len(winners))


async def find_sold_out(pool: asyncpg.Pool, sku: str) -> SoldOut | None:
    """The sale of ``sku`` if PostgreSQL has no stock left for it, with its winners; else ``None``."""
    row = await pool.fetchrow(SOLD_OUT_FACTS, sku)
    if row is None or row["available"] > 0:
        return None
    winners = tuple(tuple(json.loads(pair)) for pair in row["winners"])
    return SoldOut(sku=sku, sale=sale_token(row["opened_at"]), winners=winners)


def gate_key(sku: str) -> str:
    return f"{KEY_PREFIX}{sku}"


def winner_field(customer_id: str, key: str) -> str:
    """A hash field no customer id or key can make ambiguous, and never equal to ``sale``."""
    return json.dumps([customer_id, key])


def sale_token(opened_at: datetime) -> str:
    return opened_at.isoformat()


def _skipped(operation: str, sku: str, exc: Exception) -> None:
    GATE_ERRORS.labels(operation).inc()
    logger.warning("sold_out_gate_skipped operation=%s sku=%s error=%r", operation, sku, exc)


@asynccontextmanager
async def open_sold_out_gate(settings: OrdersSettings, pool: asyncpg.Pool) -> AsyncIterator[SoldOutGate]:
    """The gate ``LAB_ORDERS_SOLD_OUT_GATE`` asks for, with its own Redis clients. No health check
    for that Redis: the gate steps aside when Redis fails, so an outage must not make the orders
    service look down."""
    if not settings.orders_sold_out_gate:
        yield NoSoldOutGate()
        return
    async with open_gate_redis(settings) as redis, open_gate_checks(settings) as checks:
        await connect_early(checks)
        yield RedisSoldOutGate(redis, pool, checks=checks, ttl_s=settings.orders_sold_out_gate_ttl_s)


def open_gate_redis(settings: OrdersSettings) -> AbstractAsyncContextManager[RedisClient]:
    """A client whose every wait is bounded by the gate's budget."""
    return open_bounded_redis(settings, budget_s=_gate_budget_s(settings))


def open_gate_checks(settings: OrdersSettings) -> CommandPipeline:
    """The checks' auto-pipeline, its connect and every batch bounded by the gate's budget."""
    return command_pipeline(settings, timeout_s=_gate_budget_s(settings))


def _gate_budget_s(settings: OrdersSettings) -> float:
    return settings.orders_sold_out_gate_timeout_ms / 1000
