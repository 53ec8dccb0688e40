"""Every service and background worker the lab runs. Designs are registered here as they land;
no design imports the lab."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

ServiceKind = Literal["variant", "supporting", "learner"]
"""A design's variant (``naive``, ``hardened``), a supporting service the variants call (the order
flow's inventory service and payment gateway), which is a variant of nothing, or the learner's own
variant (``mine``), which runs only once its module exists."""


@dataclass(frozen=True)
class ServiceSpec:
    """An HTTP service: ``app_factory`` is ``module:function`` taking ``variant``, the name the
    service is served under (for a supporting service, what it is: ``inventory``)."""

    design: str
    variant: str
    app_factory: str
    port_setting: str
    workers: int = 1
    # The setting through which other services find this one; the lab fills it with the real URL,
    # so moving a port never leaves a caller pointing at the old one.
    url_setting: str | None = None
    kind: ServiceKind = "variant"
    # A learner's variant: the design's settings class (module:Class), whose ``<design>_mine`` field
    # (LAB_<DESIGN>_MINE) names the learner's module, as the design's own app reads it.
    learner_settings: str | None = None

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

    @property
    def role(self) -> str:
        """What ``lab up --scale`` calls it: ``relay``, ``payments``, ``notifications``."""
        return self.name.removeprefix(f"{self.design}-")

    def instance(self, number: int) -> WorkerSpec:
        """The ``number``-th instance (from 1): the first keeps the worker's name, the others add
        their number (``orders-relay-2``), each a component of its own with its own log."""
        return self if number == 1 else replace(self, name=f"{self.name}-{number}")


# fmt: off
SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("shortener", "naive", "services.shortener.app:create_app", "shortener_naive_port", workers=2),
    ServiceSpec("shortener", "hardened", "services.shortener.app:create_app", "shortener_hardened_port",
                workers=2),
    # Two workers each: the naive limiter's per-process counting only shows with more than one.
    ServiceSpec("ratelimit", "naive", "services.ratelimit.app:create_app", "ratelimit_naive_port", workers=2),
    ServiceSpec("ratelimit", "hardened", "services.ratelimit.app:create_app", "ratelimit_hardened_port",
                workers=2),
    ServiceSpec("orders", "inventory", "services.orders.inventory:create_app", "inventory_port",
                url_setting="LAB_ORDERS_INVENTORY_URL", kind="supporting"),
    ServiceSpec("orders", "gateway", "services.orders.gateway:create_app", "payment_gateway_port",
                url_setting="LAB_ORDERS_PAYMENT_GATEWAY_URL", kind="supporting"),
    ServiceSpec("orders", "naive", "services.orders.app:create_app", "orders_naive_port"),
    ServiceSpec("orders", "hardened", "services.orders.app:create_app", "orders_hardened_port"),
)
# A learner's own variants (`lab exercise start DESIGN`): started where their module exists, and not
# part of the lab's own deployments (compose, Kubernetes), which run the lab's variants.
LEARNER_SERVICES: tuple[ServiceSpec, ...] = tuple(
    ServiceSpec(design, "mine", f"services.{design}.app:create_app", f"{design}_mine_port",
                workers=1 if design == "orders" else 2, kind="learner",
                learner_settings=settings)
    for design, settings in (
        ("shortener", "services.shortener.settings:ShortenerSettings"),
        ("ratelimit", "services.ratelimit.settings:RateLimitSettings"),
        ("orders", "services.orders.settings:OrdersSettings"),
    )
)
WORKERS: tuple[WorkerSpec, ...] = (
    WorkerSpec("orders", "orders-relay", "services.orders.relay:run"),
    WorkerSpec("orders", "orders-payments", "services.orders.consumers:run_payments"),
    WorkerSpec("orders", "orders-notifications", "services.orders.consumers:run_notifications"),
)
# fmt: on


def learner_service(design: str) -> ServiceSpec:
    return next(spec for spec in LEARNER_SERVICES if spec.design == design)


BROKER_DESIGNS = frozenset({"orders"})
"""Designs whose services and workers need the Kafka broker; the others run without one."""

MAX_INSTANCES = 8
"""The most instances ``--scale`` starts of one worker (consumers beyond the partition count idle)."""


def scale_workers(workers: Sequence[WorkerSpec], scale: Mapping[str, int]) -> tuple[WorkerSpec, ...]:
    """Every instance to run: ``scale[role]`` of each worker, one where the role is not named."""
    return tuple(spec.instance(n) for spec in workers for n in range(1, scale.get(spec.role, 1) + 1))


def parse_scale(text: str, workers: Sequence[WorkerSpec] = WORKERS) -> dict[str, int]:
    """``relay=2,payments=2`` as ``{"relay": 2, "payments": 2}``; ``ValueError`` with a one-line
    reason for an unknown role or a count that is not a whole number from 1 to ``MAX_INSTANCES``."""
    roles = sorted({spec.role for spec in workers})
    scale: dict[str, int] = {}
    for item in (part.strip() for part in text.split(",")):
        role, _, count = item.partition("=")
        if role not in roles:
            raise ValueError(f"cannot scale {role!r} in {item!r}: choose among {', '.join(roles)}")
        if not count.isdigit() or not 1 <= int(count) <= MAX_INSTANCES:
            raise ValueError(f"{item!r}: the number of instances must be 1 to {MAX_INSTANCES}, e.g. relay=2")
        scale[role] = int(count)
    return scale
