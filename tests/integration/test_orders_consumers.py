"""The hardened consumers: a redelivery never charges twice, a flaky gateway is retried with the
same key until every order is paid, and a message that keeps failing goes to the dead-letter topic."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from services.lab import processes
from services.lab.infra import InfraEndpoints
from services.orders.audit import SaleAudit
from tests.support.orders import (
    OrdersLab,
    audit_when,
    fresh_topics,
    open_sale,
    place_order,
    run_orders_lab,
    run_worker,
    settings_for,
)

pytestmark = pytest.mark.integration

RELAY = "services.orders.relay:run"
PAYMENTS = "services.orders.consumers:run_payments"
ORDERS = 20


@pytest.fixture
def env(infra: InfraEndpoints) -> dict[str, str]:
    return {
        **infra.as_env(),
        **fresh_topics(),
        "LAB_ORDERS_CONSUMER_RETRY_BACKOFF_S": "0.05",
    }


@contextmanager
def hardened_with_relay(env: dict[str, str], log_dir: Path) -> Iterator[OrdersLab]:
    with ExitStack() as stack:
        lab = stack.enter_context(run_orders_lab("hardened", env=env, log_dir=log_dir))
        stack.enter_context(run_worker(RELAY, env=lab.env, log_dir=log_dir))
        yield lab


async def sell(lab: OrdersLab, *, orders: int) -> str:
    sku = f"pay-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=lab.orders.url, timeout=10) as client:
        await open_sale(client, sku=sku, stock=orders)
        replies = await asyncio.gather(
            *(place_order(client, sku=sku, customer_id=f"c{i}", key=uuid.uuid4().hex) for i in range(orders))
        )
    assert [reply.status_code for reply in replies] == [201] * orders
    return sku


def all_paid(audit: SaleAudit) -> bool:
    return audit.orders_committed > 0 and audit.orders_not_paid == 0


async def test_a_consumer_killed_before_committing_its_offsets_does_not_charge_twice(
    env: dict[str, str], tmp_path: Path
) -> None:
    with hardened_with_relay(env, tmp_path) as lab:
        slow_commit = {**lab.env, "LAB_ORDERS_CONSUMER_COMMIT_DELAY_S": "60"}
        with run_worker(PAYMENTS, env=slow_commit, log_dir=tmp_path / "first") as payments:
            sku = await sell(lab, orders=ORDERS)
            await audit_when(settings_for(env), variant="hardened", sku=sku, done=all_paid)
            processes.send_signal(payments, signal.SIGKILL)  # processed, offsets not committed

        # The redeliveries must be absorbed from the inbox alone: this worker cannot reach the gateway.
        no_gateway = {
            **lab.env,
            "LAB_ORDERS_PAYMENT_GATEWAY_URL": f"http://127.0.0.1:{processes.free_port()}",
        }
        with run_worker(PAYMENTS, env=no_gateway, log_dir=tmp_path / "second"):
            audit = await audit_when(
                settings_for(env),
                variant="hardened",
                sku=sku,
                done=lambda a: a.redeliveries_absorbed >= ORDERS,
            )

    assert audit.charges == ORDERS
    assert audit.customers_charged_more_than_once == 0
    assert audit.orders_not_paid == 0
    assert audit.redeliveries_absorbed == ORDERS


async def test_a_flaky_gateway_is_retried_with_the_same_key_until_every_order_is_paid(
    env: dict[str, str], tmp_path: Path
) -> None:
    # 20% of charges fail after being recorded: the answer is lost, the charge is not.
    flaky = {**env, "LAB_PAYMENT_GATEWAY_FAILURE_RATE": "0.2", "LAB_ORDERS_CONSUMER_MAX_ATTEMPTS": "10"}
    with hardened_with_relay(flaky, tmp_path) as lab, run_worker(PAYMENTS, env=lab.env, log_dir=tmp_path):
        sku = await sell(lab, orders=50)
        audit = await audit_when(settings_for(env), variant="hardened", sku=sku, done=all_paid)

    assert audit.charges == audit.orders_committed == 50
    assert audit.customers_charged_more_than_once == 0
    assert audit.orders_never_charged == 0
    assert audit.dlq_messages == 0


async def test_a_message_that_keeps_failing_goes_to_the_dead_letter_topic(
    env: dict[str, str], tmp_path: Path
) -> None:
    broken = {
        **env,
        "LAB_PAYMENT_GATEWAY_FAILURE_RATE": "1",
        "LAB_PAYMENT_GATEWAY_FAILURE_MODE": "before-charge",
        "LAB_ORDERS_CONSUMER_MAX_ATTEMPTS": "2",
    }
    with hardened_with_relay(broken, tmp_path) as lab, run_worker(PAYMENTS, env=lab.env, log_dir=tmp_path):
        sku = await sell(lab, orders=3)
        audit = await audit_when(
            settings_for(env), variant="hardened", sku=sku, done=lambda a: a.dlq_messages >= 3
        )

    assert audit.dlq_messages == 3
    assert audit.charges == 0
    assert audit.orders_not_paid == 3
