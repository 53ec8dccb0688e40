"""Partitioned events with several relays and consumers: two relays and two payments consumers on
three partitions, one of each SIGKILLed mid-stream, deliver every order's events in commit order and
charge every order once; a topic with fewer partitions than configured stops the relay at start-up
with nothing lost."""

from __future__ import annotations

import signal
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.lab import processes
from services.lab.infra import InfraEndpoints
from services.lab.processes import ProcessRecord
from services.orders.audit import SaleAudit, read_records
from services.orders.events import MESSAGE_ID_HEADER, header_value
from services.orders.settings import OrdersSettings
from tests.support.orders import (
    apply_orders_schema,
    audit_when,
    fresh_topics,
    open_sale,
    run_orders_lab,
    run_worker,
    settings_for,
    wait_until,
)

pytestmark = pytest.mark.integration

RELAY = "services.orders.relay:run"
PAYMENTS = "services.orders.consumers:run_payments"
ORDERS = 10_000
CHUNK = 200  # orders per writing transaction: 400 rows, out of step with the relay batch of 500
PRICE_CENTS = 1999

# What the checkout statement writes for one order (stock taken, order row, OrderPlaced in the
# outbox), for a chunk of orders at once: the fast path to 10,000 orders.
PLACE_CHUNK = """
WITH taken AS (
    UPDATE orders_hardened.inventory SET available = available - $2 WHERE sku = $1
), placed AS (
    INSERT INTO orders_hardened.orders (order_id, sku, customer_id, quantity, amount_cents, status)
    SELECT id, $1, 'c-' || id, 1, $3, 'pending_payment'
    FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, $2)) AS fresh
    RETURNING order_id, customer_id
)
INSERT INTO orders_hardened.outbox (aggregate_id, event_type, payload)
SELECT order_id::text, 'OrderPlaced', jsonb_build_object(
    'order_id', order_id::text, 'sku', $1::text, 'customer_id', customer_id, 'quantity', 1,
    'amount_cents', $3, 'currency', 'EUR')
FROM placed
RETURNING aggregate_id
"""
# A second event of each order of the previous chunk, in the next transaction: every order has two
# events committed one after the other, close together in the outbox, for the relays to race on.
FOLLOW_UP = """
INSERT INTO orders_hardened.outbox (aggregate_id, event_type, payload)
SELECT id, 'OrderNoted', jsonb_build_object('order_id', id, 'sku', $2::text)
FROM unnest($1::text[]) AS id
"""


@pytest.fixture
def env(infra: InfraEndpoints) -> dict[str, str]:
    return {**infra.as_env(), **fresh_topics(), "LAB_ORDERS_TOPIC_PARTITIONS": "3"}


@contextmanager
def workers(target: str, *, count: int, env: dict[str, str], log_dir: Path) -> Iterator[list[ProcessRecord]]:
    """``count`` instances of one worker, each with its own log directory."""
    name = target.rsplit(":", 1)[-1]
    with ExitStack() as stack:
        yield [
            stack.enter_context(run_worker(target, env=env, log_dir=log_dir / f"{name}-{n}"))
            for n in range(1, count + 1)
        ]


