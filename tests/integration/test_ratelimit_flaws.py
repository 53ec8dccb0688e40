"""The naive limiter's flaws and the hardened fix, as numbers, every run.

- Two worker processes: the naive limiter counts per process and admits more than the limit; the
  hardened one, at its default settings (quota and 50 ms budget), admits exactly the limit under
  bursts of 300 and 1,000 concurrent one-key requests, with no check degraded.
- The window edge: the naive fixed window admits twice the limit within one window's length; the
  hardened sliding log never more than the limit in any interval of that length.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from loadtests.ratelimit.audit import most_in_any_window
from services.lab.exercises.ratelimit import EDGE_LIMIT, EDGE_WINDOW_S, admitted_around_a_window_edge
from services.lab.infra import InfraEndpoints
from services.ratelimit.settings import RateLimitSettings
from tests.support.cluster import on_each_redis_mode
from tests.support.ratelimit import degraded_checks, fire, run_limiter

pytestmark = pytest.mark.integration

DEFAULT_LIMIT = RateLimitSettings().ratelimit_limit
SHED = {503}  # what an overloaded worker may answer instead of a check: refused, never admitted


@dataclass(frozen=True)
class Burst:
    admitted: int
    refused: int
    shed: int
    workers: int  # worker processes that admitted something
    degraded: float  # checks admitted unchecked, summed over the workers that answered the scrape


async def _burst(tmp_path: Path, infra: InfraEndpoints, variant: str, *, size: int, **settings: str) -> Burst:
    """``size`` concurrent requests with one key against two workers at the default quota."""
    with run_limiter(variant, infra=infra, log_dir=tmp_path, workers=2, **settings) as app:
        answers = await fire(app.url, count=size, headers={"X-API-Key": f"burst-{variant}-{size}"})
        degraded = await degraded_checks(app.url)
    statuses = Counter(a.status for a in answers)
    assert set(statuses) <= {200, 429, *SHED}, statuses
    assert all("retry-after" in a.headers for a in answers if a.status in (429, *SHED))
    return Burst(
        admitted=statuses[200],
        refused=statuses[429],
        shed=sum(statuses[s] for s in SHED),
        workers=len({a.body["worker_pid"] for a in answers if a.status == 200}),
        degraded=degraded,
    )


@on_each_redis_mode("size", [300, 1000], on_cluster=lambda size: size == 1000)
@pytest.mark.parametrize("algorithm", ["sliding-log", "sliding-counter"])
async def test_hardened_admits_exactly_the_limit_under_a_burst_at_its_defaults(
    tmp_path: Path, infra: InfraEndpoints, algorithm: str, size: int
) -> None:
    burst = await _burst(tmp_path, infra, "hardened", size=size, algorithm=algorithm)
    assert burst.admitted == DEFAULT_LIMIT
    assert burst.degraded == 0  # Redis was healthy: no check may have been waved through
    assert burst.admitted + burst.refused + burst.shed == size


async def test_naive_admits_more_than_the_limit_across_two_workers(
    tmp_path: Path, infra: InfraEndpoints
) -> None:
    burst = await _burst(tmp_path, infra, "naive", size=300)
    assert burst.workers == 2, "both workers must have answered for per-process counting to show"
    assert burst.admitted > DEFAULT_LIMIT
    assert burst.admitted <= 2 * DEFAULT_LIMIT  # each process enforces the limit on its own share


async def test_naive_window_edge_admits_twice_the_limit(tmp_path: Path, infra: InfraEndpoints) -> None:
    with run_limiter("naive", infra=infra, log_dir=tmp_path, limit=EDGE_LIMIT, window_s=EDGE_WINDOW_S) as app:
        admitted = await admitted_around_a_window_edge(app.url, "edge-naive")
    assert len(admitted) == 2 * EDGE_LIMIT
    assert most_in_any_window(admitted, window_s=EDGE_WINDOW_S) == 2 * EDGE_LIMIT


async def test_hardened_sliding_log_never_exceeds_the_limit_in_any_window(
    tmp_path: Path, infra: InfraEndpoints
) -> None:
    with run_limiter(
        "hardened",
        infra=infra,
        log_dir=tmp_path,
        workers=2,
        limit=EDGE_LIMIT,
        window_s=EDGE_WINDOW_S,
        algorithm="sliding-log",
    ) as app:
        admitted = await admitted_around_a_window_edge(app.url, "edge-hardened")
    assert len(admitted) == EDGE_LIMIT  # the second burst is inside the same sliding window
    assert most_in_any_window(admitted, window_s=EDGE_WINDOW_S) <= EDGE_LIMIT
