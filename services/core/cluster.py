"""Redis Cluster behind the interfaces the designs already use (``LAB_REDIS_MODE=cluster``).

A cluster splits the key space into 16,384 slots (CRC16 of the key, or of its ``{hash tag}``) served
by several primaries; a client keeps the slot map, sends each command to the node that serves its
key, and follows the two redirections a node answers with: ``MOVED`` (the slot lives elsewhere now:
update the map) and ``ASK`` (the slot is migrating: ask the other node this once, after ``ASKING``).
redis-py's :class:`~redis.asyncio.cluster.RedisCluster` does all of it; this module only builds it
the way the lab's standalone clients are built, and adapts it where they differ.

The auto-pipeline (:mod:`services.core.autopipeline`) is standalone only. On a cluster its commands go
through :class:`ClusterCommands`, one ``RedisCluster`` command each, not multiplexed: a multiplexer
that is right on a cluster needs a connection per node, the slot map and its refresh on ``MOVED``,
``ASKING`` written in the same batch as the command it prefixes, and scripts loaded on every primary,
a second cluster client to keep correct. What multiplexing buys is client CPU per command, not a
behaviour any design or test depends on, so on a cluster the lab delegates to the client users run.
Measured in docs/designs/ratelimit.md ("Redis Cluster").
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ClusterError, RedisClusterException

from services.core.autopipeline import RedisArg

RedisClient = aioredis.Redis | RedisCluster
"""A client of the lab's Redis, whichever ``LAB_REDIS_MODE`` it runs in."""

_SCRIPT_COMMANDS = {"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO"}
# Commands with a subcommand, which redis-py's cluster client routes by the pair ("SCRIPT LOAD": every
# primary) and would otherwise take for a command whose first argument is a key.
_CONTAINER_COMMANDS = {"SCRIPT", "CLUSTER", "CONFIG", "CLIENT", "FUNCTION"}


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


class ClusterCommands:
    """The auto-pipeline's interface (``execute_command``, ``connect``, ``aclose``) over a cluster:
    each command sent to the node that serves its key, every wait bounded by ``timeout_s`` and
    nothing retried, as on the auto-pipeline."""

    def __init__(self, url: str, *, timeout_s: float, max_connections: int = 200) -> None:
        self._client = cluster_client(url, timeout_s=timeout_s, max_connections=max_connections, retries=0)

    async def execute_command(self, *args: RedisArg) -> Any:
        try:
            await self._client.initialize()  # the slot map, once (and again after a node failed)
            return await self._client.execute_command(*_spelled(args), **self._route(args))
        except RedisClusterException as exc:  # not a RedisError: callers' failure policies must see one
            raise ClusterError(str(exc)) from exc

    def _route(self, args: tuple[RedisArg, ...]) -> dict[str, Any]:
        """A script goes to the node of its first key and the server judges the rest, answering
        ``CROSSSLOT`` to keys of several slots, as it would any client. (redis-py would refuse such
        a script itself, before sending it, with an error that is no ``RedisError``.)"""
        if str(args[0]).upper() not in _SCRIPT_COMMANDS or int(args[2]) == 0:
            return {}
        first_key = args[3]
        return {"target_nodes": self._client.get_node_from_key(first_key)}  # type: ignore[arg-type]

    async def connect(self) -> None:
        await self.execute_command("PING")

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> ClusterCommands:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def _spelled(args: tuple[RedisArg, ...]) -> tuple[RedisArg, ...]:
    """``("SCRIPT", "LOAD", lua)`` as redis-py's cluster client spells it: ``("SCRIPT LOAD", lua)``."""
    if len(args) > 1 and str(args[0]).upper() in _CONTAINER_COMMANDS:
        return (f"{args[0]} {args[1]}".upper(), *args[2:])
    return args
