"""Protocol-level probes: a server counts as healthy when it answers a real request, not when its
port merely accepts a connection."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import httpx
import redis.asyncio as aioredis
from aiokafka.client import AIOKafkaClient

logger = logging.getLogger(__name__)


async def probe_postgres(url: str, *, timeout_s: float = 2.0) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=timeout_s)
        try:
            await conn.fetchval("SELECT 1", timeout=timeout_s)
        finally:
            await conn.close(timeout=timeout_s)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        logger.debug("probe_failed server=postgres error=%r", exc)
        return False
    return True


async def probe_redis(url: str, *, timeout_s: float = 2.0) -> bool:
    client = aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        return bool(await client.ping())
    except (TimeoutError, OSError, aioredis.RedisError) as exc:
        logger.debug("probe_failed server=redis error=%r", exc)
        return False
    finally:
        await client.aclose()


async def probe_kafka(bootstrap: str, *, timeout_s: float = 2.0) -> bool:
    # A refused bootstrap while the broker boots is an expected answer, not an error to log.
    logging.getLogger("aiokafka.client").setLevel(logging.CRITICAL)
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(client.bootstrap(), timeout=timeout_s)
    except Exception as exc:  # aiokafka raises several unrelated types for "no broker"
        logger.debug("probe_failed server=kafka error=%r", exc)
        return False
    finally:
        await client.close()
    return True


async def probe_http(url: str, *, timeout_s: float = 2.0) -> bool:
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        logger.debug("probe_failed url=%s error=%r", url, exc)
        return False
    return response.status_code == 200
