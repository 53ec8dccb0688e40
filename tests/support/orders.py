"""Helpers for the order-flow tests: the services of one lab, buyers, and the workers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from services.core.resources import apply_schema, open_postgres_pool, read_resource
from services.lab.exercises.orderflow import (
    ADMIN_TOKEN,
    BuyerOutcome,
    OrdersLab,
    admin_headers,
    buy_with_retry,
    flash_sale,
    fresh_topics,
    open_sale,
    place_order,
    run_orders_lab,
    settings_for,
    wait_until,
)
from services.lab.standalone import run_worker
from services.orders.audit import SaleAudit, audit_sale
from services.orders.settings import OrdersSettings, schema_for

# The tests import these from here, next to the other orders helpers.
__all__ = [
    "ADMIN_TOKEN",
    "BuyerOutcome",
    "OrdersLab",
    "admin_headers",
    "buy_with_retry",
    "flash_sale",
    "fresh_topics",
    "open_sale",
    "place_order",
    "run_orders_lab",
    "run_worker",
    "settings_for",
    "wait_until",
]


async def apply_orders_schema(settings: OrdersSettings) -> None:
    """The hardened variant's tables, for a test that writes them before any service has started."""
    async with open_postgres_pool(settings, schema=schema_for("hardened")) as pool:
        await apply_schema(pool, read_resource("services.orders", "schema.sql"))


async def buy(client: httpx.AsyncClient, sku: str, buyer: str, **options: Any) -> httpx.Response:
    """An order of ``buyer`` of this sale alone (keys are scoped to the customer, whatever the SKU),
    with a key of their own."""
    return await place_order(client, sku=sku, customer_id=f"{buyer}@{sku}", key=f"{buyer}-key", **options)


async def audit_when(
    settings: OrdersSettings,
    *,
    variant: str,
    sku: str,
    done: Callable[[SaleAudit], bool],
    steady: bool = False,
    timeout_s: float = 60,
    interval_s: float = 0.5,
) -> SaleAudit:
    """The sale's audit once ``done`` holds for it (with ``steady``, also two audits in a row alike:
    the sale stopped changing); fails the test, showing the last audit, when that takes longer than
    ``timeout_s``: a sale that never settles must not be audited as if it had."""
    audits: list[SaleAudit] = []

    async def reached() -> bool:
        audits.append(await audit_sale(settings, variant=variant, sku=sku))
        unchanged = len(audits) > 1 and audits[-1] == audits[-2]
        return done(audits[-1]) and (unchanged or not steady)

    assert await wait_until(reached, timeout_s=timeout_s, interval_s=interval_s), audits[-1]
    return audits[-1]
