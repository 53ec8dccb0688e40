"""Auto-pipelining against a real Valkey: commands of one event-loop turn share a round trip, and
every caller still gets exactly its own reply or its own error."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError, ResponseError

from services.core.autopipeline import AutoPipeline
from services.core.lua import LuaScript
from services.lab import processes

pytestmark = pytest.mark.integration


async def test_concurrent_commands_share_round_trips_and_get_their_own_replies(
    redis_client: aioredis.Redis, unique_id: str
) -> None:
    pipeline = AutoPipeline(redis_client)
    await redis_client.mset({f"{unique_id}:{n}": n for n in range(500)})

    replies = await asyncio.gather(*(pipeline.execute_command("GET", f"{unique_id}:{n}") for n in range(500)))

    assert [int(reply) for reply in replies] == list(range(500))
    assert pipeline.commands_sent == 500
    assert pipeline.batches_sent == 1  # all 500 were queued in one turn of the loop


async def test_one_failing_command_fails_only_its_caller(
    redis_client: aioredis.Redis, unique_id: str
) -> None:
    pipeline = AutoPipeline(redis_client)
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
    redis_client: aioredis.Redis, unique_id: str
) -> None:
    pipeline = AutoPipeline(redis_client)
    impatient = asyncio.ensure_future(pipeline.execute_command("INCR", f"{unique_id}:gone"))
    patient = [pipeline.execute_command("INCR", f"{unique_id}:kept") for _ in range(3)]
    impatient.cancel()

    assert sorted(await asyncio.gather(*patient)) == [1, 2, 3]
    assert impatient.cancelled()
    # Queued before the caller gave up, so sent all the same: like any command already written.
    assert int(await redis_client.get(f"{unique_id}:gone") or 0) == 1


async def test_an_unreachable_server_fails_every_caller_of_the_batch() -> None:
    unreachable = aioredis.Redis(port=processes.free_port(), socket_connect_timeout=1)
    pipeline = AutoPipeline(unreachable)
    try:
        results = await asyncio.gather(
            *(pipeline.execute_command("GET", f"key:{n}") for n in range(5)), return_exceptions=True
        )
    finally:
        await unreachable.aclose()
    assert len(results) == 5
    assert all(isinstance(result, ConnectionError) for result in results)


async def test_a_pipelined_script_is_loaded_again_after_redis_forgets_it(
    redis_client: aioredis.Redis, unique_id: str
) -> None:
    script = LuaScript(
        redis_client, "return redis.call('INCR', KEYS[1])", pipeline=AutoPipeline(redis_client)
    )
    first = await script.run((f"{unique_id}:n",), ())
    await redis_client.script_flush()  # what a restarted Redis knows of our scripts

    again = await asyncio.gather(*(script.run((f"{unique_id}:n",), ()) for _ in range(3)))

    assert first == 1
    assert sorted(again) == [2, 3, 4]
