"""Every service and background worker the lab runs. Designs are registered here as they land;
no design imports the lab."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceSpec:
    """An HTTP service: ``app_factory`` is ``module:function`` taking the variant name."""

    design: str
    variant: str
    app_factory: str
    port_setting: str
    workers: int = 1

    @property
    def name(self) -> str:
        return f"{self.design}-{self.variant}"


@dataclass(frozen=True)
class WorkerSpec:
    """A background worker: ``target`` is ``module:function``, an async function that runs until
    cancelled (relays, consumers)."""

    design: str
    name: str
    target: str


SERVICES: tuple[ServiceSpec, ...] = (
    # Two workers each: the naive limiter's per-process counting only shows with more than one.
    ServiceSpec("ratelimit", "naive", "services.ratelimit.app:create_app", "ratelimit_naive_port", workers=2),
    ServiceSpec(
        "ratelimit", "hardened", "services.ratelimit.app:create_app", "ratelimit_hardened_port", workers=2
    ),
)
WORKERS: tuple[WorkerSpec, ...] = ()
