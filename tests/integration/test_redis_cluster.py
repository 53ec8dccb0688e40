"""What only a Redis Cluster shows, on the embedded Valkey Cluster (three primaries, no replicas).

- Redirections: a slot moved after the client loaded its map answers ``MOVED``, a slot in migration
  ``ASK``; the hot path's pipeline follows both.
- ``CROSSSLOT``: a two-quota check whose keys carry no shared hash tag is refused by the cluster, and
  behind a fail-open policy admits a whole burst; hash-tagged, it admits exactly the limit. On one
  server both admit exactly the limit: nothing shows until the cluster does.
- A primary killed: the limiter answers within its budget by its failure policy, the shortener reads
  PostgreSQL for that node's slots, both counted, never a 5xx; the node started again rejoins.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from loadtests.environment import counter
from services.core.cluster import ClusterAutoPipeline
from services.core.resources import command_pipeline
from services.lab import processes
from services.lab.infra import InfraEndpoints
from services.lab.infra.valkey_cluster import ClusterNode
from services.ratelimit.combined import CombinedQuota, KeyNaming, log_key
from services.ratelimit.hardened import FailurePolicy
from services.ratelimit.ports import BackendError, Policy
from services.ratelimit.settings import RateLimitSettings
from tests.support.cluster import ON_EACH_REDIS_MODE, EmbeddedCluster
from tests.support.ratelimit import fire, run_limiter
from tests.support.servers import run_app
from tests.support.shortener import APP, FAST_ENV, Call, create, send_all

pytestmark = pytest.mark.integration
ON_THE_CLUSTER = pytest.mark.parametrize("infra", ["cluster"], indirect=True)

BURST = 200
LIMIT = 20
ROUTE = Policy("default", LIMIT, 60)
OVERALL = Policy("overall", 1000, 60)
KILLED = 1  # the node the fault tests kill: redis-2, slots 5461-10922
# A refused connection fails at once; the rest is HTTP and a loaded two-core machine.
ANSWER_BOUND_S = 1.0


def _slot_owner(nodes: tuple[ClusterNode, ...], key: bytes) -> int:
    slot = key_slot(key)
    return next(i for i, node in enumerate(nodes) if node.slot_range(i)[0] <= slot <= node.slot_range(i)[1])


@pytest.fixture
async def node_clients(redis_cluster: EmbeddedCluster) -> AsyncIterator[list[aioredis.Redis]]:
    clients = [
        aioredis.Redis(host=node.host, port=node.port, decode_responses=True) for node in redis_cluster.nodes
    ]
    try:
        yield clients
    finally:
        for client in clients:
            await client.aclose()


@pytest.fixture
async def killed_node(redis_cluster: EmbeddedCluster) -> AsyncIterator[EmbeddedCluster]:
    """The cluster, with node ``KILLED`` killed when the test says so and always started again."""
    try:
        yield redis_cluster
    finally:
        if processes.port_is_free("127.0.0.1", redis_cluster.nodes[KILLED].port):
            await redis_cluster.restart(KILLED)


async def _set_slot(clients: list[aioredis.Redis], slot: int, *args: str) -> None:
    for client in clients:
        await client.execute_command("CLUSTER", "SETSLOT", slot, *args)  # type: ignore[no-untyped-call]


@ON_THE_CLUSTER
async def test_the_pipeline_follows_moved_and_ask(
    infra: InfraEndpoints, redis_cluster: EmbeddedCluster, node_clients: list[aioredis.Redis], unique_id: str
) -> None:
    moved_key, asked_key = f"moved:{unique_id}", f"asked:{unique_id}"
    ids = [await client.execute_command("CLUSTER", "MYID") for client in node_clients]  # type: ignore[no-untyped-call]
    async with ClusterAutoPipeline(infra.redis_url, timeout_s=1) as pipeline:
        await pipeline.connect()  # the slot map as it is now
        await pipeline.execute_command("SET", moved_key, "before")
        await node_clients[_slot_owner(redis_cluster.nodes, moved_key.encode())].delete(moved_key)
        owner = _slot_owner(redis_cluster.nodes, moved_key.encode())
        slot, elsewhere = key_slot(moved_key.encode()), (owner + 1) % 3
        await _set_slot(node_clients, slot, "NODE", ids[elsewhere])
        try:
            assert await pipeline.execute_command("SET", moved_key, "after") == b"OK"  # MOVED, followed
            assert await node_clients[elsewhere].get(moved_key) == "after"
            assert await pipeline.execute_command("GET", moved_key) == b"after"
        finally:
            await node_clients[elsewhere].delete(moved_key)
            await _set_slot(node_clients, slot, "NODE", ids[owner])

        owner = _slot_owner(redis_cluster.nodes, asked_key.encode())
        slot, target = key_slot(asked_key.encode()), (owner + 1) % 3
        await node_clients[target].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[owner])  # type: ignore[no-untyped-call]
        await node_clients[owner].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])  # type: ignore[no-untyped-call]
        try:
            # A new key of a migrating slot belongs to the importing node: the owner answers ASK.
            assert await pipeline.execute_command("SET", asked_key, "asked") == b"OK"
            assert await pipeline.execute_command("GET", asked_key) == b"asked"
            assert await _asking(node_clients[target], "GET", asked_key) == "asked"  # stored where asked
        finally:
            await _asking(node_clients[target], "DEL", asked_key)
            for client in (node_clients[target], node_clients[owner]):
                await client.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")  # type: ignore[no-untyped-call]


async def _asking(client: aioredis.Redis, *command: str) -> object:
    """``command`` on a node importing its slot: after ``ASKING``, on the same connection."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.execute_command("ASKING")  # type: ignore[no-untyped-call]
        pipe.execute_command(*command)  # type: ignore[no-untyped-call]
        _, reply = await pipe.execute()
    return reply


