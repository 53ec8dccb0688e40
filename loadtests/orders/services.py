"""The order flow's services on servers of one's own, wired to each other, each under real uvicorn:
inventory, the payment gateway, one orders variant and, for the hardened one, its background
workers. The integration tests and the fault matrix both start the flow this way."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from services.lab.standalone import ServedApp, serve_app
from services.orders.settings import OrdersSettings

ADMIN_TOKEN = "orders-lab-token"  # loopback only: the services of one test or one fault matrix
ORDERS_APP = "services.orders.app:create_app"
INVENTORY_APP = "services.orders.inventory:create_app"
GATEWAY_APP = "services.orders.gateway:create_app"
HARDENED_WORKERS = {
    "relay": "services.orders.relay:run",
    "payments": "services.orders.consumers:run_payments",
    "notifications": "services.orders.consumers:run_notifications",
}


@dataclass(frozen=True)
class OrdersLab:
    orders: ServedApp
    inventory: ServedApp
    gateway: ServedApp
    env: dict[str, str]  # what a worker of this flow needs: the servers, topics and services


@contextmanager
def run_orders_lab(
    variant: str,
    *,
    env: Mapping[str, str],
    log_dir: Path,
    workers: int = 1,
    orders_env: Mapping[str, str] | None = None,
) -> Iterator[OrdersLab]:
    """Inventory, gateway and one orders variant, wired to each other; ``orders_env`` goes to the
    orders service only."""
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


def fresh_topics() -> dict[str, str]:
    """Topics and consumer groups of one flow alone: no other test's or cell's events may reach this
    one's consumers or audits on a shared broker."""
    unique = uuid.uuid4().hex[:8]
    return {
        "LAB_ORDERS_TOPIC": f"orders.events.{unique}",
        "LAB_ORDERS_DLQ_TOPIC": f"orders.events.{unique}.dlq",
        "LAB_ORDERS_NAIVE_TOPIC": f"orders.naive.events.{unique}",
        "LAB_ORDERS_CONSUMER_GROUP_PREFIX": f"orders-{unique}",
    }


def settings_for(env: Mapping[str, str]) -> OrdersSettings:
    """What an audit or a reader needs of the settings of services started with ``env``: the
    servers, and the flow's own topics (:func:`fresh_topics`)."""
    return OrdersSettings(
        postgres_url=env["LAB_POSTGRES_URL"],
        kafka_bootstrap=env["LAB_KAFKA_BOOTSTRAP"],
        orders_topic=env["LAB_ORDERS_TOPIC"],
        orders_dlq_topic=env["LAB_ORDERS_DLQ_TOPIC"],
        orders_naive_topic=env["LAB_ORDERS_NAIVE_TOPIC"],
    )


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
