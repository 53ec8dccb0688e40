"""Naive checkout: synchronous everything, read-check-write stock, no idempotency, dual write.

Flaws, on purpose (archetype: "synchronous everything"):

* Stock lives in the inventory service, called synchronously; it reads ``available``, waits (the
  injected ``LAB_INVENTORY_DELAY_MS``, a slow service under load) and writes back ``read − q``: two
  buyers who read the same value both succeed — a lost update that **oversells**. With
  ``LAB_ORDERS_NAIVE_LOCKING=row-lock`` it takes ``SELECT … FOR UPDATE`` first: no oversell, but the
  hot row queues every buyer, latency passes the client's timeout and clients retry.
* ``Idempotency-Key`` is ignored and the gateway is charged without one, so a client's retry after a
  timeout creates a **second order and a second charge**.
* ``OrderPlaced`` is published to Kafka after the commit (a **dual write**): if the broker is down or
  the process dies in between, the order exists and its event is **lost**.

Exposed by ``tests/integration/test_orders_flash_sale.py`` (oversold, double charges) and
``tests/integration/test_orders_broker_down.py`` (lost events), counted by
:func:`services.orders.audit.audit_sale`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from uuid import UUID

import asyncpg
from aiokafka import AIOKafkaProducer

from services.orders import store
from services.orders.clients import InventoryClient, PaymentGatewayClient
from services.orders.events import OrderPlaced, message_headers, topic_end_offsets
from services.orders.ports import FlashSale, OrderRecord, OrderReply, PlaceOrder, StockLevel
from services.orders.settings import OrdersSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NaiveOrderFlow:
    pool: asyncpg.Pool
    inventory: InventoryClient
    gateway: PaymentGatewayClient
    producer: AIOKafkaProducer
    settings: OrdersSettings

    async def open_sale(self, sale: FlashSale) -> None:
        event_offsets = await topic_end_offsets(self.settings, [self.settings.orders_naive_topic])
        await self.inventory.set_stock(sku=sale.sku, available=sale.stock)
        async with self.pool.acquire() as conn, conn.transaction():
            await store.reset_sale(conn, sale, event_offsets=event_offsets)

    async def place_order(self, command: PlaceOrder, *, idempotency_key: str | None) -> OrderReply:
        # idempotency_key is deliberately ignored: that is the flaw.
        sale = await store.sale_for_order(self.pool, command.sku)
        await self.inventory.reserve(sku=command.sku, quantity=command.quantity)
        order = OrderRecord.placed(command, sale)
        await self._charge_and_commit(order)
        await self._publish(order)
        return OrderReply(201, {"order_id": str(order.order_id), "status": "paid"})

    async def find_order(self, order_id: UUID) -> OrderRecord | None:
        return await store.find_order(self.pool, order_id)

    async def stock_of(self, sku: str) -> StockLevel | None:
        sale = await store.find_sale(self.pool, sku)
        available = await self.inventory.available(sku) if sale else None
        if sale is None or available is None:
            return None
        return StockLevel(sku=sku, stock=sale.stock, available=available)

    async def _charge_and_commit(self, order: OrderRecord) -> None:
        """Insert the order and charge the gateway inside one transaction: the database connection
        is held for the whole third-party call."""
        async with self.pool.acquire() as conn, conn.transaction():
            await store.insert_order(conn, order)
            charge_id = await self.gateway.charge(
                order_id=str(order.order_id),
                amount_cents=order.amount_cents,
                currency=self.settings.orders_currency,
            )
            await store.mark_paid(conn, order_id=order.order_id, charge_id=charge_id)

    async def _publish(self, order: OrderRecord) -> None:
        """After the commit: a failure here loses the event for good (the dual write)."""
        event = OrderPlaced.of(order, currency=self.settings.orders_currency)
        try:
            await asyncio.wait_for(
                self.producer.send_and_wait(
                    self.settings.orders_naive_topic,
                    event.to_json().encode(),
                    key=event.order_id.encode(),
                    headers=message_headers(message_id=event.order_id),
                ),
                timeout=self.settings.orders_naive_publish_timeout_s,
            )
        except Exception as exc:  # the order is committed; the event is simply gone
            logger.warning("event_lost order_id=%s error=%s", event.order_id, type(exc).__name__)
