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
    # "cluster": ``redis_url`` is one node of a Redis Cluster, ``redis_nodes`` every node the lab runs.
    redis_mode: str = "standalone"
    redis_nodes: tuple[str, ...] = ()

    def as_env(self) -> dict[str, str]:
        """The settings every service process needs to find the infrastructure."""
        env = {
            "LAB_POSTGRES_URL": self.postgres_url,
            "LAB_REDIS_URL": self.redis_url,
            "LAB_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
        }
        if self.redis_mode != "standalone":  # the default needs no saying
            env["LAB_REDIS_MODE"] = self.redis_mode
        return env


@dataclass(frozen=True)
class Broker:
    """What provides Kafka in a mode, and what its storage promises: ``lab status`` names it and
    ``lab chaos`` warns when a kill or restart loses the messages it holds."""

    name: str
    storage: str
    # Whether messages survive the broker being killed or restarted; None: the lab cannot know.
    durable: bool | None
    # False where the lab has no broker to run (a platform without the embedded broker's wheel).
    available: bool = True
    note: str = ""

    def summary(self) -> str:
        """One line for ``lab status``: which broker, and what its storage keeps."""
        if not self.available:
            return self.note
        if self.durable is False:
            return (
                f"kafka: {self.name}, messages kept {self.storage}: a kill or restart loses those not yet "
                "consumed (compose's Apache Kafka keeps them on disk)"
            )
        if self.durable:
            return f"kafka: {self.name}, messages kept {self.storage}: a restart keeps them"
        return f"kafka: {self.name}; what a restart keeps is up to its storage"

    def chaos_warning(self, action: str) -> str | None:
        """What a ``kill`` or ``restart`` of this broker costs, when it keeps messages in memory."""
        if self.durable is not False or action not in ("kill", "restart"):
            return None
        return (
            f"the {self.name} broker keeps messages {self.storage}: this {action} loses every event it held "
            "that no consumer had read; 'lab audit orders' counts them as events_lost_by_broker_storage, "
            "apart from the design's events_lost (the naive variant cannot tell the two apart)"
        )


def users_broker(bootstrap: str) -> Broker:
    """A broker the user runs and names with ``LAB_KAFKA_BOOTSTRAP``: its storage is theirs to know."""
    return Broker(name=f"your broker at {bootstrap}", storage="yours", durable=None)


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

    def broker(self) -> Broker:
        """The Kafka broker this mode provides and its storage."""
        ...
