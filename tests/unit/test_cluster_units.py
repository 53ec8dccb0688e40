"""The Redis Cluster pieces that need no server: redirections read, the slots shared out, the
endpoints a cluster hands its services, and the modes that cannot run one."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from services.core.cluster import SLOTS, Redirect
from services.lab.infra import InfraEndpoints, InfraError, select_infra
from services.lab.infra.valkey_cluster import NODES, ClusterNode
from services.lab.settings import LabSettings
from services.lab.supervisor import Supervisor


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
