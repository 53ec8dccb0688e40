"""What the lab runs: a :class:`Component` is one local process with a port, a probe and a log."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

ComponentKind = Literal["infra", "service", "worker"]

Probe = Callable[[], Awaitable[bool]]
"""Answers whether the component serves right now; never raises."""


@runtime_checkable
class ExplainingProbe(Protocol):
    """A probe that keeps why it last answered no, for the message of a component that never serves."""

    last_error: str

    async def __call__(self) -> bool: ...


@dataclass(frozen=True)
class Component:
    """A process the supervisor starts, watches, restarts and stops.

    ``port_setting`` names the environment variable that moves ``port``, so a port conflict can
    tell the user exactly what to change. ``prepare`` runs before every start (e.g. ``initdb`` on
    a fresh data directory). ``user`` runs the process as that system user (PostgreSQL refuses root).
    """

    name: str
    kind: ComponentKind
    argv: tuple[str, ...]
    probe: Probe | None = None
    port: int | None = None
    port_setting: str | None = None
    other_ports: tuple[int, ...] = ()  # it listens on these too (a cluster node's bus), checked as ``port``
    env: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None
    prepare: Callable[[], None] | None = None
    stop_signal: int = signal.SIGTERM
    design: str | None = None
    variant: str | None = None
