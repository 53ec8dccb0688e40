"""Session-wide real servers from the lab's own infra layer, and clean state for every test.

The servers start once per session (embedded by default; ``LAB_INFRA=external`` or
``containers`` to test against other servers) on free ports in a private state directory, so the
suite never collides with a lab the user is running.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from services.core.cluster import RedisClient
from services.lab.infra import InfraEndpoints
from services.lab.settings import LabSettings
from services.lab.supervisor import Supervisor
from tests.support.cluster import EmbeddedCluster

# A learner's own variants (services/<design>/mine.py) are theirs: the suite must pass whether they
# exist or not, so no service it starts may pick one up. Tests of the slot name their own module.
for _design in ("shortener", "ratelimit", "orders"):
    os.environ[f"LAB_{_design.upper()}_MINE"] = f"tests.support.no_learner_variant:{_design}"

# Durability costs time and proves nothing the tests check; the benchmarks keep PostgreSQL's defaults.
TEST_POSTGRES_OPTIONS = {
    "max_connections": "300",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


def private_lab_settings(state_dir: Path) -> LabSettings:
    """Settings for a private lab: its own state directory and free ports for every server."""
    return LabSettings(
        infra=os.environ.get("LAB_INFRA", "embedded"),  # type: ignore[arg-type]
        state_dir=state_dir,
        postgres_port=0,
        redis_port=0,
        kafka_port=0,
        postgres_options=TEST_POSTGRES_OPTIONS,
    )


@pytest.fixture(scope="session")
def lab_settings(tmp_path_factory: pytest.TempPathFactory) -> LabSettings:
    return private_lab_settings(tmp_path_factory.mktemp("lab"))


@pytest.fixture(scope="session")
def lab_infra(lab_settings: LabSettings) -> Iterator[InfraEndpoints]:
    supervisor = Supervisor(lab_settings, services=(), workers=())
    report = supervisor.up()
    try:
        yield report.endpoints
    finally:
        supervisor.down()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    cluster = EmbeddedCluster(tmp_path_factory.mktemp("cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def infra(request: pytest.FixtureRequest, lab_infra: InfraEndpoints) -> InfraEndpoints:
    """The session's servers; parametrized (``ON_EACH_REDIS_MODE`` in tests/support/cluster.py), Redis
    as one server or as the embedded cluster."""
    if getattr(request, "param", "standalone") == "standalone":
        return lab_infra
    cluster: EmbeddedCluster = request.getfixturevalue("redis_cluster")
    return cluster.endpoints_with(lab_infra)


@pytest.fixture
def infra_env(infra: InfraEndpoints) -> dict[str, str]:
    """The environment a service process needs to reach the session's servers."""
    return infra.as_env()


@pytest.fixture
async def pg(infra: InfraEndpoints) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(infra.postgres_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def redis_client(infra: InfraEndpoints) -> AsyncIterator[RedisClient]:
    client: RedisClient
    if infra.redis_mode == "cluster":
        client = RedisCluster.from_url(infra.redis_url)
    else:
        client = aioredis.Redis.from_url(infra.redis_url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def unique_id() -> str:
    return uuid.uuid4().hex[:12]
