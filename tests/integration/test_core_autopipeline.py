"""Auto-pipelining against a real Valkey: commands of one event-loop turn share one write on one
connection, every caller still gets exactly its own reply or its own error, and a server that
stops answering, goes away or comes back is handled within the bound."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
import redis.asyncio as aioredis
import uvloop
from redis.exceptions import ConnectionError, DataError, ResponseError, TimeoutError

from services.core.autopipeline import AutoPipeline
from services.core.lua import LuaScript
from services.lab import processes
from services.lab.infra import InfraEndpoints
from tests.support.valkey import OwnRedis

pytestmark = pytest.mark.integration


@pytest.fixture
async def pipeline(infra: InfraEndpoints) -> AsyncIterator[AutoPipeline]:
    async with AutoPipeline(infra.redis_url, timeout_s=2) as pipeline:
        yield pipeline


async def test_concurrent_commands_share_round_trips_and_get_their_own_replies(
    pipeline: AutoPipeline, redis_client: aioredis.Redis, unique_id: str
) -> None:
    await redis_client.mset({f"{unique_id}:{n}": n for n in range(500)})

    replies = await asyncio.gather(*(pipeline.execute_command("GET", f"{unique_id}:{n}") for n in range(500)))

    assert [int(reply) for reply in replies] == list(range(500))
    assert pipeline.commands_sent == 500
    assert pipeline.batches_sent == 1  # all 500 were queued in one turn of the loop


def test_it_runs_on_uvloop_as_the_services_do(infra: InfraEndpoints, unique_id: str) -> None:
    # uvicorn serves on uvloop, whose transports are not asyncio's classes.
    async def count_three() -> list[int]:
        async with AutoPipeline(infra.redis_url, timeout_s=2) as pipeline:
            return await asyncio.gather(*(pipeline.execute_command("INCR", unique_id) for _ in range(3)))

    assert sorted(uvloop.run(count_three())) == [1, 2, 3]


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_a_reply_that_came_in_time_is_not_timed_out_by_a_busy_loop(
    infra: InfraEndpoints, unique_id: str, run: Callable[[Coroutine[Any, Any, int]], int]
) -> None:
    # The service's own backlog is not Redis being slow: the loop is blocked for four budgets right
    # after the write, Redis answers at once meanwhile, and the timer falls due before the loop gets
    # back to the socket (uvloop runs timers before it polls).
    async def busy_while_waiting() -> int:
        async with AutoPipeline(infra.redis_url, timeout_s=0.05) as pipeline:
            await pipeline.execute_command("PING")  # connected, so only the batch's own bound is in play
            reply = pipeline.execute_command("INCR", unique_id)
            await asyncio.sleep(0)  # the batch is written when this turn ends
            time.sleep(0.2)  # noqa: ASYNC251 - blocking the loop is the point
            return int(await reply)

    assert run(busy_while_waiting()) == 1


async def test_one_failing_command_fails_only_its_caller(
    pipeline: AutoPipeline, redis_client: aioredis.Redis, unique_id: str
) -> None:
    await redis_client.set(f"{unique_id}:text", "not a number")

    results = await asyncio.gather(
        pipeline.execute_command("INCR", f"{unique_id}:a"),
        pipeline.execute_command("INCR", f"{unique_id}:text"),
        pipeline.execute_command("INCR", f"{unique_id}:b"),
        return_exceptions=True,
    )

    assert results[0] == 1
    assert results[2] == 1
    assert isinstance(results[1], ResponseError)
    assert await redis_client.get(f"{unique_id}:text") == b"not a number"


async def test_a_caller_that_gives_up_leaves_the_others_their_replies(
    pipeline: AutoPipeline, redis_client: aioredis.Redis, unique_id: str
) -> None:
    impatient = asyncio.ensure_future(pipeline.execute_command("INCR", f"{unique_id}:gone"))
    patient = [pipeline.execute_command("INCR", f"{unique_id}:kept") for _ in range(3)]
    impatient.cancel()

    assert sorted(await asyncio.gather(*patient)) == [1, 2, 3]
    assert impatient.cancelled()
    # Queued before the caller gave up, so sent all the same: like any command already written.
    assert int(await redis_client.get(f"{unique_id}:gone") or 0) == 1


async def test_a_command_that_cannot_be_sent_fails_only_its_caller(
    pipeline: AutoPipeline, unique_id: str
) -> None:
    before = pipeline.execute_command("INCR", unique_id)
    with pytest.raises(DataError):
        pipeline.execute_command("SET", unique_id, None)  # type: ignore[arg-type]
    after = pipeline.execute_command("INCR", unique_id)

    assert await asyncio.gather(before, after) == [1, 2]


async def test_closing_fails_what_waits_on_a_paused_server_at_once(
    own_redis: OwnRedis, unique_id: str
) -> None:
    pipeline = AutoPipeline(own_redis.url, timeout_s=30)
    assert await pipeline.execute_command("INCR", unique_id) == 1
    own_redis.signal(signal.SIGSTOP)
    waiting = pipeline.execute_command("INCR", unique_id)
    await asyncio.sleep(0.1)  # written, never to be answered while the server is paused

    started = time.monotonic()
    await pipeline.aclose()
    with pytest.raises(ConnectionError):
        await waiting
    assert time.monotonic() - started < 1  # not the 30 s bound: a closed pipeline waits for nothing


async def test_an_unreachable_server_fails_every_caller_of_the_batch() -> None:
    async with AutoPipeline(f"redis://127.0.0.1:{processes.free_port()}/0", timeout_s=1) as pipeline:
        results = await asyncio.gather(
            *(pipeline.execute_command("GET", f"key:{n}") for n in range(5)), return_exceptions=True
        )
    assert len(results) == 5
    assert all(isinstance(result, ConnectionError) for result in results)


async def test_the_database_and_password_of_the_url_are_used(own_redis: OwnRedis, unique_id: str) -> None:
    admin = aioredis.Redis.from_url(own_redis.url)
    await admin.config_set("requirepass", "s3cret")
    await admin.aclose()
    url = f"redis://:s3cret@127.0.0.1:{own_redis.port}/3"
    database_3 = aioredis.Redis.from_url(url)
    try:
        async with AutoPipeline(url, timeout_s=2) as pipeline:
            assert await pipeline.execute_command("SET", unique_id, "in database 3") == b"OK"
        assert await database_3.get(unique_id) == b"in database 3"
        wrong = f"redis://:wrong@127.0.0.1:{own_redis.port}/3"
        async with AutoPipeline(wrong, timeout_s=2) as pipeline:
            refused = await asyncio.gather(pipeline.execute_command("GET", unique_id), return_exceptions=True)
        assert isinstance(refused[0], ResponseError)
        assert "WRONGPASS" in str(refused[0])
    finally:
        await database_3.aclose()


async def test_a_paused_server_fails_the_waiting_batch_within_the_bound_then_serves_again(
    own_redis: OwnRedis, unique_id: str
) -> None:
    async with AutoPipeline(own_redis.url, timeout_s=0.5) as pipeline:
        assert await pipeline.execute_command("INCR", unique_id) == 1
        own_redis.signal(signal.SIGSTOP)
        started = time.monotonic()
        stalled = await asyncio.gather(
            *(pipeline.execute_command("INCR", unique_id) for _ in range(3)), return_exceptions=True
        )
        waited_s = time.monotonic() - started
        own_redis.signal(signal.SIGCONT)

        assert all(isinstance(result, TimeoutError) for result in stalled)
        assert 0.5 <= waited_s < 1.0  # one bound, not two
        # A new connection; the stalled commands were written before the pause, so Redis ran them
        # once it resumed: a timeout says "unknown", not "not applied".
        assert await pipeline.execute_command("INCR", unique_id) == 5


async def test_a_restarted_server_fails_what_was_in_flight_then_is_reconnected_to(
    own_redis: OwnRedis, unique_id: str
) -> None:
    async with AutoPipeline(own_redis.url, timeout_s=1) as pipeline:
        assert await pipeline.execute_command("SET", unique_id, "before") == b"OK"
        own_redis.kill()
        down = await asyncio.gather(pipeline.execute_command("GET", unique_id), return_exceptions=True)
        own_redis.start()

        assert isinstance(down[0], ConnectionError)
        assert await pipeline.execute_command("SET", unique_id, "after") == b"OK"
        assert await pipeline.execute_command("GET", unique_id) == b"after"


async def test_a_closed_pipeline_refuses_commands(infra: InfraEndpoints) -> None:
    pipeline = AutoPipeline(infra.redis_url, timeout_s=1)
    assert await pipeline.execute_command("PING") == b"PONG"
    await pipeline.aclose()
    with pytest.raises(ConnectionError):
        pipeline.execute_command("PING")


async def test_a_pipelined_script_is_loaded_again_after_redis_forgets_it(
    pipeline: AutoPipeline, redis_client: aioredis.Redis, unique_id: str
) -> None:
    script = LuaScript(pipeline, "return redis.call('INCR', KEYS[1])")
    first = await script.run((f"{unique_id}:n",), ())
    await redis_client.script_flush()  # what a restarted Redis knows of our scripts
    sent_before = pipeline.commands_sent

    again = await asyncio.gather(*(script.run((f"{unique_id}:n",), ()) for _ in range(3)))

    assert first == 1
    assert sorted(again) == [2, 3, 4]
    # All through the pipeline: three EVALSHA answered NOSCRIPT, each caller's SCRIPT LOAD, then
    # three EVALSHA after the load.
    assert pipeline.commands_sent - sent_before == 9


async def test_connect_opens_the_connection_before_the_first_command(infra: InfraEndpoints) -> None:
    async with AutoPipeline(infra.redis_url, timeout_s=1) as pipeline:
        await pipeline.connect()
        connected = pipeline.commands_sent
        assert await pipeline.execute_command("PING") == b"PONG"
    assert connected == 1  # the connect's own PING: the first real command found the connection open


async def test_connect_raises_what_a_command_would_when_redis_is_not_there() -> None:
    async with AutoPipeline(f"redis://127.0.0.1:{processes.free_port()}/0", timeout_s=1) as pipeline:
        with pytest.raises(ConnectionError):
            await pipeline.connect()
