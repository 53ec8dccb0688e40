"""The Redis Cluster pieces that need no server: redirections read, the slots shared out, the
endpoints a cluster hands its services, and the modes that cannot run one."""

from __future__ import annotations

import asyncio
import itertools
import socket
from pathlib import Path

import pytest

from services.core.cluster import SLOTS, Redirect
from services.lab.components import Component
from services.lab.infra import InfraEndpoints, InfraError, select_infra, valkey_cluster
from services.lab.infra.valkey_cluster import NODES, ClusterNode
from services.lab.processes import free_port
from services.lab.settings import LabSettings
from services.lab.supervisor import PortInUse, Supervisor, never_healthy


def test_moved_and_ask_are_read_and_other_errors_are_not_redirections() -> None:
    assert Redirect.parse("MOVED 3999 127.0.0.1:6381") == Redirect("MOVED", 3999, "127.0.0.1", 6381)
    assert Redirect.parse("ASK 12 ::1:7000") == Redirect("ASK", 12, "::1", 7000)
    assert Redirect.parse("CROSSSLOT Keys in request don't hash to the same slot") is None


def test_the_nodes_share_every_slot_once_in_contiguous_ranges() -> None:
    node = ClusterNode("127.0.0.1", 16379)
    ranges = [node.slot_range(index) for index in range(NODES)]
    assert ranges[0][0] == 0
    assert ranges[-1][1] == SLOTS - 1
    assert all(end + 1 == start for (_, end), (start, _) in itertools.pairwise(ranges))


def test_a_cluster_names_its_mode_to_the_services_and_a_single_server_says_nothing() -> None:
    single = InfraEndpoints(postgres_url="postgresql://pg", redis_url="redis://r:1/0", kafka_bootstrap="k:1")
    cluster = InfraEndpoints(
        postgres_url="postgresql://pg", redis_url="redis://r:1/0", kafka_bootstrap="k:1", redis_mode="cluster"
    )
    assert "LAB_REDIS_MODE" not in single.as_env()
    assert cluster.as_env()["LAB_REDIS_MODE"] == "cluster"


def test_embedded_cluster_nodes_sit_on_the_redis_port_and_the_two_above(tmp_path: Path) -> None:
    settings = LabSettings(state_dir=tmp_path, redis_mode="cluster", redis_port=16379)
    endpoints = select_infra(settings).endpoints()
    assert endpoints is not None
    assert endpoints.redis_nodes == tuple(f"redis://127.0.0.1:{port}/0" for port in (16379, 16380, 16381))
    assert endpoints.redis_url == endpoints.redis_nodes[0]


@pytest.mark.parametrize("infra", ["compose", "containers"])
def test_modes_with_a_single_valkey_refuse_cluster_mode(tmp_path: Path, infra: str) -> None:
    settings = LabSettings(state_dir=tmp_path, redis_mode="cluster", infra=infra)  # type: ignore[arg-type]
    with pytest.raises(InfraError, match="LAB_REDIS_MODE=cluster"):
        select_infra(settings)


@pytest.mark.parametrize(
    ("mode", "redis"), [("standalone", ["redis"]), ("cluster", ["redis-1", "redis-2", "redis-3"])]
)
def test_the_components_chaos_and_drills_know_are_the_infras_own_servers(
    tmp_path: Path, mode: str, redis: list[str]
) -> None:
    settings = LabSettings(state_dir=tmp_path, redis_mode=mode, redis_port=16379, postgres_port=15432)  # type: ignore[arg-type]
    supervisor = Supervisor(settings, services=(), workers=())

    assert supervisor.redis_components() == redis
    assert supervisor.known_components()[: 1 + len(redis)] == ["postgres", *redis]


class NoServer:
    """A client of a node nobody asks: CLUSTER commands go to ``sent`` instead."""

    async def aclose(self) -> None:
        pass


async def test_cluster_meet_is_sent_the_address_a_host_name_resolves_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[tuple[object, ...]] = []

    async def command(client: object, *args: object) -> str:
        sent.append(args)
        return ""

    async def owns_slots(client: object) -> bool:
        return True

    monkeypatch.setattr(valkey_cluster, "_client", lambda node, timeout_s: NoServer())
    monkeypatch.setattr(valkey_cluster, "_cluster_command", command)
    monkeypatch.setattr(valkey_cluster, "_owns_slots", owns_slots)
    nodes = tuple(ClusterNode("localhost", port) for port in (7000, 7001, 7002))

    await valkey_cluster.form_cluster(nodes, timeout_s=1)

    assert sent == [("MEET", "127.0.0.1", 7001), ("MEET", "127.0.0.1", 7002)]


async def test_a_cluster_that_never_forms_says_what_its_probe_last_saw(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def refused(nodes: object, *, timeout_s: float) -> None:
        raise ConnectionRefusedError("connection refused")

    async def half_served(node: object, *, timeout_s: float) -> dict[str, str]:
        return {"cluster_state": "fail", "cluster_slots_ok": "5461"}

    node = ClusterNode("127.0.0.1", 7000)
    probe = valkey_cluster.ClusterNodeProbe(node, (node,))
    monkeypatch.setattr(valkey_cluster, "form_cluster", refused)
    assert not await probe()
    assert probe.last_error == "ConnectionRefusedError: connection refused"

    monkeypatch.setattr(valkey_cluster, "form_cluster", lambda nodes, timeout_s: asyncio.sleep(0))
    monkeypatch.setattr(valkey_cluster, "cluster_info", half_served)
    assert not await probe()
    component = Component(name="redis-1", kind="infra", argv=(), probe=probe)
    assert never_healthy(component).endswith("(last probe: cluster_state:fail, 5461 of 16384 slots served)")


def test_a_cluster_nodes_bus_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    supervisor = Supervisor(LabSettings(state_dir=tmp_path), services=(), workers=())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        bus = taken.getsockname()[1]
        node = Component(
            name="redis-1", kind="infra", argv=(), port=free_port("127.0.0.1"), other_ports=(bus,)
        )

        with pytest.raises(PortInUse, match=f"port {bus} on 127.0.0.1 is already in use, so redis-1"):
            supervisor.check_ports([node])
