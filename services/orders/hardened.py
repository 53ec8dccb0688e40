"""Hardened checkout: idempotency keys, one transaction with an atomic conditional decrement and a
transactional outbox, admission control.

Fixes, one per naive flaw:

* **Oversell** → ``UPDATE inventory SET available = available - q WHERE sku = s AND available >= q``:
  PostgreSQL checks and decrements in one statement, so stock can never go below zero and the row
  lock is held for microseconds instead of a service call.
* **Duplicates and double charges** → a required ``Idempotency-Key`` scoped to the customer
  (:mod:`services.orders.idempotency`): a retry replays the stored answer; the payments consumer
  charges the gateway with the order id as its idempotency key.
* **Lost events** → the ``OrderPlaced`` row goes into the ``outbox`` table in the order's own
  transaction; the relay (:mod:`services.orders.relay`) publishes it after the commit, at least
  once; consumers dedupe with an inbox (:mod:`services.orders.consumers`).
* **Pile-ups** → at most ``orders_max_in_flight`` orders per process; beyond it ``429`` with
  ``Retry-After``, so admitted requests keep a bounded latency. No call to another service happens
  inside a request. Once PostgreSQL has found the sale sold out, a Redis sold-out gate
  (:mod:`services.orders.soldout`) answers later buyers ``409`` without a PostgreSQL transaction;
  a retry of an order that succeeded still gets its ``201``.

Proved by ``tests/integration/test_orders_flash_sale.py`` (exactly the stock sold, one charge per
order), ``test_orders_idempotency.py``, ``test_orders_relay.py`` and ``test_orders_sold_out_gate.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg

from services.orders import idempotency, store
from services.orders.errors import (
    IdempotencyKeyInvalid,
    IdempotencyKeyMissing,
    OutOfStock,
    Overloaded,
    problem_reply,
)
from services.orders.events import OrderPlaced, topic_end_offsets
from services.orders.idempotency import IdempotencyPolicy
from services.orders.ports import FlashSale, OrderRecord, OrderReply, PlaceOrder, StockLevel
from services.orders.settings import OrdersSettings
from services.orders.soldout import GateVerdict, SoldOutGate

SEED_INVENTORY = """
INSERT INTO inventory (sku, available) VALUES ($1, $2)
ON CONFLICT (sku) DO UPDATE SET available = EXCLUDED.available
"""
# The whole order as one statement: data-modifying CTEs all run, in one implicit transaction.
# The conditional decrement decides; the order and outbox rows exist only if it took stock; the
# idempotency key stores whichever answer it was (201 or 409) atomically with them.
CHECKOUT = """
WITH taken AS (
    UPDATE inventory SET available = available - $3 WHERE sku = $2 AND available >= $3 RETURNING sku
), placed AS (
    INSERT INTO orders (order_id, sku, customer_id, quantity, amount_cents, status)
    SELECT $1, $2, $4, $3, $5, 'pending_payment' FROM taken
    RETURNING order_id
), announced AS (
    INSERT INTO outbox (aggregate_id, event_type, payload)
    SELECT order_id::text, 'OrderPlaced', $6::jsonb FROM placed
), answered AS (
    UPDATE idempotency_keys
    SET response_status = CASE WHEN EXISTS (SELECT FROM placed) THEN 201 ELSE 409 END,
        response_body = CASE WHEN EXISTS (SELECT FROM placed) THEN $7::jsonb ELSE $8::jsonb END,
        locked_until = NULL
    WHERE customer_id = $4 AND key = $9
)
SELECT EXISTS (SELECT FROM placed)
"""
STOCK = """
SELECT s.sku, s.stock, i.available FROM flash_sales s JOIN inventory i USING (sku) WHERE s.sku = $1
"""


@dataclass
class AdmissionGate:
    """A bound on orders in flight in this process. One event loop, so a plain counter is exact."""

    limit: int
    in_flight: int = field(default=0)

    @contextmanager
    def admit(self) -> Iterator[None]:
        if self.in_flight >= self.limit:
            raise Overloaded()
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1


@dataclass(frozen=True)
class CheckedOut:
    """The checkout statement's outcome: whether it took stock, and the answer it stored."""

    placed: bool
    answer: OrderReply


