"""Idempotent consumers of ``OrderPlaced``: payments and notifications.

Each runs in a consumer group and commits offsets only after a batch is processed, so a crash means
redelivery, never loss; several instances of one group share the partitions, and the inbox makes the
redeliveries of a rebalance (a partition's uncommitted messages handed to the other instance)
harmless. Within a batch, different orders are handled concurrently and one order's events in
partition order. Each handler writes ``(consumer, message_id)`` into the ``inbox`` table in
its own transaction, together with its effect: a redelivered message finds its row and is skipped
(counted in ``inbox.deliveries``). Payments charges the gateway before that transaction, never
inside it (a transaction held open across a call to another service holds a pooled connection,
and its row locks, for as long as that service takes), with the order id as the idempotency key:
a charge repeated after a failed transaction or a redelivery is replayed by the gateway, not made
twice. A message that fails ``orders_consumer_max_attempts`` times goes to ``orders.events.dlq``
with the reason; while the consumer's own PostgreSQL is away, nothing is dead-lettered: the message
waits for it (a killed database would otherwise send every message in flight to the DLQ, unpaid).

After every rebalance each consumer checks that its positions belong to the logs it reads. The
embedded broker keeps topics and offsets in memory: restarted, it comes back empty, and a commit of
the old offsets still in flight can reach it once the topics exist again. The group then resumes at
positions of a log that is gone: beyond the new log's end (Kafka would answer ``OFFSET_OUT_OF_RANGE``
and ``auto_offset_reset`` would apply; the embedded broker waits for the log to grow that far), or
inside it, past new events nobody read. A position is stale when it lies beyond its log's end or when
the message just before it is not in this consumer's inbox; a stale partition is read again from its
beginning, and the inbox absorbs what comes twice. The check costs one read per partition and
rebalance.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import KafkaError

from services.core.problems import UNAVAILABLE_ERRORS
from services.core.resources import apply_schema, open_kafka_producer, open_postgres_pool, read_resource
from services.orders import store
from services.orders.clients import PaymentGatewayClient, open_http_client
from services.orders.events import (
    EVENT_TYPE_HEADER,
    MESSAGE_ID_HEADER,
    ORDER_PLACED,
    OrderPlaced,
    ensure_topics,
    header_value,
)
from services.orders.settings import OrdersSettings, schema_for

logger = logging.getLogger(__name__)

ALREADY_RECORDED = "SELECT EXISTS (SELECT 1 FROM inbox WHERE consumer = $1 AND message_id = $2)"
RECORD_DELIVERY = """
INSERT INTO inbox (consumer, message_id) VALUES ($1, $2)
ON CONFLICT (consumer, message_id) DO UPDATE SET deliveries = inbox.deliveries + 1
RETURNING deliveries
"""
INSERT_NOTIFICATION = "INSERT INTO notifications (order_id, channel) VALUES ($1, $2) ON CONFLICT DO NOTHING"
STORE_WAIT_MAX_S = 2.0  # the longest pause between two tries while the store is away
FIRST_RECORD_POLLS = 10  # of 200 ms each: a partition silent for two seconds tells nothing


@dataclass(frozen=True)
class Handler:
    """What a consumer does with an event. ``call_out``, if any, runs first and outside any
    transaction, and must be safe to repeat: it runs again on every retry, and when two deliveries of
    one message race; ``record`` then writes the effect in the inbox transaction, given what
    ``call_out`` returned."""

    record: Callable[[asyncpg.Connection, OrderPlaced, Any], Awaitable[None]]
    call_out: Callable[[OrderPlaced], Awaitable[Any]] | None = None


async def first_delivery(conn: asyncpg.Connection, *, consumer: str, message_id: str) -> bool:
    """Record the delivery in the inbox; false when this consumer already processed the message."""
    deliveries: int = await conn.fetchval(RECORD_DELIVERY, consumer, message_id)
    if deliveries > 1:
        logger.info("redelivery_absorbed consumer=%s message_id=%s", consumer, message_id)
    return deliveries == 1


def charge_order(gateway: PaymentGatewayClient) -> Handler:
    async def charge(event: OrderPlaced) -> str:
        return await gateway.charge(
            order_id=event.order_id,
            amount_cents=event.amount_cents,
            currency=event.currency,
            idempotency_key=event.order_id,
        )

    async def mark_paid(conn: asyncpg.Connection, event: OrderPlaced, charge_id: str) -> None:
        await store.mark_paid(conn, order_id=UUID(event.order_id), charge_id=charge_id)

    return Handler(call_out=charge, record=mark_paid)


async def _record_notification(conn: asyncpg.Connection, event: OrderPlaced, _: None) -> None:
    await conn.execute(INSERT_NOTIFICATION, UUID(event.order_id), "email")


notify_customer = Handler(record=_record_notification)


@dataclass
class InboxConsumer:
    """Runs one handler over the topic with inbox dedupe, retries and a dead-letter topic."""

    name: str
    handler: Handler
    pool: asyncpg.Pool
    dlq: AIOKafkaProducer
    settings: OrdersSettings

    async def process(self, record: ConsumerRecord) -> None:
        """Handle one message: retried while our own database is away, however long (the message is
        not at fault, and its offset stays uncommitted); any other failure is retried
        ``orders_consumer_max_attempts`` times, then dead-lettered."""
        if header_value(record.headers, EVENT_TYPE_HEADER) not in (None, ORDER_PLACED):
            return  # another event of the order's stream: nothing these consumers act on
        message_id = _message_id(record)
        attempt, outage = 0, 0
        while True:
            try:
                await self._handle_once(record, message_id)
                return
            except UNAVAILABLE_ERRORS as exc:  # the consumer's own PostgreSQL is away
                outage += 1
                logger.warning("consume_waiting_for_store consumer=%s error=%r", self.name, exc)
                await asyncio.sleep(
                    min(self.settings.orders_consumer_retry_backoff_s * outage, STORE_WAIT_MAX_S)
                )
            except Exception as exc:  # the message, or a service it needs, failed: retried, then set aside
                attempt += 1
                reason = f"{type(exc).__name__}: {exc}"[:500]
                logger.warning("consume_failed consumer=%s attempt=%d error=%s", self.name, attempt, reason)
                if attempt >= self.settings.orders_consumer_max_attempts:
                    await self._dead_letter(record, message_id=message_id, reason=reason)
                    return
                await asyncio.sleep(self.settings.orders_consumer_retry_backoff_s * attempt)

    async def _handle_once(self, record: ConsumerRecord, message_id: str) -> None:
        event = OrderPlaced.from_payload(json.loads(record.value))
        outcome = await self._call_out(event, message_id)
        async with self.pool.acquire() as conn, conn.transaction():
            if await first_delivery(conn, consumer=self.name, message_id=message_id):
                await self.handler.record(conn, event, outcome)

    async def _call_out(self, event: OrderPlaced, message_id: str) -> Any:
        """The handler's call to another service, unless the inbox already holds the message: a
        redelivery of a processed message must not depend on that service being up. The inbox
        transaction stays the authority; two deliveries racing past this check both call out, which
        ``call_out`` is safe to do."""
        if self.handler.call_out is None:
            return None
        if await self.pool.fetchval(ALREADY_RECORDED, self.name, message_id):
            return None  # the transaction finds the row, counts the redelivery, skips ``record``
        return await self.handler.call_out(event)

    async def _dead_letter(self, record: ConsumerRecord, *, message_id: str, reason: str) -> None:
        headers = [
            (MESSAGE_ID_HEADER, message_id.encode()),
            ("consumer", self.name.encode()),
            ("reason", reason.encode()),
        ]
        await self.dlq.send_and_wait(
            self.settings.orders_dlq_topic, record.value, key=record.key, headers=headers
        )
        logger.error("dead_lettered consumer=%s message_id=%s reason=%s", self.name, message_id, reason)

    async def consume(self, consumer: AIOKafkaConsumer, rebalances: Rebalances) -> None:
        """Process batch after batch; commit offsets only once the whole batch is handled."""
        while True:
            if rebalances.unchecked:
                rebalances.unchecked = not await self._rewind_stale_positions(consumer)
            batches = await consumer.getmany(
                timeout_ms=500, max_records=self.settings.orders_consumer_max_records
            )
            records = [record for batch in batches.values() for record in batch]
            if not records:
                continue
            await asyncio.gather(*(self._process_in_order(same) for same in by_key(records).values()))
            await asyncio.sleep(self.settings.orders_consumer_commit_delay_s)
            await self._commit(consumer)

    async def _process_in_order(self, records: list[ConsumerRecord]) -> None:
        """One order's events one after the other, as the partition holds them (commit order)."""
        for record in records:
            await self.process(record)

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        """Commit what was handled. A commit the broker refuses (it restarted and lost its topics and
        groups) is not fatal: the messages come again and the inbox absorbs them."""
        try:
            # Bounded: for partitions the broker no longer knows, the client retries the commit forever.
            async with asyncio.timeout(self.settings.kafka_request_timeout_ms / 1000):
                await consumer.commit()
        except (KafkaError, TimeoutError) as exc:
            logger.warning("commit_failed consumer=%s error=%r", self.name, exc)
            with suppress(KafkaError, OSError):
                await ensure_topics(
                    self.settings, [self.settings.orders_topic, self.settings.orders_dlq_topic]
                )

    async def _rewind_stale_positions(self, consumer: AIOKafkaConsumer) -> bool:
        """Read again from its beginning each assigned partition whose position was committed in a
        log that is gone (see the module's docstring); false when the broker or the inbox could not
        tell (checked again before the next read)."""
        try:
            async with asyncio.timeout(self.settings.kafka_request_timeout_ms / 1000):
                stale = await self._stale_partitions(consumer)
                if stale:
                    await consumer.seek_to_beginning(*stale)
        except (KafkaError, TimeoutError, *UNAVAILABLE_ERRORS) as exc:
            logger.warning("position_check_failed consumer=%s error=%r", self.name, exc)
            return False
        for tp in stale:
            logger.warning("position_stale consumer=%s partition=%d", self.name, tp.partition)
        return True

    async def _stale_partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        """A position is stale when it lies beyond its log's end, or when the message just before it
        is one this consumer never recorded: the offset was committed in another log."""
        partitions = list(consumer.assignment())
        ends = await consumer.end_offsets(partitions) if partitions else {}
        positions = {tp: await consumer.position(tp) for tp in partitions}
        readable = {tp: at for tp, at in positions.items() if 0 < at <= ends[tp]}
        before = await messages_before(self.settings, readable)
        return [
            tp
            for tp in partitions
            if positions[tp] > ends[tp]
            or (tp in before and not await self.pool.fetchval(ALREADY_RECORDED, self.name, before[tp]))
        ]


