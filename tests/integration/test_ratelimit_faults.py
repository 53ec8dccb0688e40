"""The hardened limiter when Redis dies, stalls and comes back: the failure policy decides, a stalled
Redis never stalls requests beyond the budget, and limiting resumes by itself.

Each test gets its own Valkey server, so killing it disturbs nobody else.
"""

from __future__ import annotations

import dataclasses
import signal
import time
from pathlib import Path

import httpx
import pytest

from loadtests.environment import counter
from services.lab import processes
from services.lab.infra import InfraEndpoints
from tests.support.ratelimit import RESOURCE, run_limiter
from tests.support.valkey import OwnRedis

pytestmark = pytest.mark.integration

BUDGET_MS = 50
# What a request may take beyond the budget on a busy 2-core machine: HTTP, the event loop, the test client.
MARGIN_S = 0.5


def _limiter(own_redis: OwnRedis, infra: InfraEndpoints, tmp_path: Path, on_error: str, limit: int = 3):
    swapped = dataclasses.replace(infra, redis_url=own_redis.url)
    return run_limiter(
        "hardened",
        infra=swapped,
        log_dir=tmp_path,
        limit=limit,
        on_redis_error=on_error,
        redis_timeout_ms=BUDGET_MS,
    )


def _backend_errors(client: httpx.Client) -> float:
    return counter(str(client.base_url), "ratelimit_backend_errors", {"policy": "default"})


def test_fail_open_admits_and_counts_when_redis_is_killed(
    own_redis: OwnRedis, infra: InfraEndpoints, tmp_path: Path
) -> None:
    with _limiter(own_redis, infra, tmp_path, "open") as app, httpx.Client(base_url=app.url) as client:
        assert client.get(RESOURCE).status_code == 200
        own_redis.kill()
        statuses = [client.get(RESOURCE).status_code for _ in range(20)]
        errors = _backend_errors(client)
    assert statuses == [200] * 20  # well past the limit of 3: admitted, because the policy says open
    assert errors >= 20


def test_fail_closed_answers_503_with_retry_after_when_redis_is_killed(
    own_redis: OwnRedis, infra: InfraEndpoints, tmp_path: Path
) -> None:
    with _limiter(own_redis, infra, tmp_path, "closed") as app, httpx.Client(base_url=app.url) as client:
        assert client.get(RESOURCE).status_code == 200
        own_redis.kill()
        responses = [client.get(RESOURCE) for _ in range(5)]
    for response in responses:
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "/problems/rate-limiter-unavailable"
        assert int(response.headers["retry-after"]) >= 1


@pytest.mark.parametrize("on_error", ["open", "closed"])
def test_a_paused_redis_never_stalls_a_request_beyond_the_budget(
    own_redis: OwnRedis, infra: InfraEndpoints, tmp_path: Path, on_error: str
) -> None:
    with _limiter(own_redis, infra, tmp_path, on_error) as app, httpx.Client(base_url=app.url) as client:
        assert client.get(RESOURCE).status_code == 200
        own_redis.signal(signal.SIGSTOP)
        timings = []
        for _ in range(20):
            started = time.perf_counter()
            status = client.get(RESOURCE).status_code
            timings.append((time.perf_counter() - started, status))
    assert {status for _, status in timings} == ({200} if on_error == "open" else {503})
    slowest = max(took for took, _ in timings)
    assert slowest < BUDGET_MS / 1000 + MARGIN_S, f"slowest answer took {slowest:.3f}s"


def test_limiting_resumes_by_itself_when_redis_returns(
    own_redis: OwnRedis, infra: InfraEndpoints, tmp_path: Path
) -> None:
    with _limiter(own_redis, infra, tmp_path, "open") as app, httpx.Client(base_url=app.url) as client:
        assert client.get(RESOURCE).status_code == 200
        own_redis.kill()
        assert client.get(RESOURCE).status_code == 200  # fail-open while it is gone
        own_redis.start()  # a new, empty server on the same port: scripts must be loaded again

        def limited() -> bool:
            return client.get(RESOURCE).status_code == 429

        assert processes.wait_for(limited, timeout_s=10)
        remaining = client.get(RESOURCE).headers["ratelimit"]
    assert remaining.startswith('"default";r=0;')
