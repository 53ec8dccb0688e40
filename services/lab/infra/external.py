"""``LAB_INFRA=external``: servers the user runs, found at the URLs the user gives."""

from __future__ import annotations

from services.lab.components import Component
from services.lab.infra.base import Broker, InfraEndpoints, users_broker
from services.lab.settings import LabSettings


class ExternalInfra:
    mode = "external"

    def __init__(self, settings: LabSettings) -> None:
        self._settings = settings

    def components(self) -> list[Component]:
        return []

    def provision(self) -> InfraEndpoints:
        return self.endpoints()

    def endpoints(self) -> InfraEndpoints:
        return InfraEndpoints(
            postgres_url=self._settings.postgres_url,
            redis_url=self._settings.redis_url,
            kafka_bootstrap=self._settings.kafka_bootstrap,
            redis_mode=self._settings.redis_mode,  # LAB_REDIS_URL names one node of the user's cluster
        )

    def release(self) -> None:
        """Nothing to stop: the user owns these servers."""

    def broker(self) -> Broker:
        return users_broker(self._settings.kafka_bootstrap)
