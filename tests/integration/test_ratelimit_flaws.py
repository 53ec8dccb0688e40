"""The naive limiter's flaws and the hardened fix, as numbers, every run.

- Two worker processes: the naive limiter counts per process and admits more than the limit; the
  hardened one admits exactly the limit.
- The window edge: the naive fixed window admits twice the limit within one window's length; the
  hardened sliding log never more than the limit in any interval of that length.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from loadtests.designs import most_in_any_window
from services.lab.infra import InfraEndpoints
from tests.support.ratelimit import fire, run_limiter

pytestmark = pytest.mark.integration

LIMIT = 50
BURST = 500
# 250 requests landing at once on each worker queue for the event loop far longer than the default
# 50 ms budget, and a fail-open limiter whose checks time out admits everything. This test is about
# atomicity across processes, so it gives the checks a budget the burst cannot exhaust; the
# fail-open-under-overload trade-off is documented in docs/designs/ratelimit.md.
BURST_BUDGET_MS = 5000


async def _burst(
    tmp_path: Path, infra: InfraEndpoints, variant: str, **settings: str | int
) -> tuple[int, int]:
    """500 concurrent requests with one key against two workers: (admitted, workers that answered)."""
    with run_limiter(
        variant, infra=infra, log_dir=tmp_path, workers=2, limit=LIMIT, window_s=60, **settings
    ) as app:
        answers = await fire(app.url, count=BURST, headers={"X-API-Key": f"burst-{variant}"})
    assert {a.status for a in answers} <= {200, 429}
    admitted = [a for a in answers if a.status == 200]
    return len(admitted), len({a.body["worker_pid"] for a in answers if a.status == 200})


@pytest.mark.parametrize("algorithm", ["sliding-log", "sliding-counter"])
async def test_hardened_admits_exactly_the_limit_across_two_workers(
    tmp_path: Path, infra: InfraEndpoints, algorithm: str
) -> None:
    admitted, _ = await _burst(
        tmp_path, infra, "hardened", algorithm=algorithm, redis_timeout_ms=BURST_BUDGET_MS
    )
    assert admitted == LIMIT


async def test_naive_admits_more_than_the_limit_across_two_workers(
    tmp_path: Path, infra: InfraEndpoints
) -> None:
    admitted, workers = await _burst(tmp_path, infra, "naive")
    assert workers == 2, "both workers must have answered for per-process counting to show"
    assert admitted > LIMIT
    assert admitted <= 2 * LIMIT  # each process enforces the limit on its own share


EDGE_LIMIT = 10
EDGE_WINDOW_S = 2


async def _edge_bursts(url: str, key: str) -> list[float]:
    """A full burst 0.3 s before a window boundary and another 0.2 s after it: admitted times."""
    boundary = (time.time() // EDGE_WINDOW_S + 1) * EDGE_WINDOW_S
    if boundary - time.time() < 0.6:  # too close to aim before it: take the next one
        boundary += EDGE_WINDOW_S
    admitted: list[float] = []
    for moment in (boundary - 0.3, boundary + 0.2):
        await asyncio.sleep(max(0.0, moment - time.time()))
        answers = await fire(url, count=EDGE_LIMIT, headers={"X-API-Key": key})
        admitted += [float(a.body["served_at"]) for a in answers if a.status == 200]  # type: ignore[arg-type]
    return admitted


async def test_naive_window_edge_admits_twice_the_limit(tmp_path: Path, infra: InfraEndpoints) -> None:
    with run_limiter("naive", infra=infra, log_dir=tmp_path, limit=EDGE_LIMIT, window_s=EDGE_WINDOW_S) as app:
        admitted = await _edge_bursts(app.url, "edge-naive")
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
        admitted = await _edge_bursts(app.url, "edge-hardened")
    assert len(admitted) == EDGE_LIMIT  # the second burst is inside the same sliding window
    assert most_in_any_window(admitted, window_s=EDGE_WINDOW_S) <= EDGE_LIMIT