@dataclass(frozen=True)
class HardenedOrderFlow:
    pool: asyncpg.Pool
    settings: OrdersSettings
    admission: AdmissionGate
    sold_out: SoldOutGate

    @property
    def policy(self) -> IdempotencyPolicy:
        return IdempotencyPolicy(
            ttl_s=self.settings.orders_idempotency_ttl_s, lock_s=self.settings.orders_idempotency_lock_s
        )

    async def open_sale(self, sale: FlashSale) -> None:
        topics = [self.settings.orders_topic, self.settings.orders_dlq_topic]
        event_offsets = await topic_end_offsets(self.settings, topics)
        async with self.pool.acquire() as conn, conn.transaction():
            await store.reset_sale(conn, sale, event_offsets=event_offsets)
            await conn.execute(idempotency.DELETE_FOR_SKU, sale.sku)
            await conn.execute(SEED_INVENTORY, sale.sku, sale.stock)
            # Before the commit makes the new stock visible: no buyer of it may meet the last sale's mark.
            await self.sold_out.reopen(conn, sale.sku)

    async def place_order(self, command: PlaceOrder, *, idempotency_key: str | None) -> OrderReply:
        key = self._checked_key(idempotency_key)
        # Before admission: a buyer the gate turns away costs one Redis round trip, not an order slot.
        verdict = await self.sold_out.check(command, key=key)
        if verdict is GateVerdict.SOLD_OUT:
            return problem_reply(OutOfStock(command.sku))
        with self.admission.admit():
            replay = await idempotency.claim(self.pool, key=key, command=command, policy=self.policy)
            if replay is not None:
                return replay
            outcome = await self._checkout_or_release(command, key=key)
            # Not after the gate's Redis failed for this order: waiting on it again only adds latency.
            if not outcome.placed and verdict is GateVerdict.OPEN:
                await self.sold_out.remember_if_sold_out(command.sku)
            return outcome.answer

    async def find_order(self, order_id: UUID) -> OrderRecord | None:
        return await store.find_order(self.pool, order_id)

    async def stock_of(self, sku: str) -> StockLevel | None:
        row = await self.pool.fetchrow(STOCK, sku)
        return StockLevel(**dict(row)) if row else None

    async def _checkout_or_release(self, command: PlaceOrder, *, key: str) -> CheckedOut:
        try:
            return await self._checkout(command, key=key)
        except BaseException:
            await asyncio.shield(idempotency.release(self.pool, key=key, command=command))
            raise

    async def _checkout(self, command: PlaceOrder, *, key: str) -> CheckedOut:
        """Decrement, order, outbox row and stored reply in one statement, hence one transaction.
        No other service is called. One statement rather than a ``BEGIN … COMMIT`` block because the
        product row stays locked from the decrement to the commit: here that is one server-side
        execution, not several client round trips (the hot row is the flash sale's bottleneck)."""
        sale = await store.sale_for_order(self.pool, command.sku)
        order = OrderRecord.placed(command, sale)
        created = OrderReply(201, {"order_id": str(order.order_id), "status": order.status})
        sold_out = problem_reply(OutOfStock(command.sku))
        placed = await self.pool.fetchval(
            CHECKOUT,
            order.order_id,
            order.sku,
            order.quantity,
            order.customer_id,
            order.amount_cents,
            OrderPlaced.of(order, currency=self.settings.orders_currency).to_json(),
            json.dumps(created.body),
            json.dumps(sold_out.body),
            key,
        )
        return CheckedOut(placed=placed, answer=created if placed else sold_out)

    def _checked_key(self, key: str | None) -> str:
        if key is None:
            raise IdempotencyKeyMissing()
        limit = self.settings.orders_idempotency_key_max_length
        if not 0 < len(key) <= limit or not key.isprintable():
            raise IdempotencyKeyInvalid(limit)
        return key