def _spread_identity(unique_id: str) -> str:
    """An identity whose untagged logs hash to two different slots (most do)."""
    for attempt in range(100):
        identity = f"key:{unique_id}-{attempt}"
        slots = {key_slot(log_key(identity, quota, naming="untagged")) for quota in (ROUTE, OVERALL)}
        if len(slots) == 2:
            return identity
    raise AssertionError("no identity with logs on two slots")


@ON_EACH_REDIS_MODE
@pytest.mark.parametrize("naming", ["untagged", "hash-tagged"])
async def test_a_check_across_slots_fails_on_the_cluster_and_fail_open_admits_the_whole_burst(
    infra: InfraEndpoints, naming: KeyNaming, unique_id: str
) -> None:
    settings = RateLimitSettings(redis_url=infra.redis_url, redis_mode=infra.redis_mode)
    identity = _spread_identity(unique_id)
    async with command_pipeline(settings, timeout_s=settings.ratelimit_redis_timeout_ms / 1000) as checks:
        await checks.connect()
        quota = CombinedQuota(checks, overall=OVERALL, naming=naming)
        limiter = FailurePolicy(quota, on_error="open")
        decisions = await asyncio.gather(*(limiter.check(identity, ROUTE) for _ in range(BURST)))
        crossing_slots = infra.redis_mode == "cluster" and naming == "untagged"
        if crossing_slots:
            with pytest.raises(BackendError, match="CROSSSLOT"):
                await quota.check(identity, ROUTE)

    admitted = sum(decision.allowed for decision in decisions)
    degraded = sum(decision.degraded for decision in decisions)
    assert (admitted, degraded) == ((BURST, BURST) if crossing_slots else (LIMIT, 0))


def _identities_by_node(nodes: tuple[ClusterNode, ...], count: int) -> dict[str, int]:
    """API keys and the node that serves their limiter keys (hash-tagged: the slot of ``key:<api key>``)."""
    return {f"caller-{i}": _slot_owner(nodes, f"key:caller-{i}".encode()) for i in range(count)}


@ON_THE_CLUSTER
async def test_a_killed_node_fails_open_within_the_budget_for_its_callers_only(
    infra: InfraEndpoints, killed_node: EmbeddedCluster, tmp_path: Path
) -> None:
    callers = _identities_by_node(killed_node.nodes, 30)
    on_killed = [key for key, node in callers.items() if node == KILLED]
    assert 0 < len(on_killed) < len(callers)
    with run_limiter("hardened", infra=infra, log_dir=tmp_path) as app:
        killed_node.kill(KILLED)
        answers = [
            answer for key in callers for answer in await fire(app.url, count=1, headers={"x-api-key": key})
        ]
        degraded = counter(app.url, "ratelimit_decisions", {"outcome": "degraded"})
        await killed_node.restart(KILLED)
        after = [
            answer for key in on_killed for answer in await fire(app.url, count=1, headers={"x-api-key": key})
        ]
        degraded_after = counter(app.url, "ratelimit_decisions", {"outcome": "degraded"})

    assert {answer.status for answer in answers + after} == {200}
    assert max(answer.received_at - answer.sent_at for answer in answers) < ANSWER_BOUND_S
    assert degraded == len(on_killed)  # only the callers whose slots the dead node served
    assert degraded_after == degraded  # the node rejoined: its callers are checked again


@ON_THE_CLUSTER
async def test_a_killed_node_sends_its_slots_redirects_to_postgres_and_a_restart_brings_the_cache_back(
    infra: InfraEndpoints, killed_node: EmbeddedCluster, tmp_path: Path
) -> None:
    env = {**infra.as_env(), **FAST_ENV}
    with run_app(APP, "hardened", env=env, log_dir=tmp_path) as app:
        codes = [create(app.url, long_url=f"https://example.com/{i}") for i in range(30)]
        on_killed = [
            c
            for c in codes
            if _slot_owner(killed_node.nodes, f"shortener:hardened:link:{c}".encode()) == KILLED
        ]
        assert 0 < len(on_killed) < len(codes)
        redirects = [Call("GET", f"/{code}") for code in codes]
        assert {reply.status for reply in await send_all(app.url, redirects, concurrency=5)} == {
            302
        }  # cached now

        killed_node.kill(KILLED)
        lookups, errors = counter(app.url, "shortener_db_lookups"), _cache_errors(app.url)
        started = time.monotonic()
        during = await send_all(app.url, redirects, concurrency=5)
        elapsed_s = time.monotonic() - started
        fell_back = counter(app.url, "shortener_db_lookups") - lookups, _cache_errors(app.url) - errors

        await killed_node.restart(KILLED)
        await send_all(app.url, redirects, concurrency=5)  # refills the restarted node's (empty) cache
        lookups = counter(app.url, "shortener_db_lookups")
        after = await send_all(app.url, redirects, concurrency=5)
        lookups_after = counter(app.url, "shortener_db_lookups") - lookups

    assert [reply.status for reply in during + after] == [302] * (2 * len(codes))
    assert fell_back == (len(on_killed), len(on_killed))  # PostgreSQL for the dead node's codes alone
    assert elapsed_s < ANSWER_BOUND_S * len(codes) / 5
    assert lookups_after == 0  # every code served from the cache again


def _cache_errors(url: str) -> float:
    return counter(url, "shortener_cache_results", {"outcome": "error"})
