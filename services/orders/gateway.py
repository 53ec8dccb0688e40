"""The payment gateway simulator: a third-party API with a ledger of every charge.

Like Stripe, it honours an ``Idempotency-Key`` when one is sent: a second request with the same key
gets the first charge back (``Idempotent-Replayed: true``) and charges nothing. Without a key every
request is a new charge. ``payment_gateway_latency_ms`` and ``payment_gateway_failure_rate`` make it
slow and unreliable; in ``after-charge`` mode a failure happens after the charge is recorded (the
answer is lost), the case only an idempotency key makes safe to retry.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Annotated, Any

import asyncpg
from fastapi import FastAPI, Header, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictInt, StrictStr

from services.core.app import build_app, pool_lifespan
from services.core.problems import Problem
from services.core.resources import PoolDep
from services.orders.settings import OrdersSettings, schema_for

INSERT_CHARGE = """
INSERT INTO charges (charge_id, order_id, amount_cents, currency, idempotency_key)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING charge_id, order_id, amount_cents, currency, created_at
"""
FIND_BY_KEY = """
SELECT charge_id, order_id, amount_cents, currency, created_at FROM charges WHERE idempotency_key = $1
"""
FIND_BY_ORDER = """
SELECT charge_id, order_id, amount_cents, currency, created_at FROM charges
WHERE order_id = $1 ORDER BY created_at
"""


class ChargeCreate(BaseModel):
    order_id: Annotated[StrictStr, Field(min_length=1, max_length=128)]
    amount_cents: StrictInt = Field(ge=0)
    currency: Annotated[StrictStr, Field(min_length=3, max_length=3)]


def _charge_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "charge_id": str(row["charge_id"]),
        "order_id": row["order_id"],
        "amount_cents": row["amount_cents"],
        "currency": row["currency"],
        "created": row["created_at"].isoformat(),
    }


def _gateway_failure() -> Problem:
    return Problem(
        status=503,
        kind="gateway-unavailable",
        title="Payment gateway unavailable",
        detail="simulated failure; retry with the same Idempotency-Key",
        headers={"Retry-After": "1"},
    )


async def record_charge(
    pool: asyncpg.Pool, body: ChargeCreate, key: str | None
) -> tuple[dict[str, Any], bool]:
    """Record a charge (or find the one made with ``key``); the charge and whether it is a replay."""
    row = await pool.fetchrow(
        INSERT_CHARGE, uuid.uuid4(), body.order_id, body.amount_cents, body.currency, key
    )
    if row is not None:
        return _charge_json(row), False
    existing = await pool.fetchrow(FIND_BY_KEY, key)
    return _charge_json(existing), True


def create_app(variant: str = "gateway", settings: OrdersSettings | None = None) -> FastAPI:
    settings = settings or OrdersSettings()
    lifespan = pool_lifespan(
        settings, schema=schema_for("gateway"), package="services.orders", ddl_file="gateway.sql"
    )
    app = build_app(title=f"payment gateway ({variant})", settings=settings, lifespan=lifespan)

    def fails() -> bool:
        return random.random() < settings.payment_gateway_failure_rate

    @app.post("/v1/charges", status_code=201)
    async def create_charge(
        body: ChargeCreate,
        pool: PoolDep,
        idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
    ) -> JSONResponse:
        await asyncio.sleep(settings.payment_gateway_latency_ms / 1000)
        failing = fails()
        if failing and settings.payment_gateway_failure_mode == "before-charge":
            raise _gateway_failure()
        charge, replayed = await record_charge(pool, body, idempotency_key)
        if failing:
            raise _gateway_failure()
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        return JSONResponse(charge, status_code=201, headers=headers)

    @app.get("/v1/charges")
    async def list_charges(pool: PoolDep, order_id: Annotated[str, Query(min_length=1)]) -> dict[str, Any]:
        rows = await pool.fetch(FIND_BY_ORDER, order_id)
        return {"data": [_charge_json(row) for row in rows]}

    return app
