"""Auto-pipelining: the Redis commands of every request handled in one event-loop turn share one
round trip.

A service under load handles many requests per turn of the event loop, and each would otherwise send
its own command: one ``send`` and one ``recv`` system call, a trip through the connection pool and a
reply of its own to wake up for, per request. Queued here instead, the commands of a turn go out as
one pipeline (one write, the replies read back in one go) as soon as the turn ends, and each caller
gets its own reply. No command waits longer than the rest of the current turn; under light load a
batch is a single command and costs what a direct call costs. The same idea as ioredis's
``enableAutoPipelining`` and Lettuce's command batching.

Only for independent commands: a pipeline here is not a transaction, and one command's error is
that command's caller's alone. A caller that gives up (cancelled, timed out) after queuing does not
take its command back, as with any command already written to a socket.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.typing import EncodableT

Queued = tuple[tuple[EncodableT, ...], asyncio.Future[Any]]


class AutoPipeline:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._queued: list[Queued] = []
        self._sending: set[asyncio.Task[None]] = set()
        # How well batching works: commands per batch is the round trips saved, plus one.
        self.commands_sent = 0
        self.batches_sent = 0

    def execute_command(self, *args: EncodableT) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Any] = loop.create_future()
        if not self._queued:
            loop.call_soon(self._send_queued)  # once per turn: after every callback now ready has run
        self._queued.append((args, reply))
        return reply

    def _send_queued(self) -> None:
        batch, self._queued = self._queued, []
        self.commands_sent += len(batch)
        self.batches_sent += 1
        task = asyncio.create_task(self._send(batch))
        self._sending.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[Queued]) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for args, _ in batch:
                    pipe.execute_command(*args)
                replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the connection failed: every caller of the batch hears it
            for _, reply in batch:
                if not reply.done():
                    reply.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, reply), value in zip(batch, replies, strict=True):
            if reply.done():  # the caller gave up (cancelled, timed out)
                continue
            if isinstance(value, Exception):
                reply.set_exception(value)
            else:
                reply.set_result(value)
