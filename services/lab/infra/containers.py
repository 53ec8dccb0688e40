"""``LAB_INFRA=containers``: PostgreSQL, Valkey and Apache Kafka in Docker, via testcontainers.

For machines with a Docker engine. The containers must outlive the ``lab up`` that created them,
so testcontainers' reaper (which removes containers when the creating process exits) is turned
off and the container ids are recorded; ``lab down`` removes exactly those.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from services.lab.components import Component
from services.lab.infra.base import Broker, InfraEndpoints, InfraError
from services.lab.settings import LabSettings

logger = logging.getLogger(__name__)

POSTGRES_IMAGE = "postgres:17-alpine"
VALKEY_IMAGE = "valkey/valkey:8-alpine"
KAFKA_IMAGE = "apache/kafka:3.9.0"


class ContainersInfra:
    mode = "containers"

    def __init__(self, settings: LabSettings) -> None:
        self._record = settings.state_dir / "containers.json"

    def components(self) -> list[Component]:
        return []

    def broker(self) -> Broker:
        return Broker(name="Apache Kafka (container)", storage="on disk", durable=True)

    def endpoints(self) -> InfraEndpoints | None:
        recorded = self._load()
        return InfraEndpoints(**recorded["endpoints"]) if recorded else None

    def provision(self) -> InfraEndpoints:
        recorded = self._load()
        if recorded and _all_running(recorded["ids"]):
            return InfraEndpoints(**recorded["endpoints"])
        self._remove(recorded)
        return self._start()

    def release(self) -> None:
        self._remove(self._load())
        self._record.unlink(missing_ok=True)

    def _start(self) -> InfraEndpoints:
        os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
        _require_docker()
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer
        from testcontainers.redis import RedisContainer

        postgres = PostgresContainer(POSTGRES_IMAGE, username="postgres", password="postgres").start()
        valkey = RedisContainer(VALKEY_IMAGE).start()
        kafka = KafkaContainer(KAFKA_IMAGE).with_kraft().start()
        endpoints = InfraEndpoints(
            postgres_url=postgres.get_connection_url(driver=None),
            redis_url=f"redis://{valkey.get_container_host_ip()}:{valkey.get_exposed_port(6379)}/0",
            kafka_bootstrap=kafka.get_bootstrap_server(),
        )
        ids = [c.get_wrapped_container().id for c in (postgres, valkey, kafka)]
        self._save({"ids": ids, "endpoints": endpoints.__dict__})
        return endpoints

    def _load(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self._record.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return data

    def _save(self, data: dict[str, Any]) -> None:
        self._record.parent.mkdir(parents=True, exist_ok=True)
        self._record.write_text(json.dumps(data, indent=2))

    @staticmethod
    def _remove(recorded: dict[str, Any] | None) -> None:
        if not recorded:
            return
        client = _docker_client()
        for container_id in recorded["ids"]:
            try:
                client.containers.get(container_id).remove(force=True)
            except Exception as exc:  # already gone is fine; anything else is logged
                logger.info("container_not_removed id=%s error=%r", container_id, exc)


def _docker_client() -> Any:
    try:
        import docker
    except ImportError as exc:
        raise InfraError(
            "LAB_INFRA=containers needs the 'containers' extra: pip install 'system-design-lab[containers]'"
        ) from exc
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:
        raise InfraError(
            "LAB_INFRA=containers needs a running Docker engine and none answered "
            f"({type(exc).__name__}); use LAB_INFRA=embedded (the default) instead"
        ) from exc
    return client


def _require_docker() -> None:
    _docker_client()


def _all_running(ids: list[str]) -> bool:
    client = _docker_client()
    try:
        return all(client.containers.get(i).status == "running" for i in ids)
    except Exception:
        return False


def docker_available() -> bool:
    try:
        _docker_client()
    except InfraError:
        return False
    return True


__all__ = ["ContainersInfra", "docker_available"]