async def messages_before(
    settings: OrdersSettings, positions: dict[TopicPartition, int]
) -> dict[TopicPartition, str]:
    """The message id of the record just before each position, where the log still has it (a record
    removed by retention tells nothing, and is left out), read outside the consumer group."""
    if not positions:
        return {}
    reader = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",  # a record retention removed: the log's first, which tells nothing
        request_timeout_ms=settings.kafka_request_timeout_ms,
    )
    await reader.start()
    try:
        reader.assign(list(positions))
        for tp, position in positions.items():
            reader.seek(tp, position - 1)
        return await _first_records(reader, positions)
    finally:
        await reader.stop()


async def _first_records(
    reader: AIOKafkaConsumer, positions: dict[TopicPartition, int]
) -> dict[TopicPartition, str]:
    found: dict[TopicPartition, str] = {}
    waiting = set(positions)
    for _ in range(FIRST_RECORD_POLLS):
        if not waiting:
            break
        batches = await reader.getmany(*waiting, timeout_ms=200, max_records=len(waiting))
        for tp, records in batches.items():
            waiting.discard(tp)
            if records and records[0].offset == positions[tp] - 1:
                found[tp] = _message_id(records[0])
    return found


class Rebalances(ConsumerRebalanceListener):  # type: ignore[misc]
    """Notes each new assignment, so that the consumer checks its positions before reading on."""

    def __init__(self) -> None:
        self.unchecked = False

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.unchecked = True


