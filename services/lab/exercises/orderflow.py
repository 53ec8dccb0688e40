"""The order flow's services as a check or a test runs them: inventory, gateway and one orders
variant wired to each other, buyers who time out and retry, and the sale's admin calls."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from services.lab.standalone import ServedApp, serve_app
from services.orders.settings import OrdersSettings

ADMIN_TOKEN = "orders-test-token"
ORDERS_APP = "services.orders.app:create_app"
INVENTORY_APP = "services.orders.inventory:create_app"
GATEWAY_APP = "services.orders.gateway:create_app"


class SaleNotOpened(RuntimeError):
    """The admin call that opens a sale did not answer 201."""


@dataclass(frozen=True)
class OrdersLab:
    orders: ServedApp
    inventory: ServedApp
    gateway: ServedApp
    env: dict[str, str]


@contextmanager
def run_orders_lab(
    variant: str,
    *,
    env: Mapping[str, str],
    log_dir: Path,
    workers: int = 1,
    orders_env: Mapping[str, str] | None = None,
) -> Iterator[OrdersLab]:
    """Inventory, gateway and one orders variant, wired to each other, each under real uvicorn;
    ``orders_env`` goes to the orders service only."""
    base = {"LAB_ADMIN_TOKEN": ADMIN_TOKEN, **env}
    with ExitStack() as stack:
        inventory = stack.enter_context(serve_app(INVENTORY_APP, "inventory", env=base, log_dir=log_dir))
        gateway = stack.enter_context(serve_app(GATEWAY_APP, "gateway", env=base, log_dir=log_dir))
        wired = {
            **base,
            "LAB_ORDERS_INVENTORY_URL": inventory.url,
            "LAB_ORDERS_PAYMENT_GATEWAY_URL": gateway.url,
        }
        orders_only = {**wired, **(orders_env or {})}
        orders = stack.enter_context(
            serve_app(ORDERS_APP, variant, env=orders_only, log_dir=log_dir, workers=workers)
        )
        yield OrdersLab(orders=orders, inventory=inventory, gateway=gateway, env=wired)


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


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


def settings_for(env: Mapping[str, str]) -> OrdersSettings:
    """What an audit or a reader needs of the settings of services started with ``env``: the
    servers, and the test's own topics (:func:`fresh_topics`)."""
    return OrdersSettings(
        postgres_url=env["LAB_POSTGRES_URL"],
        kafka_bootstrap=env["LAB_KAFKA_BOOTSTRAP"],
        orders_topic=env["LAB_ORDERS_TOPIC"],
        orders_dlq_topic=env["LAB_ORDERS_DLQ_TOPIC"],
        orders_naive_topic=env["LAB_ORDERS_NAIVE_TOPIC"],
    )


def fresh_topics() -> dict[str, str]:
    """Topics and consumer groups of one test alone: the broker is shared by the whole session, and
    no other test's events may reach this one's consumers or audits."""
    unique = uuid.uuid4().hex[:8]
    return {
        "LAB_ORDERS_TOPIC": f"orders.events.{unique}",
        "LAB_ORDERS_DLQ_TOPIC": f"orders.events.{unique}.dlq",
        "LAB_ORDERS_NAIVE_TOPIC": f"orders.naive.events.{unique}",
        "LAB_ORDERS_CONSUMER_GROUP_PREFIX": f"orders-{unique}",
    }
