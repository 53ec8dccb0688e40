"""Settings of the rate-limiter design (``LAB_RATELIMIT_*``, and ``LAB_TRUSTED_PROXIES``)."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from typing import Literal

from pydantic import BaseModel, Field

from services.core.settings import CoreSettings

Algorithm = Literal["sliding-log", "sliding-counter"]
FailureMode = Literal["open", "closed"]


class PolicyOverride(BaseModel):
    """A route's own quota, e.g. ``{"POST /api/v1/resource": {"name": "writes", "limit": 20}}``."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,31}$")
    limit: int = Field(ge=1)
    window_s: int = Field(default=60, ge=1)


class RateLimitSettings(CoreSettings):
    """Knobs a learner turns: the quota, the algorithm, and what to do when Redis fails."""

    ratelimit_limit: int = Field(default=100, ge=1, description="requests admitted per window")
    ratelimit_window_s: int = Field(default=60, ge=1, description="window length in seconds")
    # Per-route quotas, keyed "METHOD /path"; routes not listed use the default policy above.
    ratelimit_route_policies: dict[str, PolicyOverride] = Field(default_factory=dict)
    # sliding-log: exact, memory grows with the limit; sliding-counter: approximate, two counters.
    ratelimit_algorithm: Algorithm = "sliding-log"
    # open: admit when Redis fails (availability first); closed: answer 503 (protection first).
    ratelimit_on_redis_error: FailureMode = "open"
    # The longest a check may wait on Redis, counted from when it is sent; a stalled Redis must not
    # stall requests.
    ratelimit_redis_timeout_ms: int = Field(default=50, ge=1)
    # Checks one app-server process lets wait on Redis at once; past it, requests are shed (503 with
    # Retry-After), never admitted unchecked. Redis answers a batch of this size in a millisecond or
    # two, so only a flood the process cannot serve reaches it.
    ratelimit_max_in_flight: int = Field(default=1024, ge=1)
    # Peers whose X-Forwarded-For is believed (e.g. the lab's nginx). Nobody by default.
    trusted_proxies: list[IPv4Network | IPv6Network] = Field(default_factory=list)
    # The learner's own variant ("mine"): the opener of its adapters, as module:attribute. The default
    # is the file 'lab exercise start ratelimit' scaffolds.
    ratelimit_mine: str = "services.ratelimit.mine:open_limiter"
