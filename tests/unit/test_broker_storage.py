"""What each mode's broker promises about its storage, in the words ``lab status`` and ``lab chaos`` use."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.lab.infra.compose import ComposeInfra
from services.lab.infra.embedded import EmbeddedInfra
from services.lab.infra.external import ExternalInfra
from services.lab.settings import LabSettings

PORTS = {"postgres_port": 25432, "redis_port": 26379, "kafka_port": 29092}


def settings(tmp_path: Path) -> LabSettings:
    return LabSettings(state_dir=tmp_path / "lab", **PORTS)  # type: ignore[arg-type]


@pytest.mark.parametrize("action", ["kill", "restart"])
def test_killing_the_embedded_broker_warns_that_its_messages_are_lost(tmp_path: Path, action: str) -> None:
    broker = EmbeddedInfra(settings(tmp_path), recorded_ports={}).broker()
    warning = broker.chaos_warning(action)

    assert warning is not None
    assert f"this {action} loses every event it held" in warning
    assert "events_lost_by_broker_storage" in warning
    assert "in memory" in broker.summary()
    assert "compose's Apache Kafka keeps them on disk" in broker.summary()


@pytest.mark.parametrize("action", ["pause", "resume"])
def test_pausing_the_embedded_broker_loses_nothing(tmp_path: Path, action: str) -> None:
    assert EmbeddedInfra(settings(tmp_path), recorded_ports={}).broker().chaos_warning(action) is None


def test_compose_kafka_keeps_messages_across_a_restart(tmp_path: Path) -> None:
    broker = ComposeInfra(settings(tmp_path), environ={}).broker()

    assert broker.durable is True
    assert broker.chaos_warning("restart") is None
    assert "a restart keeps them" in broker.summary()


def test_a_broker_the_user_names_promises_nothing_the_lab_cannot_know(tmp_path: Path) -> None:
    theirs = settings(tmp_path)
    broker = ExternalInfra(theirs).broker()

    assert broker.durable is None
    assert broker.chaos_warning("kill") is None
    assert broker.name == f"your broker at {theirs.kafka_bootstrap}"
