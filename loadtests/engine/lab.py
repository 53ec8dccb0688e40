"""What the bench needs from a running lab, stated as an interface.

The bench knows no supervisor, state file or infrastructure provider: the ``lab`` command, which sits
above both, brings the lab up and hands the bench an object with these methods. A test may hand it
anything that has them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class AppSpec:
    """An HTTP app the lab does not run by itself: a reference endpoint of a scenario (a bare
    ``302``…) or a variant under other settings. ``app_factory`` is ``module:function`` taking the
    variant; the lab serves it the way it serves its own services (same servers, same settings,
    ``env`` on top), under the component name the runner gives it."""

    app_factory: str
    variant: str
    env: Mapping[str, str] = field(default_factory=dict)
    workers: int = 1
    # Apps of its own it calls instead of the lab's (a naive order service whose inventory service
    # runs with other settings): each served first, its URL handed over in ``Companion.url_setting``.
    companions: tuple[Companion, ...] = ()


@dataclass(frozen=True)
class Companion:
    component: str
    app: AppSpec
    url_setting: str  # the setting through which the app finds it (LAB_ORDERS_INVENTORY_URL)


class Endpoints(Protocol):
    """Where the infrastructure answers (the auditors read the databases, Redis and the broker)."""

    @property
    def postgres_url(self) -> str: ...

    @property
    def redis_url(self) -> str: ...

    @property
    def kafka_bootstrap(self) -> str: ...


class RunningLab(Protocol):
    @property
    def endpoints(self) -> Endpoints: ...

    def url_of(self, component: str) -> str:
        """The base URL of a service the lab runs or serves (``shortener-hardened``…)."""
        ...

    def serve(self, component: str, app: AppSpec) -> None:
        """Serve ``app`` as ``component`` until the lab is handed back (nothing when it already
        does); from then on it is a component like the others: ``url_of``, ``restart``,
        ``cpu_roots``."""
        ...

    def restart(self, components: Sequence[str]) -> None:
        """Stop and start these components again, fresh (a reset between runs)."""
        ...

    def signal(self, component: str, action: str) -> None:
        """A fault: ``kill``, ``pause`` or ``resume`` the component's processes."""
        ...

    def recover(self) -> None:
        """Resume what was paused and start what was killed: the lab as the run found it."""
        ...

    def cpu_roots(self) -> dict[str, int]:
        """Every running component's root pid by name, the infrastructure's included."""
        ...

    def components(self) -> list[str]:
        """The names a chaos timeline may use."""
        ...

    def admin_token(self) -> str: ...
