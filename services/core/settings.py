"""Settings every service process reads from its environment (prefix ``LAB_``).

Each design extends :class:`CoreSettings` with its own knobs. Nothing here is read at import time:
``create_app(settings=...)`` receives an instance, and tests build their own.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

# Below the kernel's ephemeral port range (32768-60999 on Linux): an outgoing connection can never
# hold them, even for the minute a closed one lingers in TIME_WAIT.
DEFAULT_POSTGRES_PORT = 15432
DEFAULT_REDIS_PORT = 16379
DEFAULT_KAFKA_PORT = 19092


RedisMode = Literal["standalone", "cluster"]


class CoreSettings(BaseSettings):
    """Where the infrastructure is and how every service talks to it.

    The defaults point at the embedded servers that ``lab up`` starts, so a service started by hand
    next to a running lab finds them without configuration.
    """

    model_config = SettingsConfigDict(env_prefix="LAB_", extra="ignore", frozen=True)

    postgres_url: str = f"postgresql://postgres@127.0.0.1:{DEFAULT_POSTGRES_PORT}/postgres"
    redis_url: str = f"redis://127.0.0.1:{DEFAULT_REDIS_PORT}/0"
    # "cluster": ``redis_url`` names one node of a Redis Cluster and every client follows the slot
    # map from there (MOVED, ASK); the embedded lab then runs three primaries. See services/core/cluster.py.
    redis_mode: RedisMode = "standalone"
    kafka_bootstrap: str = f"127.0.0.1:{DEFAULT_KAFKA_PORT}"

    pg_pool_min_size: int = Field(default=1, ge=0)
    pg_pool_max_size: int = Field(default=10, ge=1)
    pg_command_timeout_s: float = Field(default=10.0, gt=0)
    redis_max_connections: int = Field(default=200, ge=1)
    redis_socket_timeout_s: float = Field(default=2.0, gt=0)
    kafka_request_timeout_ms: int = Field(default=10_000, ge=100)
    # Real Kafka supports idempotent producers; the embedded Tansu broker rejects InitProducerId.
    # The hardened designs never rely on it: their consumers deduplicate.
    kafka_enable_idempotence: bool = False
    health_timeout_s: float = Field(default=2.0, gt=0)

    # Requests whose headers add up to more are refused with 431 before any handler runs.
    max_header_bytes: int = Field(default=16_384, ge=1024)

    log_level: str = "INFO"
    # Record request counts and latencies per route in /metrics. Off makes the hot path a little
    # shorter, which matters when comparing against a bare endpoint.
    http_metrics: bool = True
    # Python's garbage collector looks at the young generation every N allocations (700 by default)
    # and walks every live object now and then; under a spike of thousands of requests in flight that
    # was 40% of an order's CPU. Larger means rarer collections; 0 keeps Python's default.
    # See services/core/gc_tuning.py.
    gc_young_threshold: int = Field(default=50_000, ge=0)
    admin_token: SecretStr | None = None


def invalid_settings(exc: ValidationError) -> str:
    """A settings class's validation error as one line naming each ``LAB_*`` variable at fault."""
    problems = "; ".join(f"LAB_{str(error['loc'][0]).upper()}: {error['msg']}" for error in exc.errors())
    return f"invalid setting: {problems}"
