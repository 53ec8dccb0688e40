"""Redis Cluster behind the interfaces the designs already use (``LAB_REDIS_MODE=cluster``).

A cluster splits the key space into 16,384 slots (CRC16 of the key, or of its ``{hash tag}``) served
by several primaries; a client keeps the slot map, sends each command to the node that serves its
key, and follows the two redirections a node answers with: ``MOVED`` (the slot lives elsewhere now:
update the map) and ``ASK`` (the slot is migrating: ask the other node this once, after ``ASKING``).
Two clients here, one for each way the designs talk to Redis:

- the pooled client (``open_redis``, ``open_bounded_redis``): redis-py's
  :class:`~redis.asyncio.cluster.RedisCluster`, built the way the standalone clients are;
- the hot path's auto-pipeline: :class:`ClusterAutoPipeline`, one multiplexed connection per primary.

Why not delegate the hot path to ``RedisCluster`` as well: it was tried, and measured. Its per-node
pools open a connection per concurrent command, and a burst of 300 rate-limit checks at the
limiter's 50 ms budget (tests/integration/test_ratelimit_flaws.py) had 198 of them fail open with
"Timeout connecting to server": a burst's connects on a busy two-core machine take longer than the
budget. One connection per node, opened at start-up, is what makes the budget hold, on a cluster as
on one server; the slot map, ``MOVED``/``ASK`` and script loading are the price, paid here once.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import ConnectionError, RedisError, ResponseError

from services.core.autopipeline import AutoPipeline, RedisAddress, RedisArg

RedisClient = aioredis.Redis | RedisCluster
"""A client of the lab's Redis, whichever ``LAB_REDIS_MODE`` it runs in."""

SLOTS = 16_384
_SCRIPT_COMMANDS = {"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO"}
# Commands with a subcommand, and commands that name no key: sent to any node.
_KEYLESS_COMMANDS = {
    "PING",
    "ECHO",
    "TIME",
    "INFO",
    "SCRIPT",
    "CLUSTER",
    "CONFIG",
    "CLIENT",
    "FUNCTION",
    "ASKING",
}


def cluster_client(url: str, *, timeout_s: float, max_connections: int, retries: int) -> RedisCluster:
    """A cluster client starting from the node ``url`` names. ``retries`` counts reconnections after
    a connection error or timeout (0 on a budgeted path: a retry would spend the budget twice);
    redirections are followed whatever it is, they are answers, not failures."""
    return RedisCluster.from_url(
        url,
        max_connections=max_connections,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), retries),
        # A primary down leaves its slots unserved; the others' slots keep working, as the servers
        # are told to (cluster-require-full-coverage no), instead of the client refusing them all.
        require_full_coverage=False,
    )


