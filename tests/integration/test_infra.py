"""The servers the infra layer provides answer real clients: asyncpg, redis-py and aiokafka."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.core.resources import open_kafka_producer, open_postgres_pool, open_redis
from services.core.settings import CoreSettings
from services.lab.infra import InfraEndpoints

pytestmark = pytest.mark.integration


def _settings(infra: InfraEndpoints) -> CoreSettings:
    return CoreSettings(
        postgres_url=infra.postgres_url, redis_url=infra.redis_url, kafka_bootstrap=infra.kafka_bootstrap
    )


async def test_postgres_answers_a_query_through_the_pool(infra: InfraEndpoints, unique_id: str) -> None:
    async with open_postgres_pool(_settings(infra)) as pool, pool.acquire() as conn:
        table = f"probe_{unique_id}"
        await conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, note text)")
        await conn.executemany(f"INSERT INTO {table} VALUES ($1, $2)", [(1, "a"), (2, "b")])
        assert await conn.fetchval(f"SELECT string_agg(note, ',' ORDER BY id) FROM {table}") == "a,b"
        version = await conn.fetchval("SHOW server_version_num")
        await conn.execute(f"DROP TABLE {table}")
    assert int(version) >= 150000


async def test_postgres_rejects_bad_sql_with_a_typed_error(pg: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.UndefinedTableError):
        await pg.fetch("SELECT * FROM no_such_table")


async def test_redis_round_trip(infra: InfraEndpoints, redis_client: aioredis.Redis, unique_id: str) -> None:
    async with open_redis(_settings(infra)) as client:
        await client.set(f"k:{unique_id}", "v", ex=60)
        assert await client.get(f"k:{unique_id}") == b"v"
        assert 0 < await client.ttl(f"k:{unique_id}") <= 60
        assert await client.incr(f"n:{unique_id}") == 1


async def _create_topic(bootstrap: str, topic: str, *, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


# Short sessions: a member that left is forgotten quickly, so the second member joins fast.
GROUP_TIMEOUTS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}


async def _consume(consumer: AIOKafkaConsumer, *, count: int, timeout_s: float) -> list[bytes]:
    received: list[bytes] = []
    async with asyncio.timeout(timeout_s):
        while len(received) < count:
            batches = await consumer.getmany(timeout_ms=500)
            received += [message.value for batch in batches.values() for message in batch]
    return received


async def test_kafka_produce_consume_with_a_group_and_committed_offsets(
    infra: InfraEndpoints, unique_id: str
) -> None:
    topic, group = f"probe-{unique_id}", f"group-{unique_id}"
    await _create_topic(infra.kafka_bootstrap, topic, partitions=1)
    async with open_kafka_producer(_settings(infra)) as producer:
        for n in range(10):
            await producer.send_and_wait(topic, f"m{n}".encode(), key=b"same-key")

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=infra.kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **GROUP_TIMEOUTS,
    )
    await consumer.start()
    try:
        received = await _consume(consumer, count=10, timeout_s=60)
        await consumer.commit()
        committed = await consumer.committed(TopicPartition(topic, 0))
    finally:
        await consumer.stop()

    assert received == [f"m{n}".encode() for n in range(10)]  # one key: one partition, in order
    assert committed == 10

    # A new member of the same group resumes after the committed offset.
    async with open_kafka_producer(_settings(infra)) as producer:
        await producer.send_and_wait(topic, b"after-commit", key=b"same-key")
    resumed = AIOKafkaConsumer(
        topic,
        bootstrap_servers=infra.kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        **GROUP_TIMEOUTS,
    )
    await resumed.start()
    try:
        assert await _consume(resumed, count=1, timeout_s=60) == [b"after-commit"]
    finally:
        await resumed.stop()
