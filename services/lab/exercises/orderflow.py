"""The order flow as a check or a test drives it: buyers who time out and retry, and the sale's admin
calls. The services themselves start the one way the lab's measurements start them
(:mod:`loadtests.orders.services`), re-exported here for the stages."""

from __future__ import annotations

import asyncio
import time
import uuid
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

__all__ = [
    "ADMIN_TOKEN",
    "BuyerOutcome",
    "OrdersLab",
    "SaleNotOpened",
    "admin_headers",
    "buy_with_retry",
    "flash_sale",
    "fresh_topics",
    "open_sale",
    "place_order",
    "run_orders_lab",
    "settings_for",
    "wait_until",
]


class SaleNotOpened(RuntimeError):
    """The admin call that opens a sale did not answer 201."""


async def open_sale(client: httpx.AsyncClient, *, sku: str, stock: int, price_cents: int = 1999) -> None:
    response = await client.post(
        "/api/v1/admin/flash-sales",
        json={"sku": sku, "stock": stock, "price_cents": price_cents},
        headers=admin_headers(),
    )
    if response.status_code != 201:
        raise SaleNotOpened(
            f"opening the sale {sku!r} answered {response.status_code}: {response.text[:300]}"
        )


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
    first_answer_s: float  # how long the first attempt took


async def buy_with_retry(
    client: httpx.AsyncClient, *, sku: str, customer_id: str, timeout_s: float, start_after_s: float
) -> BuyerOutcome:
    """One buyer the way a frontend behaves: a timeout, then one retry with the same key."""
    await asyncio.sleep(start_after_s)
    key = uuid.uuid4().hex
    statuses: list[int | str] = []
    started = time.monotonic()
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
    # A timed-out first attempt took the whole timeout, as far as the buyer can tell.
    first_s = timeout_s if statuses[0] == "timeout" else time.monotonic() - started
    return BuyerOutcome(customer_id=customer_id, statuses=tuple(statuses), first_answer_s=first_s)


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
