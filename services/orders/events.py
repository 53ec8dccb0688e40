"""The ``OrderPlaced`` event as it travels through the outbox and Kafka, and topic set-up."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from services.orders.settings import OrdersSettings

logger = logging.getLogger(__name__)

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
    def from_payload(cls, payload: dict[str, Any]) -> OrderPlaced:
        return cls(**{name: payload[name] for name in cls.__dataclass_fields__})


def message_headers(*, message_id: str, event_type: str = ORDER_PLACED) -> list[tuple[str, bytes]]:
    return [(MESSAGE_ID_HEADER, message_id.encode()), (EVENT_TYPE_HEADER, event_type.encode())]


def header_value(headers: Any, name: str) -> str | None:
    for key, value in headers or ():
        if key == name:
            return bytes(value).decode()
    return None


async def ensure_topics(settings: OrdersSettings, names: list[str]) -> None:
    """Create the topics a process uses (Tansu and a fresh Kafka have none); existing ones stay."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=settings.kafka_request_timeout_ms
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in names if name not in existing]
        if missing:
            await _create_topics(admin, missing, partitions=settings.orders_topic_partitions)
    finally:
        await admin.close()


async def _create_topics(admin: AIOKafkaAdminClient, names: list[str], *, partitions: int) -> None:
    topics = [NewTopic(name=name, num_partitions=partitions, replication_factor=1) for name in names]
    try:
        await admin.create_topics(topics)
        logger.info("topics_created names=%s partitions=%d", ",".join(names), partitions)
    except TopicAlreadyExistsError:
        logger.info("topics_exist names=%s", ",".join(names))
