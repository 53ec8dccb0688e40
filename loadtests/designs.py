"""What the bench knows of each design: its Locust users, its services, how to reset it between
runs, how to audit it afterwards, and what the instructor says about it."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from services.lab.infra import InfraEndpoints
from services.lab.supervisor import Supervisor

HERE = Path(__file__).parent


@dataclass(frozen=True)
class BenchContext:
    supervisor: Supervisor
    endpoints: InfraEndpoints


Reset = Callable[[BenchContext, str], None]
Audit = Callable[[BenchContext, str, Path], "AuditResult"]


@dataclass(frozen=True)
class AuditResult:
    """The design's invariants as numbers, and whether they hold (every one at its correct value)."""

    invariants: Mapping[str, float | int]
    holds: bool
    explanation: str

    def to_json(self) -> dict[str, Any]:
        return {"invariants": dict(self.invariants), "holds": self.holds, "explanation": self.explanation}


@dataclass(frozen=True)
class BenchDesign:
    name: str
    title: str
    locustfile: Path
    services: Mapping[str, str]  # variant -> the lab's component name
    reset: Reset
    audit: Audit
    what_to_watch: str


# -- rate limiter --------------------------------------------------------------------------------

# Admissions are timed by the server (served_at), a little after the limiter decided; two
# admissions exactly one window apart can appear a few milliseconds closer. Not a violation.
TIMING_TOLERANCE_S = 0.05


def _reset_ratelimit(context: BenchContext, variant: str) -> None:
    """The naive counts live in its processes: restart them. The hardened ones live in Redis."""
    if variant == "naive":
        context.supervisor.restart(["ratelimit-naive"])
        return
    client = redis.Redis.from_url(context.endpoints.redis_url)
    try:
        keys = list(client.scan_iter(match="rl:*", count=1000))
        for start in range(0, len(keys), 500):
            client.unlink(*keys[start : start + 500])
    finally:
        client.close()


def most_in_any_window(timestamps: list[float], *, window_s: float) -> int:
    """The largest number of timestamps inside any half-open interval of length ``window_s``."""
    ordered = sorted(timestamps)
    most, start = 0, 0
    for end, stamp in enumerate(ordered):
        while stamp - ordered[start] >= window_s:
            start += 1
        most = max(most, end - start + 1)
    return most


def _audit_ratelimit(context: BenchContext, variant: str, run_dir: Path) -> AuditResult:
    """Over-admitted requests: for each hot key, admissions beyond the limit in its busiest window."""
    from services.ratelimit.settings import RateLimitSettings

    settings = RateLimitSettings()
    admitted: dict[str, list[float]] = {}
    for path in run_dir.glob("admitted-*.json"):
        for key, stamps in json.loads(path.read_text()).items():
            admitted.setdefault(key, []).extend(stamps)
    window = settings.ratelimit_window_s - TIMING_TOLERANCE_S
    busiest = {key: most_in_any_window(stamps, window_s=window) for key, stamps in admitted.items()}
    over = sum(max(0, most - settings.ratelimit_limit) for most in busiest.values())
    return AuditResult(
        invariants={
            "over_admitted_requests": over,
            "hot_keys": len(busiest),
            "limit_per_window": settings.ratelimit_limit,
            "most_admitted_in_one_window": max(busiest.values(), default=0),
        },
        holds=over == 0 and bool(busiest),
        explanation=(
            f"each hot key may get {settings.ratelimit_limit} requests per {settings.ratelimit_window_s} s; "
            f"the busiest got {max(busiest.values(), default=0)}"
        ),
    )


RATELIMIT = BenchDesign(
    name="ratelimit",
    title="Rate limiter",
    locustfile=HERE / "ratelimit_users.py",
    services={"naive": "ratelimit-naive", "hardened": "ratelimit-hardened"},
    reset=_reset_ratelimit,
    audit=_audit_ratelimit,
    what_to_watch=(
        "Both variants run two worker processes. Watch the hot keys: the naive limiter counts in each "
        "process separately, so a hot key gets its limit once per worker; the hardened one counts in "
        "Redis, once for everybody."
    ),
)

DESIGNS: dict[str, BenchDesign] = {design.name: design for design in (RATELIMIT,)}
