"""Helpers for the order-flow tests: buyers, audits, and (from ``loadtests.orders.services``) the
services of one lab and its workers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from loadtests.orders.services import (
    ADMIN_TOKEN,
    OrdersLab,
    admin_headers,
    fresh_topics,
    run_orders_lab,
    settings_for,
)
from services.lab.standalone import run_worker
from services.orders.audit import SaleAudit, audit_sale
from services.orders.settings import OrdersSettings

# The tests import these from here, next to the other orders helpers.
__all__ = [
    "ADMIN_TOKEN",
    "OrdersLab",
    "admin_headers",
    "fresh_topics",
    "run_orders_lab",
    "run_worker",
    "settings_for",
]


async def open_sale(client: httpx.AsyncClient, *, sku: str, stock: int, price_cents: int = 1999) -> None:
    response = await client.post(
        "/api/v1/admin/flash-sales",
        json={"sku": sku, "stock": stock, "price_cents": price_cents},
        headers=admin_headers(),
    )
    assert response.status_code == 201, response.text


async def place_order(
    client: httpx.AsyncClient,
    *,
    sku: str,
    customer_id: str,
    key: str | None = None,
    quantity: int = 1,
    timeout_s: float = 10.0,
) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    body = {"sku": sku, "quantity": quantity, "customer_id": customer_id}
    return await client.post("/api/v1/orders", json=body, headers=headers, timeout=timeout_s)


@dataclass(frozen=True)
class BuyerOutcome:
    customer_id: str
    statuses: tuple[int | str, ...]


async def buy_with_retry(
    client: httpx.AsyncClient, *, sku: str, customer_id: str, timeout_s: float, start_after_s: float
) -> BuyerOutcome:
    """One buyer the way a frontend behaves: a timeout, then one retry with the same key."""
    await asyncio.sleep(start_after_s)
    key = uuid.uuid4().hex
    statuses: list[int | str] = []
    for _attempt in range(2):
        try:
            response = await place_order(
                client, sku=sku, customer_id=customer_id, key=key, timeout_s=timeout_s
            )
        except httpx.TimeoutException:
            statuses.append("timeout")
            continue
        statuses.append(response.status_code)
        break
    return BuyerOutcome(customer_id=customer_id, statuses=tuple(statuses))


async def flash_sale(
    base_url: str, *, sku: str, buyers: int, spread_s: float, timeout_s: float
) -> list[BuyerOutcome]:
    """``buyers`` customers arriving evenly over ``spread_s`` seconds, each buying one unit."""
    step = spread_s / buyers
    limits = httpx.Limits(max_connections=4 * buyers, max_keepalive_connections=4 * buyers)
    async with httpx.AsyncClient(base_url=base_url, limits=limits) as client:
        sales = [
            buy_with_retry(
                client, sku=sku, customer_id=f"c{i:04d}", timeout_s=timeout_s, start_after_s=i * step
            )
            for i in range(buyers)
        ]
        return list(await asyncio.gather(*sales))


async def wait_until(predicate: Any, *, timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll an async predicate until it is true or the time is up."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        if await predicate():
            return True
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(interval_s)


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