class ClusterAutoPipeline:
    """The auto-pipeline on a cluster: one :class:`AutoPipeline` (one multiplexed connection) per
    primary, and the slot map that says which one serves a key.

    A command goes to the node of its key: a script's first key (the node then judges the others and
    answers ``CROSSSLOT`` when they hash elsewhere), the first argument of any other command; keyless
    commands go to any node, and ``SCRIPT`` ones to every node, so that a script loaded after a
    ``NOSCRIPT`` is known wherever it runs next. ``MOVED`` updates the map and sends the command once
    more to the node named; ``ASK`` sends ``ASKING`` and the command in one batch to the node named,
    leaving the map as it is. A node that is down fails its own slots' commands, as a server down
    fails the auto-pipeline's; the others' keep their connections. The bounds are the auto-pipeline's,
    per node; a redirection is one more.
    """

    def __init__(self, url: str, *, timeout_s: float) -> None:
        self._seed = RedisAddress.parse(url)
        if self._seed.db:
            raise ValueError("a Redis Cluster has database 0 only")
        self._timeout_s = timeout_s
        self._nodes: dict[tuple[str, int], AutoPipeline] = {}
        self._slots: list[AutoPipeline] = []  # slot -> its primary's pipeline; empty until loaded
        self._loading: asyncio.Task[None] | None = None

    async def execute_command(self, *args: RedisArg) -> Any:
        if not self._slots:
            await self._slot_map_loaded()
        if _name(args[0]) == "SCRIPT":
            return await self._on_every_primary(args)
        try:
            return await self._node_of(args).execute_command(*args)
        except ResponseError as exc:
            redirect = Redirect.parse(str(exc))
            if redirect is None:
                raise
        return await self._redirected(redirect, args)

    async def _on_every_primary(self, args: tuple[RedisArg, ...]) -> Any:
        """The first answer of every primary that answers: a node that is down misses a ``SCRIPT LOAD``
        it will ask for again (``NOSCRIPT``) once it is back, and must not fail the other nodes' scripts."""
        replies = await asyncio.gather(
            *(node.execute_command(*args) for node in self._primaries()), return_exceptions=True
        )
        answered = [reply for reply in replies if not isinstance(reply, BaseException)]
        if not answered:
            raise replies[0]
        return answered[0]

    async def _redirected(self, redirect: Redirect, args: tuple[RedisArg, ...]) -> Any:
        node = self._node_at(redirect.host, redirect.port)
        if redirect.kind == "ASK":  # queued in the same turn: written together, ASKING first
            _, reply = await asyncio.gather(node.execute_command("ASKING"), node.execute_command(*args))
            return reply
        self._slots[redirect.slot] = node
        self._refresh_soon()  # one slot moved: others may have moved with it
        return await node.execute_command(*args)

    async def connect(self) -> None:
        """Load the slot map and open a connection to every primary now (see AutoPipeline.connect)."""
        await self._slot_map_loaded()
        await asyncio.gather(*(node.connect() for node in self._primaries()))

    async def aclose(self) -> None:
        if self._loading is not None:
            self._loading.cancel()
            with suppress(asyncio.CancelledError, RedisError):
                await self._loading
        await asyncio.gather(*(node.aclose() for node in self._nodes.values()))

    async def __aenter__(self) -> ClusterAutoPipeline:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def _node_of(self, args: tuple[RedisArg, ...]) -> AutoPipeline:
        key = _key_of(args)
        return self._slots[key_slot(_as_bytes(key))] if key is not None else self._slots[0]

    def _node_at(self, host: str, port: int) -> AutoPipeline:
        node = self._nodes.get((host, port))
        if node is None:
            node = self._nodes[(host, port)] = AutoPipeline(
                self._seed.at(host, port), timeout_s=self._timeout_s
            )
        return node

    def _primaries(self) -> list[AutoPipeline]:
        return list(dict.fromkeys(self._slots))

    def _refresh_soon(self) -> asyncio.Task[None]:
        """One load of the map at a time, however many commands ask for it."""
        if self._loading is None or self._loading.done():
            self._loading = asyncio.create_task(self._load_slot_map())
        return self._loading

    async def _slot_map_loaded(self) -> None:
        # Shielded: a caller that gives up does not cancel the load the others wait for.
        await asyncio.shield(self._refresh_soon())

    async def _load_slot_map(self) -> None:
        """``CLUSTER SLOTS`` from the first node that answers: the seed, then every node known."""
        failure: Exception = ConnectionError("no cluster node known")
        for node in [self._node_at(self._seed.host, self._seed.port), *self._nodes.values()]:
            try:
                ranges = await node.execute_command("CLUSTER", "SLOTS")
            except RedisError as exc:
                failure = exc
                continue
            self._slots = self._slot_table(ranges)
            return
        raise failure

    def _slot_table(self, ranges: list[list[Any]]) -> list[AutoPipeline]:
        table = [self._node_at(self._seed.host, self._seed.port)] * SLOTS
        for start, end, primary, *_replicas in ranges:
            node = self._node_at(_as_str(primary[0]) or self._seed.host, int(primary[1]))
            table[start : end + 1] = [node] * (end + 1 - start)
        return table


@dataclass(frozen=True)
class Redirect:
    """A node's ``MOVED <slot> <host>:<port>`` or ``ASK <slot> <host>:<port>``."""

    kind: str
    slot: int
    host: str
    port: int

    @classmethod
    def parse(cls, error: str) -> Redirect | None:
        kind, _, rest = error.partition(" ")
        if kind not in ("MOVED", "ASK"):
            return None
        slot, _, address = rest.partition(" ")
        host, _, port = address.rpartition(":")
        return cls(kind=kind, slot=int(slot), host=host, port=int(port))


def _key_of(args: tuple[RedisArg, ...]) -> RedisArg | None:
    name = _name(args[0])
    if name in _SCRIPT_COMMANDS:
        return args[3] if int(args[2]) > 0 else None
    if name in _KEYLESS_COMMANDS or len(args) < 2:
        return None
    return args[1]


def _as_bytes(key: RedisArg) -> bytes:
    return key if isinstance(key, bytes) else str(key).encode()


def _as_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _name(arg: RedisArg) -> str:
    return (arg.decode() if isinstance(arg, bytes) else str(arg)).upper()
