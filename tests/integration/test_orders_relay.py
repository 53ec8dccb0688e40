"""The outbox relay: late-committing transactions are never skipped, a killed relay loses nothing
and the duplicates it causes are absorbed by the consumers' inbox."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from pathlib import Path

import asyncpg
import pytest

from services.lab import processes
from services.lab.infra import InfraEndpoints
from services.orders.audit import read_topic
from services.orders.settings import OrdersSettings
from tests.support.orders import apply_orders_schema, fresh_topics, run_worker, settings_for, wait_until

pytestmark = pytest.mark.integration

RELAY = "services.orders.relay:run"
NOTIFICATIONS = "services.orders.consumers:run_notifications"
INSERT_EVENT = (
    "INSERT INTO orders_hardened.outbox (aggregate_id, event_type, payload) VALUES ($1, 'OrderPlaced', $2)"
)


@pytest.fixture
def topic_env(infra: InfraEndpoints) -> dict[str, str]:
    return {
        **infra.as_env(),
        **fresh_topics(),
        "LAB_ORDERS_RELAY_POLL_INTERVAL_S": "0.2",
    }


@pytest.fixture
async def clean_outbox(infra: InfraEndpoints, pg: asyncpg.Connection) -> None:
    """An empty outbox, so the relay only has this test's rows to publish."""
    await apply_orders_schema(OrdersSettings(postgres_url=infra.postgres_url))
    await pg.execute("TRUNCATE orders_hardened.outbox, orders_hardened.inbox, orders_hardened.notifications")


async def published_ids(env: dict[str, str]) -> list[str]:
    return [
        str(message["order_id"]) for message in await read_topic(settings_for(env), env["LAB_ORDERS_TOPIC"])
    ]


@pytest.mark.usefixtures("clean_outbox")
async def test_transactions_committing_in_reverse_order_are_all_delivered_in_commit_order(
    infra: InfraEndpoints, topic_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**topic_env, "LAB_ORDERS_TOPIC_PARTITIONS": "1"}
    connections = [await asyncpg.connect(infra.postgres_url) for _ in range(4)]
    transactions = [conn.transaction() for conn in connections]
    try:
        with run_worker(RELAY, env=env, log_dir=tmp_path):
            for number, (conn, tx) in enumerate(zip(connections, transactions, strict=True), start=1):
                await tx.start()
                await conn.execute(INSERT_EVENT, f"a{number}", json.dumps({"order_id": f"a{number}"}))
            await transactions[3].commit()
            await transactions[2].commit()
            await transactions[1].rollback()
            await asyncio.sleep(1.5)  # the window in which a cursor-based relay would skip a1
            assert await published_ids(env) == []  # a1's transaction is older and still open

            await transactions[0].commit()

            assert await wait_until(lambda: _count_is(env, 3), timeout_s=20)
            assert await published_ids(env) == ["a1", "a3", "a4"]
    finally:
        for conn in connections:
            await conn.close()


async def _count_is(env: dict[str, str], expected: int) -> bool:
    return len(await published_ids(env)) >= expected


EVENTS = 10_000
INSERT_MANY = """
INSERT INTO orders_hardened.outbox (aggregate_id, event_type, payload)
SELECT id::text, 'OrderPlaced', jsonb_build_object(
    'order_id', id::text, 'sku', $1::text, 'customer_id', 'c', 'quantity', 1, 'amount_cents', 100,
    'currency', 'EUR')
FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, $2)) AS events
"""


@pytest.mark.usefixtures("clean_outbox")
async def test_a_relay_killed_mid_stream_loses_nothing_and_consumers_absorb_the_duplicates(
    topic_env: dict[str, str], pg: asyncpg.Connection, tmp_path: Path
) -> None:
    env = {**topic_env, "LAB_ORDERS_RELAY_BATCH_SIZE": "250"}
    sku = f"relay-{uuid.uuid4().hex[:8]}"
    for _ in range(EVENTS // 1000):
        await pg.execute(INSERT_MANY, sku, 1000)

    with run_worker(RELAY, env=env, log_dir=tmp_path / "first") as relay:
        assert await wait_until(lambda: _published_rows_at_least(pg, 1), timeout_s=30, interval_s=0.02)
        processes.send_signal(relay, signal.SIGKILL)
    published_before_kill = await _published_rows(pg)

    with (
        run_worker(RELAY, env=env, log_dir=tmp_path / "second"),
        run_worker(NOTIFICATIONS, env=env, log_dir=tmp_path),
    ):
        assert await wait_until(lambda: _published_rows_at_least(pg, EVENTS), timeout_s=90, interval_s=0.5)
        delivered = await published_ids(env)
        assert await wait_until(lambda: _notified_at_least(pg, EVENTS), timeout_s=90, interval_s=0.5)
        await asyncio.sleep(1)  # let the last redeliveries of the stream land in the inbox

    assert 0 < published_before_kill < EVENTS
    assert len(set(delivered)) == EVENTS
    assert await pg.fetchval("SELECT count(*) FROM orders_hardened.notifications") == EVENTS
    absorbed = await pg.fetchval("SELECT coalesce(sum(deliveries - 1), 0) FROM orders_hardened.inbox")
    assert absorbed == len(delivered) - EVENTS


async def _published_rows(pg: asyncpg.Connection) -> int:
    return int(
        await pg.fetchval("SELECT count(*) FROM orders_hardened.outbox WHERE published_at IS NOT NULL")
    )


async def _published_rows_at_least(pg: asyncpg.Connection, count: int) -> bool:
    return await _published_rows(pg) >= count


async def _notified_at_least(pg: asyncpg.Connection, count: int) -> bool:
    return int(await pg.fetchval("SELECT count(*) FROM orders_hardened.notifications")) >= count