async def place_orders(pg: asyncpg.Connection, *, sku: str) -> None:
    previous: list[str] = []
    for _ in range(ORDERS // CHUNK):
        async with pg.transaction():
            if previous:
                await pg.execute(FOLLOW_UP, previous, sku)
            previous = [row[0] for row in await pg.fetch(PLACE_CHUNK, sku, CHUNK, PRICE_CENTS)]
    await pg.execute(FOLLOW_UP, previous, sku)


async def count(pg: asyncpg.Connection, query: str, sku: str) -> int:
    return int(await pg.fetchval(query, sku))


PUBLISHED = """
SELECT count(*) FROM orders_hardened.outbox x JOIN orders_hardened.orders o
ON o.order_id::text = x.aggregate_id WHERE o.sku = $1 AND x.published_at IS NOT NULL
"""
PAID = "SELECT count(*) FROM orders_hardened.orders WHERE sku = $1 AND status = 'paid'"


async def wait_for(pg: asyncpg.Connection, query: str, sku: str, *, at_least: int) -> None:
    async def reached() -> bool:
        return await count(pg, query, sku) >= at_least

    assert await wait_until(reached, timeout_s=60, interval_s=0.05), await count(pg, query, sku)


async def events_out_of_commit_order(settings: OrdersSettings, *, orders: set[str]) -> tuple[int, int]:
    """(events of ``orders`` in the topic, orders whose events a partition holds in another order
    than their outbox ids, the commit order); also fails on an order spread over two partitions."""
    ids: dict[str, list[int]] = defaultdict(list)
    partition_of: dict[str, int] = {}
    for record in await read_records(settings, settings.orders_topic):
        order = record.key.decode() if record.key else ""
        if order in orders:
            assert partition_of.setdefault(order, record.partition) == record.partition
            message_id = header_value(record.headers, MESSAGE_ID_HEADER)
            assert message_id, f"an event of {order} without its {MESSAGE_ID_HEADER} header"
            ids[order].append(int(message_id))
    # Each order's two events must be told apart, or no order of them could be seen.
    assert all(len(set(sent)) == 2 for sent in ids.values()), "an order without two distinct events"
    # A relay killed after sending and before marking sends again: repeats are allowed, going back is not.
    reordered = sum(1 for sent in ids.values() if sorted(set(sent)) != list(dict.fromkeys(sent)))
    return sum(len(sent) for sent in ids.values()), reordered


def settled(audit: SaleAudit) -> bool:
    return audit.orders_not_paid == 0 and audit.events_published == ORDERS


async def test_two_relays_and_two_consumers_killed_one_each_deliver_in_order_and_charge_once(
    env: dict[str, str], pg: asyncpg.Connection, tmp_path: Path
) -> None:
    sku = f"parts-{uuid.uuid4().hex[:8]}"
    with run_orders_lab("hardened", env=env, log_dir=tmp_path) as lab:
        async with httpx.AsyncClient(base_url=lab.orders.url, timeout=10) as client:
            await open_sale(client, sku=sku, stock=ORDERS, price_cents=PRICE_CENTS)
        # Written before the relays start, so that both find full batches at once and race.
        await place_orders(pg, sku=sku)
        with (
            workers(RELAY, count=2, env=lab.env, log_dir=tmp_path) as relays,
            workers(PAYMENTS, count=2, env=lab.env, log_dir=tmp_path) as payments,
        ):
            await wait_for(pg, PUBLISHED, sku, at_least=ORDERS // 5)
            processes.send_signal(relays[0], signal.SIGKILL)
            published_at_kill = await count(pg, PUBLISHED, sku)
            await wait_for(pg, PAID, sku, at_least=ORDERS // 5)
            processes.send_signal(payments[0], signal.SIGKILL)  # its partitions go to the other one
            paid_at_kill = await count(pg, PAID, sku)
            audit = await audit_when(
                settings_for(lab.env), variant="hardened", sku=sku, done=settled, timeout_s=75
            )

    orders = {
        row[0]
        for row in await pg.fetch("SELECT order_id::text FROM orders_hardened.orders WHERE sku = $1", sku)
    }
    events, reordered = await events_out_of_commit_order(settings_for(env), orders=orders)
    assert published_at_kill < 2 * ORDERS  # both kills were mid-stream
    assert paid_at_kill < ORDERS
    assert audit.orders_committed == audit.charges == ORDERS
    assert audit.customers_charged_more_than_once == 0
    assert audit.events_lost == 0
    assert audit.dlq_messages == 0
    assert events >= 2 * ORDERS
    assert reordered == 0


async def test_a_topic_with_fewer_partitions_than_configured_stops_the_relay_and_loses_nothing(
    env: dict[str, str], pg: asyncpg.Connection, tmp_path: Path
) -> None:
    settings = settings_for(env)
    await apply_orders_schema(settings)
    await create_topic(settings, partitions=2)  # an existing topic, made with a lower count
    sku = f"fewer-{uuid.uuid4().hex[:8]}"
    await pg.execute("INSERT INTO orders_hardened.inventory (sku, available) VALUES ($1, $2)", sku, CHUNK)
    await place_orders_once(pg, sku=sku)

    with run_worker(RELAY, env=env, log_dir=tmp_path / "refused") as relay:
        assert await wait_until(lambda: _exited(relay), timeout_s=30)
    log = (tmp_path / "refused" / "run.log").read_text()
    assert "PartitionCountMismatch: topic" in log
    assert "has 2 partitions but LAB_ORDERS_TOPIC_PARTITIONS=3" in log
    assert await count(pg, PUBLISHED, sku) == 0

    with run_worker(RELAY, env={**env, "LAB_ORDERS_TOPIC_PARTITIONS": "2"}, log_dir=tmp_path / "matching"):
        await wait_for(pg, PUBLISHED, sku, at_least=CHUNK)


async def _exited(relay: ProcessRecord) -> bool:
    return not processes.is_running(relay)


async def place_orders_once(pg: asyncpg.Connection, *, sku: str) -> None:
    await pg.fetch(PLACE_CHUNK, sku, CHUNK, PRICE_CENTS)


async def create_topic(settings: OrdersSettings, *, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(settings.orders_topic, partitions, replication_factor=1)])
    finally:
        await admin.close()
