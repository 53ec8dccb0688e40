"""Settings of the control plane: which infrastructure, where state lives, which ports.

Every field is an environment variable with the ``LAB_`` prefix (``postgres_port`` is
``LAB_POSTGRES_PORT``). The processes ``lab up`` starts inherit the same ``LAB_*`` environment,
with the infrastructure URLs filled in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from services.core.settings import (
    DEFAULT_KAFKA_PORT,
    DEFAULT_POSTGRES_PORT,
    DEFAULT_REDIS_PORT,
    CoreSettings,
)

InfraMode = Literal["embedded", "external", "containers", "compose"]

Port = int


def env_name(field: str) -> str:
    """The environment variable that sets a settings field, for messages that tell users what to change."""
    return f"LAB_{field.upper()}"


class LabSettings(CoreSettings):
    """What ``lab up`` starts and where."""

    infra: InfraMode = "embedded"
    state_dir: Path = Path(".lab")
    host: str = "127.0.0.1"

    # Embedded servers. 0 picks a free port at start-up (the test suite uses that).
    postgres_port: Port = Field(default=DEFAULT_POSTGRES_PORT, ge=0, le=65535)
    redis_port: Port = Field(default=DEFAULT_REDIS_PORT, ge=0, le=65535)
    kafka_port: Port = Field(default=DEFAULT_KAFKA_PORT, ge=0, le=65535)
    # Server options passed as ``-c name=value``; e.g. LAB_POSTGRES_OPTIONS='{"fsync": "off"}'.
    postgres_options: dict[str, str] = Field(default_factory=lambda: {"max_connections": "300"})

    startup_timeout_s: float = Field(default=30.0, gt=0)
    # How long `lab check` waits for the variant under check to answer /healthz before it reports the
    # variant as hung (a learner's start-up may wait on something that never comes).
    check_startup_timeout_s: float = Field(default=30.0, gt=0)
    stop_timeout_s: float = Field(default=10.0, gt=0)

    # The services of every design, naive and hardened side by side.
    shortener_naive_port: Port = 8101
    shortener_hardened_port: Port = 8102
    ratelimit_naive_port: Port = 8201
    ratelimit_hardened_port: Port = 8202
    orders_naive_port: Port = 8301
    orders_hardened_port: Port = 8302
    inventory_port: Port = 8303
    # A learner's own variants, started only once `lab exercise start DESIGN` has scaffolded them.
    shortener_mine_port: Port = 8103
    ratelimit_mine_port: Port = 8203
    orders_mine_port: Port = 8305
    payment_gateway_port: Port = 8304

    def port_of(self, field: str) -> int:
        value = getattr(self, field)
        assert isinstance(value, int), field
        return value
