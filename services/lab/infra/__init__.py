"""One interface, three providers of PostgreSQL, Redis and Kafka, selected by ``LAB_INFRA``."""

from __future__ import annotations

from collections.abc import Mapping

from services.lab.infra.base import Broker, Infra, InfraEndpoints, InfraError
from services.lab.settings import LabSettings


def select_infra(settings: LabSettings, *, recorded_ports: Mapping[str, int] | None = None) -> Infra:
    """The provider ``settings.infra`` names."""
    if settings.redis_mode == "cluster" and settings.infra in ("compose", "containers"):
        raise InfraError(
            f"LAB_REDIS_MODE=cluster runs with LAB_INFRA=embedded (three Valkey primaries) or external "
            f"(LAB_REDIS_URL names a node of your cluster); {settings.infra} runs a single Valkey"
        )
    if settings.infra == "embedded":
        from services.lab.infra.embedded import EmbeddedInfra

        return EmbeddedInfra(settings, recorded_ports=recorded_ports or {})
    if settings.infra == "external":
        from services.lab.infra.external import ExternalInfra

        return ExternalInfra(settings)
    if settings.infra == "compose":
        from services.lab.infra.compose import ComposeInfra

        return ComposeInfra(settings)
    from services.lab.infra.containers import ContainersInfra

    return ContainersInfra(settings)


__all__ = ["Broker", "Infra", "InfraEndpoints", "InfraError", "select_infra"]
