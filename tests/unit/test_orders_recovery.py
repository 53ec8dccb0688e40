"""How the relay and the consumers come back after a server they use lost its state: the relay
waits out every outage the core counts as one, and a consumer whose positions lie beyond its
partitions' ends reads them again from the beginning. Fakes stand in for the servers (no I/O)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import asyncpg
import pytest
from aiokafka import TopicPartition

from services.orders.consumers import InboxConsumer, notify_customer
from services.orders.relay import OutboxRelay
from services.orders.settings import OrdersSettings

SETTINGS = OrdersSettings(orders_relay_backoff_initial_s=0.001, orders_relay_poll_interval_s=0.001)


@dataclass
class RelayThroughAnOutage(OutboxRelay):
    """A relay whose first batch meets a connection a dying server left half way."""

    rounds: list[str] = field(default_factory=list)

    async def publish_batch(self) -> int:
        self.rounds.append("batch")
        if len(self.rounds) == 1:
            raise asyncpg.InternalClientError(
                "cannot switch to state 15; another operation (2) is in progress"
            )
        if len(self.rounds) == 3:
            raise asyncio.CancelledError  # the test has seen enough
        return 0

    async def _open_listener(self) -> asyncpg.Connection:
        raise ConnectionRefusedError("PostgreSQL is still starting")


async def test_the_relay_waits_out_a_connection_left_half_way_and_a_listener_it_cannot_open() -> None:
    relay = RelayThroughAnOutage(pool=None, producer=None, settings=SETTINGS)  # type: ignore[arg-type]
    with pytest.raises(asyncio.CancelledError):
        await relay.run_forever()
    assert relay.rounds == ["batch", "batch", "batch"]
    assert relay.listener is None  # listening again is tried on every round, never fatal


@dataclass
class RestartedBroker:
    """A consumer's view of a broker that came back with new, shorter logs than its positions."""

    positions: dict[TopicPartition, int]
    ends: dict[TopicPartition, int]
    rewound: list[TopicPartition] = field(default_factory=list)

    def assignment(self) -> set[TopicPartition]:
        return set(self.positions)

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.ends[tp] for tp in partitions}

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self.rewound += partitions


@dataclass
class Inbox:
    recorded: set[str]

    async def fetchval(self, query: str, consumer: str, message_id: str) -> bool:
        return message_id in self.recorded


async def test_a_consumer_reads_again_the_partitions_whose_position_belongs_to_another_log(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mine, foreign, beyond, fresh = (TopicPartition("orders.events", p) for p in range(4))
    broker = RestartedBroker(
        positions={mine: 3, foreign: 7, beyond: 97, fresh: 0},
        ends={mine: 5, foreign: 9, beyond: 12, fresh: 4},
    )

    async def messages_before(
        settings: OrdersSettings, positions: dict[TopicPartition, int]
    ) -> dict[TopicPartition, str]:
        assert set(positions) == {mine, foreign}  # beyond the end, or at the start, nothing to read
        return {mine: "41", foreign: "977"}

    monkeypatch.setattr("services.orders.consumers.messages_before", messages_before)
    inbox = Inbox(recorded={"41"})  # "977" came after the restart: this consumer never read it
    consumer = InboxConsumer(
        name="payments", handler=notify_customer, pool=inbox, dlq=None, settings=SETTINGS
    )  # type: ignore[arg-type]
    assert await consumer._rewind_stale_positions(broker)  # type: ignore[arg-type]
    assert sorted(broker.rewound) == [foreign, beyond]
