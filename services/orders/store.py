"""Named queries on a variant's own schema that both variants share (sales and orders)."""

from __future__ import annotations

import json
from uuid import UUID

import asyncpg

from services.orders.errors import UnknownSku
from services.orders.events import TopicOffsets
from services.orders.ports import FlashSale, OrderRecord

UPSERT_SALE = """
INSERT INTO flash_sales (sku, stock, price_cents, event_offsets) VALUES ($1, $2, $3, $4::jsonb)
ON CONFLICT (sku) DO UPDATE SET stock = EXCLUDED.stock, price_cents = EXCLUDED.price_cents,
                                opened_at = now(), event_offsets = EXCLUDED.event_offsets
"""
DELETE_SALE_ORDERS = """
WITH gone AS (DELETE FROM orders WHERE sku = $1 RETURNING order_id)
DELETE FROM notifications WHERE order_id IN (SELECT order_id FROM gone)
"""
FIND_SALE = "SELECT sku, stock, price_cents FROM flash_sales WHERE sku = $1"
INSERT_ORDER = """
INSERT INTO orders (order_id, sku, customer_id, quantity, amount_cents, status)
VALUES ($1, $2, $3, $4, $5, $6)
"""
MARK_PAID = """
UPDATE orders SET status = 'paid', charge_id = $2, paid_at = now()
WHERE order_id = $1 AND status <> 'paid'
"""
FIND_ORDER = """
SELECT order_id, sku, customer_id, quantity, amount_cents, status FROM orders WHERE order_id = $1
"""


async def reset_sale(
    conn: asyncpg.Connection, sale: FlashSale, *, event_offsets: TopicOffsets | None
) -> None:
    """Forget the sale's previous orders and seed it afresh (one transaction, the caller's).
    ``event_offsets``: where the variant's topics ended before this transaction (for the audit)."""
    await conn.execute(DELETE_SALE_ORDERS, sale.sku)
    offsets = json.dumps(event_offsets) if event_offsets is not None else None
    await conn.execute(UPSERT_SALE, sale.sku, sale.stock, sale.price_cents, offsets)


async def find_sale(conn: asyncpg.Connection | asyncpg.Pool, sku: str) -> FlashSale | None:
    row = await conn.fetchrow(FIND_SALE, sku)
    return FlashSale(**dict(row)) if row else None


async def sale_for_order(conn: asyncpg.Connection | asyncpg.Pool, sku: str) -> FlashSale:
    """The sale an order names, read by both variants to price it; :class:`UnknownSku` when none."""
    sale = await find_sale(conn, sku)
    if sale is None:
        raise UnknownSku(sku)
    return sale


async def insert_order(conn: asyncpg.Connection, order: OrderRecord) -> None:
    await conn.execute(
        INSERT_ORDER,
        order.order_id,
        order.sku,
        order.customer_id,
        order.quantity,
        order.amount_cents,
        order.status,
    )


async def mark_paid(conn: asyncpg.Connection | asyncpg.Pool, *, order_id: UUID, charge_id: str) -> None:
    await conn.execute(MARK_PAID, order_id, charge_id)


async def find_order(conn: asyncpg.Connection | asyncpg.Pool, order_id: UUID) -> OrderRecord | None:
    row = await conn.fetchrow(FIND_ORDER, order_id)
    return OrderRecord(**dict(row)) if row else None
