"""The rate limiter's reset and audit: over-admitted requests of the hot keys, from the admissions
the Locust users recorded with the server's own time."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import redis

from loadtests.engine.scenario import AuditResult, BenchContext, Target
from loadtests.environment import counter

# Admissions are timed by the server (served_at), a little after the limiter decided; two
# admissions exactly one window apart can appear a few milliseconds closer. Not a violation.
TIMING_TOLERANCE_S = 0.05


def reset_ratelimit(context: BenchContext, target: Target) -> None:
    """The service restarts, so each run's decision counters start at zero (and the naive counts,
    which live in its processes, with them); the counts kept in Redis are removed."""
    context.lab.restart([target.component])
    client = redis.Redis.from_url(context.endpoints.redis_url)
    try:
        keys = [*client.scan_iter(match="rl:*", count=1000), *client.scan_iter(match="LIMITS*", count=1000)]
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


@dataclass(frozen=True)
class Quota:
    """The limit a run is held to, and where it was read."""

    limit: int
    window_s: float
    source: str


POLICY = re.compile(r";q=(?P<limit>\d+);w=(?P<window>\d+)")


def quota_of(run_dir: Path) -> Quota:
    """The quota a run is held to: the configured one, or a stricter one the service announced for
    the hot keys (its ``RateLimit-Policy``: a lab started with a lower limit than this process
    reads); never a looser one, so no variant passes by announcing a larger quota."""
    from services.ratelimit.settings import RateLimitSettings

    settings = RateLimitSettings()
    configured = (settings.ratelimit_limit, float(settings.ratelimit_window_s))
    announced: set[tuple[int, float]] = set()
    for path in run_dir.glob("announced-*.json"):
        for field in json.loads(path.read_text()).values():
            if match := POLICY.search(field):
                announced.add((int(match["limit"]), float(match["window"])))
    limit = min(limit for limit, _ in {configured, *announced})
    window_s = max(window for _, window in {configured, *announced})
    if (limit, window_s) == configured:
        return Quota(limit, window_s, "as configured" + (", and as announced" if announced else ""))
    told = ", ".join(f"{q} per {w:g} s" for q, w in sorted(announced))
    return Quota(limit, window_s, f"the stricter of the configured quota and the announced {told}")


def audit_ratelimit(context: BenchContext, target: Target, run_dir: Path) -> AuditResult:
    """Over-admitted requests: for each hot key, admissions beyond the limit in its busiest window."""
    quota, busiest, over = _over_admitted(run_dir)
    unchecked = _unchecked_decisions(context.lab.url_of(target.component))
    return AuditResult(
        invariants={
            "over_admitted_requests": over,
            "degraded_checks": unchecked["degraded"],
            "shed_requests": unchecked["shed"],
            "hot_keys": len(busiest),
            "limit_per_window": quota.limit,
            "most_admitted_in_one_window": max(busiest.values(), default=0),
        },
        holds=over == 0 and unchecked["degraded"] == 0 and bool(busiest),
        explanation=(
            f"each hot key may get {quota.limit} requests per {quota.window_s:g} s ({quota.source}); "
            f"the busiest got {max(busiest.values(), default=0)}; {unchecked['degraded']} checks were "
            f"admitted unchecked (degraded) and {unchecked['shed']} requests shed"
        ),
    )


def admissions_so_far(context: BenchContext, target: Target, run_dir: Path) -> dict[str, int]:
    """The live console's counts of a run still going: over-admitted requests of the hot keys from
    the admissions the generator handed in so far, and checks admitted unchecked (degraded)."""
    _, _, over = _over_admitted(run_dir)
    unchecked = _unchecked_decisions(context.lab.url_of(target.component))
    return {"over_admitted_requests": over, "degraded_checks": unchecked["degraded"]}


def _over_admitted(run_dir: Path) -> tuple[Quota, dict[str, int], int]:
    """The quota, each hot key's busiest window, and the admissions beyond the quota in them."""
    quota = quota_of(run_dir)
    busiest = _busiest_windows(run_dir, quota)
    return quota, busiest, sum(max(0, most - quota.limit) for most in busiest.values())


def _busiest_windows(run_dir: Path, quota: Quota) -> dict[str, int]:
    """Per hot key, the most admissions inside any one window (timed by the server)."""
    admitted: dict[str, list[float]] = {}
    for path in run_dir.glob("admitted-*.json"):
        for key, stamps in json.loads(path.read_text()).items():
            admitted.setdefault(key, []).extend(stamps)
    window = quota.window_s - TIMING_TOLERANCE_S
    return {key: most_in_any_window(stamps, window_s=window) for key, stamps in admitted.items()}


def _unchecked_decisions(url: str) -> dict[str, int]:
    """The run's requests that no check counted: admitted because the store failed (degraded), or
    refused with 503 because the server had too many checks in flight (shed)."""
    return {
        "degraded": int(counter(url, "ratelimit_decisions", {"outcome": "degraded"})),
        "shed": int(counter(url, "ratelimit_shed")),
    }
