"""The supervisor against real servers: health, restart of what died, port conflicts, stale state."""

from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from services.lab import processes
from services.lab.registry import ServiceSpec
from services.lab.settings import LabSettings
from services.lab.supervisor import PortInUse, Supervisor
from tests.conftest import private_lab_settings

pytestmark = pytest.mark.integration

CHECKED_APP = ServiceSpec(
    design="checked",
    variant="app",
    app_factory="tests.support.checked_app:create_app",
    port_setting="ratelimit_naive_port",
    workers=2,
)


def _settings(tmp_path: Path) -> LabSettings:
    base = private_lab_settings(tmp_path / "lab")
    return base.model_copy(update={"ratelimit_naive_port": processes.free_port()})


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    lab = Supervisor(_settings(tmp_path), services=[CHECKED_APP], workers=())
    try:
        yield lab
    finally:
        lab.down()


def _all_pids(status: dict[str, object]) -> list[int]:
    infra = status["infra"].values()  # type: ignore[attr-defined]
    services = status["services"]
    return [pid for entry in [*infra, *services] for pid in entry["pids"]]  # type: ignore[attr-defined]


def _healthy(status: dict[str, object]) -> dict[str, bool]:
    health = {name: entry["healthy"] for name, entry in status["infra"].items()}  # type: ignore[attr-defined]
    for service in status["services"]:  # type: ignore[attr-defined]
        health[f"{service['design']}-{service['variant']}"] = service["healthy"]
    return health


def test_up_starts_everything_healthy_and_down_leaves_nothing(supervisor: Supervisor) -> None:
    report = supervisor.up()
    assert report.started == ["postgres", "redis", "kafka", "checked-app"]
    status = supervisor.status()
    assert all(_healthy(status).values()), status
    service = status["services"][0]
    assert len(service["pids"]) >= 3  # the uvicorn parent and at least its two workers
    family = _all_pids(status)

    assert supervisor.up().already_running == ["postgres", "redis", "kafka", "checked-app"]

    assert supervisor.down().stopped == ["checked-app", "kafka", "redis", "postgres"]
    assert [pid for pid in family if processes.pid_alive(pid)] == []
    assert not any(_healthy(supervisor.status()).values())


def test_a_dead_server_is_reported_and_restarted_alone(supervisor: Supervisor) -> None:
    supervisor.up()
    before = supervisor.status()
    redis = supervisor.record_of("redis")
    assert redis is not None
    processes.send_signal(redis, signal.SIGKILL)
    assert processes.wait_for(lambda: not processes.is_running(redis), timeout_s=5)

    degraded = _healthy(supervisor.status())
    assert degraded["redis"] is False
    assert degraded["checked-app"] is False  # its /healthz checks redis
    assert degraded["postgres"] is True

    report = supervisor.up()
    assert report.started == ["redis"]
    assert report.stale_cleaned == ["redis"]
    # The service kept running; its connection pool finds the new server by itself.
    assert processes.wait_for(lambda: all(_healthy(supervisor.status()).values()), timeout_s=15)
    after = supervisor.status()
    # The same parent processes: untouched. (Their children come and go: postgres backends.)
    assert after["infra"]["postgres"]["pids"][0] == before["infra"]["postgres"]["pids"][0]
    assert after["services"][0]["pids"][0] == before["services"][0]["pids"][0]


def test_a_taken_port_fails_before_anything_starts(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    lab = Supervisor(settings, services=[CHECKED_APP], workers=())
    with socket.socket() as squatter:
        squatter.bind((settings.host, settings.ratelimit_naive_port))
        squatter.listen()
        with pytest.raises(PortInUse) as failure:
            lab.up()
    message = str(failure.value)
    assert str(settings.ratelimit_naive_port) in message
    assert "LAB_RATELIMIT_NAIVE_PORT" in message
    assert lab.down().stopped == []  # nothing was left half-started


def test_a_killed_session_leaves_stale_state_that_up_recovers_from(supervisor: Supervisor) -> None:
    supervisor.up()
    family = _all_pids(supervisor.status())
    for pid in family:  # what a crash or a killed terminal session leaves: no clean shutdown at all
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()
    assert processes.wait_for(lambda: not any(processes.pid_alive(p) for p in family), timeout_s=10)

    report = supervisor.up()
    assert sorted(report.stale_cleaned) == ["checked-app", "kafka", "postgres", "redis"]
    assert all(_healthy(supervisor.status()).values())


def test_services_get_an_admin_token_even_when_none_was_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LAB_ADMIN_TOKEN", raising=False)
    lab = Supervisor(_settings(tmp_path), services=[], workers=())
    token = lab.admin_token()
    assert len(token) >= 24
    assert lab.admin_token() == token  # kept, not remade
    assert (tmp_path / "lab" / "admin-token").stat().st_mode & 0o077 == 0
    monkeypatch.setenv("LAB_ADMIN_TOKEN", "from-the-environment")
    assert lab.admin_token() == "from-the-environment"
