"""What the bench needs from a running lab, stated as an interface.

The bench knows no supervisor, state file or infrastructure provider: the ``lab`` command, which sits
above both, brings the lab up and hands the bench an object with these methods. A test may hand it
anything that has them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


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
        """The base URL of a service the lab runs (``shortener-hardened``…)."""
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
