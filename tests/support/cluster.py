"""The embedded Valkey Cluster for tests: its three nodes only (built by the lab's own embedded infra),
next to the session's single-server lab, whose PostgreSQL and broker the cluster tests share.

Tests that must hold on both are marked ``ON_EACH_REDIS_MODE`` (or ``on_each_redis_mode(...)``):
``infra`` (and every fixture built on it: ``infra_env``, ``redis_client``, ``pg``) is then the
session's servers with Redis as one Valkey, then as the cluster. The cluster starts once, when the
first such test asks for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from services.lab import processes
from services.lab.components import Component
from services.lab.infra import InfraEndpoints
from services.lab.infra.embedded import EmbeddedInfra
from services.lab.infra.valkey_cluster import ClusterNode
from services.lab.processes import ProcessRecord
from services.lab.settings import LabSettings

REDIS_MODES = ("standalone", "cluster")
ON_EACH_REDIS_MODE = pytest.mark.parametrize("infra", REDIS_MODES, indirect=True)


def on_each_redis_mode(
    name: str, values: Iterable[object], *, on_cluster: Callable[[Any], bool]
) -> pytest.MarkDecorator:
    """Parametrize ``name`` over ``values`` on one server, and the values ``on_cluster`` picks (those
    whose code talks to Redis) on the cluster too: the cluster costs each case a second run."""
    cases = [
        (value, mode) for value in values for mode in REDIS_MODES if mode == "standalone" or on_cluster(value)
    ]
    return pytest.mark.parametrize((name, "infra"), cases, indirect=["infra"])


_STARTUP_TIMEOUT_S = 30.0


class EmbeddedCluster:
    def __init__(self, state_dir: Path) -> None:
        settings = LabSettings(state_dir=state_dir, redis_mode="cluster", redis_port=0, postgres_port=0)
        self._infra = EmbeddedInfra(settings, recorded_ports={})
        self._nodes = [c for c in self._infra.components() if c.name.startswith("redis-")]
        self._log_dir = state_dir / "logs"
        self._records: dict[str, ProcessRecord] = {}

    @property
    def nodes(self) -> tuple[ClusterNode, ...]:
        return self._infra.redis_nodes()

    def endpoints_with(self, infra: InfraEndpoints) -> InfraEndpoints:
        """``infra``'s PostgreSQL and broker, with this cluster as Redis."""
        cluster = self._infra.endpoints()
        return dataclasses.replace(
            infra, redis_url=cluster.redis_url, redis_mode="cluster", redis_nodes=cluster.redis_nodes
        )

    def start(self) -> None:
        for node in self._nodes:
            self._spawn(node)
        asyncio.run(self.wait_until_serving())

    def kill(self, index: int) -> None:
        """SIGKILL node ``index``: its slots go unserved until :meth:`restart`."""
        record = self._records.pop(self._nodes[index].name)
        processes.stop(dataclasses.replace(record, stop_signal=signal.SIGKILL), timeout_s=5)

    async def restart(self, index: int) -> None:
        """Start node ``index`` again on its ``nodes.conf``; returns once every slot is served."""
        self._spawn(self._nodes[index])
        await self.wait_until_serving()

    def stop(self) -> None:
        for record in self._records.values():
            processes.stop(record, timeout_s=5)
        self._records.clear()

    async def wait_until_serving(self) -> None:
        async with asyncio.timeout(_STARTUP_TIMEOUT_S):
            for node in self._nodes:
                assert node.probe is not None
                while not await node.probe():  # noqa: ASYNC110 (polling a server, no event to wait on)
                    await asyncio.sleep(0.1)

    def _spawn(self, node: Component) -> None:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        if node.prepare is not None:  # as the supervisor does before every start (its data directory)
            node.prepare()
        self._records[node.name] = processes.spawn(
            node.name,
            node.argv,
            log_path=self._log_dir / f"{node.name}.log",
            env=dict(os.environ),
            port=node.port,
        )
