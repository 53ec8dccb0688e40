"""The outbox relay: publishes committed ``outbox`` rows to Kafka, at least once, in commit order.

Each round claims a batch of unpublished rows with ``FOR UPDATE SKIP LOCKED`` (several relays never
take the same row), sends them keyed by aggregate id with the outbox id as the ``message_id``
header, waits for the broker's acknowledgement and only then marks them published, in the same
transaction. Killed between send and mark, the rows stay unpublished and are sent again; consumers
dedupe on ``message_id``.

Several relays run side by side, and one order's events still leave in commit order. ``SKIP
LOCKED`` alone would not keep it: relay A claims an order's first event, relay B skips that locked
row and claims the order's second one, and B's send can reach the partition first. So a relay
claims a row only while it holds the transaction-scoped advisory lock of the row's aggregate
(``pg_try_advisory_xact_lock``, taken in the claim itself, before the row lock): one relay at a
time owns an order, from the claim to the commit that marks its rows published, and the next owner
sees them published. The scan walks the unpublished rows in id order, so an owner that takes an
order's later row has taken its earlier ready rows in the same batch; rows of orders another relay
owns fail the try-lock and are passed over, so the second relay claims the next orders instead of
waiting. Considered and not chosen: fixed hash buckets per relay (a killed relay's buckets stall
until it comes back, and the relay count becomes configuration) and claiming whole aggregates in a
second statement (two round trips for the same guarantee). The cost: one lock-table entry per order
in a batch while it is in flight (``orders_relay_batch_size`` × relays must stay well below
PostgreSQL's ``max_locks_per_transaction`` × ``max_connections``, 6,400 by default).

Only rows whose writing transaction is older than every transaction still running are claimed
(``xid < pg_snapshot_xmin(pg_current_snapshot())``, watermill's rule): a transaction that commits
late cannot have its rows overtaken, and since rows are selected by ``published_at IS NULL`` rather
than by a cursor, none is ever skipped. ``LISTEN orders_outbox`` wakes the relay when a transaction
commits (after ``orders_relay_gather_ms``, so that one batch carries the commits of that window);
polling every ``orders_relay_poll_interval_s`` covers a lost notification, and the relay listens
again on a new connection once a restarted PostgreSQL has closed the old one. When the broker or
PostgreSQL is down the batch rolls back, the relay backs off exponentially and the rows wait; any
outage the core counts as one (a connection a dying server left half way included) is waited out,
never the end of the relay.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, field

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.core.problems import UNAVAILABLE_ERRORS
from services.core.resources import apply_schema, open_kafka_producer, open_postgres_pool, read_resource
from services.orders.events import ensure_topics, message_headers
from services.orders.settings import OrdersSettings, schema_for

logger = logging.getLogger(__name__)

CHANNEL = "orders_outbox"
# Namespace of the relay's per-aggregate advisory locks (the two-key form keeps them apart from the
# lab's other advisory locks, which use the one-key form).
AGGREGATE_LOCK_SPACE = 17_301
# The ready rows are sorted first and only then offered to the try-lock, one by one in id order,
# until the batch is full, so a backlog of any size costs at most a batch of locks. The CTE is the
# fence: in a plain WHERE or a subquery the planner evaluates the try-lock inside the scan, for every
# ready row when it sorts after a sequential scan. A row that another relay published after this
# statement's snapshot is re-checked on its newest version when locked (READ COMMITTED): it drops out.
CLAIM = f"""
WITH ready AS MATERIALIZED (
    SELECT id, aggregate_id FROM outbox
    WHERE published_at IS NULL AND xid < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY id
), owned AS (
    SELECT id FROM ready WHERE pg_try_advisory_xact_lock({AGGREGATE_LOCK_SPACE}, hashtext(aggregate_id))
    LIMIT $1
)
SELECT id, aggregate_id, event_type, payload::text AS payload FROM outbox
WHERE published_at IS NULL AND id IN (SELECT id FROM owned)
ORDER BY id
FOR UPDATE SKIP LOCKED
"""
MARK_PUBLISHED = "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])"
RELAY_ERRORS = (
    KafkaError,
    *UNAVAILABLE_ERRORS,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncio.TimeoutError,
)


@dataclass
class Backoff:
    """Exponential delay after consecutive failures, reset by a success."""

    initial_s: float
    max_s: float
    current_s: float = field(init=False, default=0.0)

    def next_delay(self) -> float:
        self.current_s = min(self.max_s, self.current_s * 2 if self.current_s else self.initial_s)
        return self.current_s

    def reset(self) -> None:
        self.current_s = 0.0


@dataclass
class OutboxRelay:
    pool: asyncpg.Pool
    producer: AIOKafkaProducer
    settings: OrdersSettings
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    listener: asyncpg.Connection | None = None

    async def publish_batch(self) -> int:
        """Publish one batch; the number of rows published (0 when none is ready)."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(CLAIM, self.settings.orders_relay_batch_size)
            if rows:
                await self._send_all(rows)
                await conn.execute(MARK_PUBLISHED, [row["id"] for row in rows])
        return len(rows)

    async def _send_all(self, rows: list[asyncpg.Record]) -> None:
        topic = self.settings.orders_topic
        pending = [
            await self.producer.send(
                topic,
                row["payload"].encode(),
                key=row["aggregate_id"].encode(),
                headers=message_headers(message_id=str(row["id"]), event_type=row["event_type"]),
            )
            for row in rows
        ]
        await asyncio.gather(*pending)

    async def run_forever(self) -> None:
        backoff = Backoff(
            self.settings.orders_relay_backoff_initial_s, self.settings.orders_relay_backoff_max_s
        )
        while True:
            try:
                published = await self.publish_batch()
            except RELAY_ERRORS as exc:
                delay = backoff.next_delay()
                logger.warning("relay_backoff error=%s delay_s=%.2f", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                if isinstance(exc, KafkaError):
                    await self._recreate_topics()
                continue
            backoff.reset()
            if published < self.settings.orders_relay_batch_size:
                await self._listen()
                await self._wait_for_work()

    async def _recreate_topics(self) -> None:
        """A broker that lost its storage (the embedded one keeps topics in memory) comes back
        without the topics: create them again, or the relay would retry into a topic that is not
        there. Best effort: a broker still away fails this as it failed the send."""
        with suppress(KafkaError, OSError):
            await ensure_topics(self.settings, [self.settings.orders_topic, self.settings.orders_dlq_topic])

    async def _wait_for_work(self) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=self.settings.orders_relay_poll_interval_s)
        if self.wake.is_set() and self.settings.orders_relay_gather_ms:
            # Under load every commit notifies: gather the window's commits into one batch.
            await asyncio.sleep(self.settings.orders_relay_gather_ms / 1000)
        # Cleared before the next claim, so a commit notified from here on is claimed or wakes us.
        self.wake.clear()

    def on_notify(self, *_: object) -> None:
        self.wake.set()

    async def _listen(self) -> None:
        """LISTEN on a connection of its own, outside the pool, and again on a new one once
        PostgreSQL closed it (a restart does): a relay listening on a dead connection is woken by
        polling alone. Best effort, since polling covers a missed notification; retried next round."""
        if self.listener is not None and not self.listener.is_closed():
            return
        await self.close_listener()
        with suppress(*RELAY_ERRORS):
            self.listener = await self._open_listener()
            self.wake.set()  # commits made while nobody listened are claimed now

    async def _open_listener(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(self.settings.postgres_url, timeout=self.settings.pg_command_timeout_s)
        try:
            await conn.add_listener(CHANNEL, self.on_notify)
        except BaseException:
            conn.terminate()
            raise
        return conn

    async def close_listener(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.terminate()


async def connect_producer(settings: OrdersSettings, stack: AsyncExitStack) -> AIOKafkaProducer:
    """A started producer, its topics created; while the broker is unreachable, back off and retry."""
    backoff = Backoff(settings.orders_relay_backoff_initial_s, settings.orders_relay_backoff_max_s)
    while True:
        try:
            await ensure_topics(settings, [settings.orders_topic, settings.orders_dlq_topic])
            return await stack.enter_async_context(open_kafka_producer(settings))
        except (KafkaError, OSError) as exc:
            delay = backoff.next_delay()
            logger.warning("relay_broker_unreachable error=%s delay_s=%.2f", type(exc).__name__, delay)
            await asyncio.sleep(delay)


async def run() -> None:
    """Worker entry point: relay the outbox of ``LAB_ORDERS_WORKERS_VARIANT`` (hardened) until cancelled."""
    settings = OrdersSettings()
    async with AsyncExitStack() as stack:
        pool = await stack.enter_async_context(
            open_postgres_pool(settings, schema=schema_for(settings.orders_workers_variant))
        )
        await apply_schema(pool, read_resource("services.orders", "schema.sql"))
        producer = await connect_producer(settings, stack)
        relay = OutboxRelay(pool=pool, producer=producer, settings=settings)
        stack.push_async_callback(relay.close_listener)
        logger.info(
            "relay_started topic=%s batch=%d", settings.orders_topic, settings.orders_relay_batch_size
        )
        await relay.run_forever()
