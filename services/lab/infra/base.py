"""The one interface behind which PostgreSQL, Redis and Kafka are provided."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from services.lab.components import Component


class InfraError(RuntimeError):
    """The infrastructure cannot be provided as configured; the message says what to do."""


@dataclass(frozen=True)
class InfraEndpoints:
    postgres_url: str
    redis_url: str
    kafka_bootstrap: str

    def as_env(self) -> dict[str, str]:
        """The settings every service process needs to find the infrastructure."""
        return {
            "LAB_POSTGRES_URL": self.postgres_url,
            "LAB_REDIS_URL": self.redis_url,
            "LAB_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
        }


class Infra(Protocol):
    """A way to provide the three servers (``LAB_INFRA``: embedded, external, containers or compose)."""

    mode: str

    def components(self) -> list[Component]:
        """Local processes the supervisor must run and watch (none unless embedded)."""
        ...

    def endpoints(self) -> InfraEndpoints | None:
        """Where the servers are, without starting anything (None: not provisioned yet)."""
        ...

    def provision(self) -> InfraEndpoints:
        """Start whatever is not a supervised process (containers) and say where everything is."""
        ...

    def release(self) -> None:
        """Stop what :meth:`provision` started."""
        ...