def by_key(records: list[ConsumerRecord]) -> dict[bytes | None, list[ConsumerRecord]]:
    """A batch split by message key (the aggregate id), each key's records in offset order: the
    batch runs concurrently across orders and sequentially within one."""
    groups: dict[bytes | None, list[ConsumerRecord]] = {}
    for record in records:
        groups.setdefault(record.key, []).append(record)
    return groups


def _message_id(record: ConsumerRecord) -> str:
    return (
        header_value(record.headers, MESSAGE_ID_HEADER)
        or f"{record.topic}:{record.partition}:{record.offset}"
    )


def open_consumer(settings: OrdersSettings, *, name: str, rebalances: Rebalances) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"{settings.orders_consumer_group_prefix}-{name}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.orders_kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.orders_kafka_heartbeat_interval_ms,
        request_timeout_ms=settings.kafka_request_timeout_ms,
    )
    consumer.subscribe([settings.orders_topic], listener=rebalances)
    return consumer


async def run_consumer(
    name: str, make_handler: Callable[[AsyncExitStack, OrdersSettings], Awaitable[Handler]]
) -> None:
    settings = OrdersSettings()
    async with AsyncExitStack() as stack:
        pool = await stack.enter_async_context(
            open_postgres_pool(settings, schema=schema_for(settings.orders_workers_variant))
        )
        await apply_schema(pool, read_resource("services.orders", "schema.sql"))
        await ensure_topics(settings, [settings.orders_topic, settings.orders_dlq_topic])
        dlq = await stack.enter_async_context(open_kafka_producer(settings))
        handler = await make_handler(stack, settings)
        rebalances = Rebalances()
        consumer = open_consumer(settings, name=name, rebalances=rebalances)
        await consumer.start()
        stack.push_async_callback(consumer.stop)
        logger.info("consumer_started name=%s topic=%s", name, settings.orders_topic)
        worker = InboxConsumer(name=name, handler=handler, pool=pool, dlq=dlq, settings=settings)
        await worker.consume(consumer, rebalances)


async def _payments_handler(stack: AsyncExitStack, settings: OrdersSettings) -> Handler:
    http = await stack.enter_async_context(open_http_client(settings))
    return charge_order(PaymentGatewayClient(http=http, base_url=settings.orders_payment_gateway_url))


async def _notifications_handler(stack: AsyncExitStack, settings: OrdersSettings) -> Handler:
    return notify_customer


async def run_payments() -> None:
    """Worker entry point: charge every placed order exactly once."""
    await run_consumer("payments", _payments_handler)


async def run_notifications() -> None:
    """Worker entry point: one notification per placed order."""
    await run_consumer("notifications", _notifications_handler)
