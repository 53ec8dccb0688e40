"""The ``OrderPlaced`` event as it travels through the outbox and Kafka, and topic set-up."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from services.orders.ports import OrderRecord
from services.orders.settings import OrdersSettings

logger = logging.getLogger(__name__)

TopicOffsets = dict[str, dict[int, int]]
"""Offsets per topic, then per partition."""

ORDER_PLACED = "OrderPlaced"
MESSAGE_ID_HEADER = "message_id"
EVENT_TYPE_HEADER = "event_type"


@dataclass(frozen=True)
class OrderPlaced:
    order_id: str
    sku: str
    customer_id: str
    quantity: int
    amount_cents: int
    currency: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def of(cls, order: OrderRecord, *, currency: str) -> OrderPlaced:
        """The event of a committed order: what both variants publish, each in its own way."""
        return cls(
            order_id=str(order.order_id),
            sku=order.sku,
            customer_id=order.customer_id,
            quantity=order.quantity,
            amount_cents=order.amount_cents,
            currency=currency,
        )

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> OrderPlaced:
        return cls(**{name: payload[name] for name in cls.__dataclass_fields__})


def message_headers(*, message_id: str, event_type: str = ORDER_PLACED) -> list[tuple[str, bytes]]:
    return [(MESSAGE_ID_HEADER, message_id.encode()), (EVENT_TYPE_HEADER, event_type.encode())]


def header_value(headers: Any, name: str) -> str | None:
    for key, value in headers or ():
        if key == name:
            return bytes(value).decode()
    return None


class PartitionCountMismatch(RuntimeError):
    """An existing topic has another partition count than ``LAB_ORDERS_TOPIC_PARTITIONS``. Kafka
    cannot remove partitions, and adding some moves keys to other partitions, so that one order's
    new events could overtake its old ones: the process refuses to start rather than change the
    topic. Nothing is lost: unpublished events wait in the outbox, published ones in the topic."""

    def __init__(self, *, topic: str, found: int, wanted: int) -> None:
        super().__init__(
            f"topic {topic!r} has {found} partitions but LAB_ORDERS_TOPIC_PARTITIONS={wanted}: "
            f"a topic's partition count cannot be lowered, and raising it would reorder events of one "
            f"order; set LAB_ORDERS_TOPIC_PARTITIONS={found}, or move to a new topic (LAB_ORDERS_TOPIC) "
            f"once this one is drained"
        )


async def ensure_topics(settings: OrdersSettings, names: list[str]) -> None:
    """Create the topics a process uses (Tansu and a fresh Kafka have none); existing ones stay, and
    must have ``orders_topic_partitions`` partitions (else :class:`PartitionCountMismatch`)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=settings.kafka_request_timeout_ms
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        # Checked first: a refused start must leave the broker as it found it.
        present = [name for name in names if name in existing]
        if present:
            await _check_partitions(admin, present, wanted=settings.orders_topic_partitions)
        missing = [name for name in names if name not in existing]
        if missing:
            await _create_topics(admin, missing, partitions=settings.orders_topic_partitions)
    finally:
        await admin.close()


async def _check_partitions(admin: AIOKafkaAdminClient, names: list[str], *, wanted: int) -> None:
    for topic in await admin.describe_topics(names):
        found = len(topic["partitions"])
        if found != wanted:
            raise PartitionCountMismatch(topic=topic["topic"], found=found, wanted=wanted)


async def _create_topics(admin: AIOKafkaAdminClient, names: list[str], *, partitions: int) -> None:
    topics = [NewTopic(name=name, num_partitions=partitions, replication_factor=1) for name in names]
    try:
        await admin.create_topics(topics)
        logger.info("topics_created names=%s partitions=%d", ",".join(names), partitions)
    except TopicAlreadyExistsError:
        logger.info("topics_exist names=%s", ",".join(names))


async def topic_end_offsets(settings: OrdersSettings, topics: list[str]) -> TopicOffsets | None:
    """Where each of ``topics`` that exists ends now, per partition: a sale records this when it
    opens, so its audit reads only what came after. ``None`` when the broker does not answer within
    ``kafka_request_timeout_ms`` (the audit then reads the topics from their beginning)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        request_timeout_ms=settings.kafka_request_timeout_ms,
    )
    try:
        async with asyncio.timeout(settings.kafka_request_timeout_ms / 1000):
            await consumer.start()
            return await _end_offsets(consumer, topics)
    except (KafkaError, OSError, TimeoutError) as exc:
        logger.warning("topic_offsets_unavailable topics=%s error=%r", ",".join(topics), exc)
        return None
    finally:
        await consumer.stop()


async def _end_offsets(consumer: AIOKafkaConsumer, topics: list[str]) -> TopicOffsets:
    existing = await consumer.topics()
    offsets: TopicOffsets = {}
    for topic in (name for name in topics if name in existing):
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = await consumer.end_offsets(partitions) if partitions else {}
        offsets[topic] = {tp.partition: offset for tp, offset in ends.items()}
    return offsets
