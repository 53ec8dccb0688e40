"""The inventory service: the naive checkout's synchronous dependency.

It reads the stock, waits ``inventory_delay_ms`` (a slow service under load), checks, and writes back
the value it computed — a lost update when two reservations overlap. With
``LAB_ORDERS_NAIVE_LOCKING=row-lock`` it reads with ``SELECT … FOR UPDATE``: correct, and every buyer
of the product queues on that one row for the whole delay.
"""

from __future__ import annotations

import asyncio

import asyncpg
from fastapi import FastAPI
from pydantic import BaseModel, Field, StrictInt, StrictStr

from services.core.app import build_app, pool_lifespan
from services.core.resources import PoolDep
from services.orders.errors import OutOfStock, UnknownSku, error_mapping
from services.orders.settings import OrdersSettings, schema_for

READ = "SELECT available FROM stock WHERE sku = $1"
READ_LOCKED = "SELECT available FROM stock WHERE sku = $1 FOR UPDATE"
WRITE_BACK = "UPDATE stock SET available = $2 WHERE sku = $1"
SEED = """
INSERT INTO stock (sku, available) VALUES ($1, $2)
ON CONFLICT (sku) DO UPDATE SET available = EXCLUDED.available
"""


class StockSet(BaseModel):
    available: StrictInt = Field(ge=0)


class StockPublic(BaseModel):
    sku: str
    available: int


class ReservationCreate(BaseModel):
    sku: StrictStr
    quantity: StrictInt = Field(ge=1)


async def reserve(pool: asyncpg.Pool, *, sku: str, quantity: int, settings: OrdersSettings) -> int:
    """Read, wait, check, write back ``read − quantity``; the new availability."""
    read = READ_LOCKED if settings.orders_naive_locking == "row-lock" else READ
    async with pool.acquire() as conn, conn.transaction():
        available = await conn.fetchval(read, sku)
        if available is None:
            raise UnknownSku(sku)
        await asyncio.sleep(settings.inventory_delay_ms / 1000)
        if available < quantity:
            raise OutOfStock(sku)
        await conn.execute(WRITE_BACK, sku, available - quantity)
    return int(available - quantity)


def create_app(variant: str = "inventory", settings: OrdersSettings | None = None) -> FastAPI:
    settings = settings or OrdersSettings()
    errors = error_mapping(retry_after_s=settings.orders_retry_after_s)
    lifespan = pool_lifespan(
        settings, schema=schema_for("inventory"), package="services.orders", ddl_file="inventory.sql"
    )
    app = build_app(title=f"inventory ({variant})", settings=settings, lifespan=lifespan, errors=errors)

    @app.put("/v1/stock/{sku}")
    async def set_stock(sku: str, body: StockSet, pool: PoolDep) -> StockPublic:
        await pool.execute(SEED, sku, body.available)
        return StockPublic(sku=sku, available=body.available)

    @app.get("/v1/stock/{sku}")
    async def get_stock(sku: str, pool: PoolDep) -> StockPublic:
        available = await pool.fetchval(READ, sku)
        if available is None:
            raise UnknownSku(sku)
        return StockPublic(sku=sku, available=available)

    @app.post("/v1/reservations")
    async def create_reservation(body: ReservationCreate, pool: PoolDep) -> StockPublic:
        available = await reserve(pool, sku=body.sku, quantity=body.quantity, settings=settings)
        return StockPublic(sku=body.sku, available=available)

    return app
