"""Lifespan helpers for the three kinds of infrastructure, and the health checks that go with them.

Each helper is an async context manager: the app's lifespan enters the ones its design needs on an
``AsyncExitStack`` and everything is closed in reverse order on shutdown. Timeouts and pool sizes
come from :class:`~services.core.settings.CoreSettings`.
"""

from __future__ import annotations

import importlib.resources
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Annotated, Protocol, Self

import asyncpg
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from fastapi import Depends, Request
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException

from services.core.autopipeline import AutoPipeline
from services.core.cluster import ClusterAutoPipeline, RedisClient, cluster_client
from services.core.lua import RedisCommands
from services.core.settings import CoreSettings

logger = logging.getLogger(__name__)


class CommandPipeline(RedisCommands, Protocol):
    """Where a request's hot-path commands go: an :class:`AutoPipeline` (multiplexed on one
    connection) on a single server, :class:`ClusterAutoPipeline` on a cluster."""

    async def connect(self) -> None: ...

    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


HealthCheck = Callable[[], Awaitable[None]]
"""An awaitable that returns when a dependency answers and raises when it does not."""


async def app_pool(request: Request) -> asyncpg.Pool:
    """The pool the app's lifespan stored in ``app.state.pool``, as a FastAPI dependency.

    ``async`` on purpose: FastAPI runs a plain ``def`` dependency in a worker thread, a thread
    hand-off (and a wait for one of the pool's 40 threads under a spike) for an attribute read.
    """
    pool: asyncpg.Pool = request.app.state.pool
    return pool


PoolDep = Annotated[asyncpg.Pool, Depends(app_pool)]


@asynccontextmanager
async def open_postgres_pool(
    settings: CoreSettings, *, schema: str | None = None
) -> AsyncIterator[asyncpg.Pool]:
    """A connection pool; with ``schema``, every connection works in that PostgreSQL schema.

    Naive and hardened variants share one server but never each other's rows: each gets its own
    schema (``shortener_naive``, ``shortener_hardened``), created here when missing.
    """
    if schema is not None:
        await _ensure_schema(settings.postgres_url, schema)
    pool = await asyncpg.create_pool(
        settings.postgres_url,
        min_size=settings.pg_pool_min_size,
        max_size=settings.pg_pool_max_size,
        command_timeout=settings.pg_command_timeout_s,
        server_settings={"search_path": schema} if schema else None,
    )
    logger.info("postgres_pool_opened schema=%s max_size=%d", schema, settings.pg_pool_max_size)
    try:
        yield pool
    finally:
        await pool.close()


async def _ensure_schema(url: str, schema: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        # Concurrent first starts (several uvicorn workers) may race; the lock makes it one at a time.
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", schema)
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    finally:
        await conn.close()


@asynccontextmanager
async def open_redis(settings: CoreSettings) -> AsyncIterator[RedisClient]:
    client: RedisClient
    if settings.redis_mode == "cluster":
        client = cluster_client(
            settings.redis_url,
            timeout_s=settings.redis_socket_timeout_s,
            max_connections=settings.redis_max_connections,
            retries=3,  # redis-py's default: after a node failed, ask again on the refreshed slot map
        )
        await _load_slot_map(client)
    else:
        client = aioredis.Redis.from_url(
            settings.redis_url,
            max_connections=settings.redis_max_connections,
            socket_timeout=settings.redis_socket_timeout_s,
            socket_connect_timeout=settings.redis_socket_timeout_s,
        )
    try:
        yield client
    finally:
        await client.aclose()


@asynccontextmanager
async def open_bounded_redis(settings: CoreSettings, *, budget_s: float) -> AsyncIterator[RedisClient]:
    """A client for Redis on a request's path where a slow answer is as bad as none (a rate limiter,
    a sold-out gate): every wait is bounded by ``budget_s``, the connect, the read and the wait for
    a pooled connection alike, and nothing is retried (a retry would spend the budget twice).
    On a cluster a node's pool does not wait for a free connection: past its size a command fails
    at once, which the budget allows."""
    if settings.redis_mode == "cluster":
        cluster = cluster_client(
            settings.redis_url, timeout_s=budget_s, max_connections=settings.redis_max_connections, retries=0
        )
        try:
            yield cluster
        finally:
            await cluster.aclose()
        return
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=budget_s,
        socket_timeout=budget_s,
        socket_connect_timeout=budget_s,
        retry=Retry(NoBackoff(), 0),
    )
    client = aioredis.Redis(connection_pool=pool)
    try:
        yield client
    finally:
        await client.aclose()
        await pool.aclose()


async def _load_slot_map(client: RedisCluster) -> None:
    """Load the slot map at start-up: redis-py's cluster pub/sub looks a channel's node up in it
    without loading it first (a KeyError, not a RedisError, on a fresh client). A cluster that is
    down does not stop the service from starting; the first command loads the map then."""
    try:
        await client.initialize()
    except (aioredis.RedisError, RedisClusterException) as exc:
        logger.warning("redis_cluster_unavailable_at_start error=%r", exc)


def command_pipeline(settings: CoreSettings, *, timeout_s: float) -> CommandPipeline:
    """The hot path's commands, each answered within ``timeout_s``: auto-pipelined on one
    connection to a single server, or on one connection per primary of a cluster."""
    if settings.redis_mode == "cluster":
        return ClusterAutoPipeline(settings.redis_url, timeout_s=timeout_s)
    return AutoPipeline(settings.redis_url, timeout_s=timeout_s)


@asynccontextmanager
async def open_kafka_producer(settings: CoreSettings) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_idempotence=settings.kafka_enable_idempotence,
        acks="all",
        request_timeout_ms=settings.kafka_request_timeout_ms,
    )
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


def postgres_check(pool: asyncpg.Pool) -> HealthCheck:
    async def check() -> None:
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT 1")

    return check


def redis_check(client: RedisClient) -> HealthCheck:
    async def check() -> None:
        await client.ping()

    return check


async def connect_early(pipeline: CommandPipeline) -> None:
    """Open the pipeline's connection at start-up; a Redis that is down then does not stop the
    service from starting (it connects with the first command that finds Redis back)."""
    try:
        await pipeline.connect()
    except aioredis.RedisError as exc:
        logger.warning("redis_unavailable_at_start error=%r", exc)


def pipeline_check(pipeline: CommandPipeline) -> HealthCheck:
    """Redis as the requests reach it: through the auto-pipeline's connection."""

    async def check() -> None:
        await pipeline.execute_command("PING")

    return check


def kafka_producer_check(producer: AIOKafkaProducer) -> HealthCheck:
    async def check() -> None:
        # The producer reconnects on its own; asking for metadata proves a broker answers now.
        await producer.client.fetch_all_metadata()

    return check


def read_resource(package: str, name: str) -> str:
    """A text file shipped inside a package (``schema.sql``, ``*.lua``), read at start-up."""
    return importlib.resources.files(package).joinpath(name).read_text(encoding="utf-8")


async def apply_schema(pool: asyncpg.Pool, sql: str) -> None:
    """Run idempotent DDL (``CREATE … IF NOT EXISTS``) once per start, serialized across the
    worker processes of a service that all start at the same moment."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('lab-schema'))")
        await conn.execute(sql)
