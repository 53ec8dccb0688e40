"""The hardened shortener when Redis dies: redirects, deletes and counts keep working on PostgreSQL.

The test gets its own Valkey server, so killing it disturbs nobody else.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest

from loadtests.environment import counter
from services.lab import processes
from services.lab.infra.embedded import valkey_server_bin
from services.lab.processes import ProcessRecord
from tests.support.servers import run_app
from tests.support.shortener import APP, FAST_ENV, Call, create, send_all

pytestmark = pytest.mark.integration


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, ProcessRecord]]:
    port = processes.free_port()
    argv = (str(valkey_server_bin()), "--port", str(port), "--bind", "127.0.0.1", "--save", "")
    record = processes.spawn(
        "valkey", argv, log_path=tmp_path / "valkey.log", env=dict(os.environ), port=port
    )
    assert processes.wait_for(lambda: not processes.port_is_free("127.0.0.1", port), timeout_s=10)
    try:
        yield f"redis://127.0.0.1:{port}/0", record
    finally:
        processes.stop(replace(record, stop_signal=signal.SIGKILL), timeout_s=5)


async def test_without_redis_redirects_fall_back_to_postgres_and_count_every_click(
    infra_env: dict[str, str], pg: asyncpg.Connection, own_redis: tuple[str, ProcessRecord], tmp_path: Path
) -> None:
    redis_url, redis_process = own_redis
    env = {**infra_env, **FAST_ENV, "LAB_REDIS_URL": redis_url, "LAB_REDIS_SOCKET_TIMEOUT_S": "0.5"}
    with run_app(APP, "hardened", env=env, log_dir=tmp_path) as app:
        code, doomed = create(app.url), create(app.url)
        warm = await send_all(
            app.url, [Call("GET", f"/{code}"), Call("GET", f"/{doomed}")] * 5, concurrency=2
        )
        assert {reply.status for reply in warm} == {302}
        flushed = processes.wait_for(lambda: counter(app.url, "shortener_clicks_flushed") == 10, timeout_s=10)

        processes.stop(replace(redis_process, stop_signal=signal.SIGKILL), timeout_s=5)
        during = await send_all(app.url, [Call("GET", f"/{code}")] * 20, concurrency=4)
        deleted = await send_all(app.url, [Call("DELETE", f"/api/v1/urls/{doomed}")], concurrency=1)
        gone = await send_all(app.url, [Call("GET", f"/{doomed}")], concurrency=1)
        stats = await send_all(app.url, [Call("GET", f"/api/v1/urls/{code}")], concurrency=1)
    stored = await pg.fetchval("SELECT clicks FROM shortener_hardened.links WHERE code = $1", code)
    assert flushed
    assert [reply.status for reply in during] == [302] * 20
    assert [deleted[0].status, gone[0].status] == [204, 410]
    assert (stored, stats[0].json()["clicks"]) == (25, 25)  # clicks never depended on Redis


async def test_a_paused_redis_costs_a_redirect_its_cache_budget_not_the_clients_deadline(
    infra_env: dict[str, str], own_redis: tuple[str, ProcessRecord], tmp_path: Path
) -> None:
    """SIGSTOP, the stall a loaded or swapping Redis shows: the redirect waits the cache budget
    (100 ms by default), reads PostgreSQL and answers, well inside a client's deadline."""
    redis_url, redis_process = own_redis
    env = {**infra_env, **FAST_ENV, "LAB_REDIS_URL": redis_url}
    with run_app(APP, "hardened", env=env, log_dir=tmp_path) as app:
        code = create(app.url)
        await send_all(app.url, [Call("GET", f"/{code}")] * 3, concurrency=1)  # cached now
        processes.send_signal(redis_process, signal.SIGSTOP)
        try:
            started = time.monotonic()
            stalled = await send_all(app.url, [Call("GET", f"/{code}")] * 5, concurrency=1)
            each_s = (time.monotonic() - started) / 5
        finally:
            processes.send_signal(redis_process, signal.SIGCONT)
    assert [reply.status for reply in stalled] == [302] * 5
    # At most two budgets (the batch, then a reconnect's), plus PostgreSQL and HTTP on a busy machine.
    assert each_s < 0.5, f"{each_s:.3f} s per redirect while Redis was paused"
