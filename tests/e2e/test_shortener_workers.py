"""The hardened shortener the way the lab serves it: one uvicorn with two worker processes and
``PROMETHEUS_MULTIPROC_DIR`` set, so /metrics adds up every worker's counters."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.environment import counter
from tests.support.servers import run_app
from tests.support.shortener import APP, FAST_ENV, Call, send_all

pytestmark = pytest.mark.e2e


async def test_two_workers_share_the_pool_the_cache_and_one_metrics_view(
    infra_env: dict[str, str], tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {
        **infra_env,
        **FAST_ENV,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "LAB_SHORTENER_DB_LOOKUP_DELAY_MS": "300",
    }
    with run_app(APP, "hardened", env=env, log_dir=tmp_path, workers=2) as app:
        creates = [
            Call("POST", "/api/v1/urls", {"long_url": f"https://example.com/{i}"}) for i in range(2000)
        ]
        created = await send_all(app.url, creates, concurrency=20)
        codes = {reply.json()["code"] for reply in created}
        code = next(iter(codes))
        redirects = await send_all(app.url, [Call("GET", f"/{code}")] * 200, concurrency=200)
        leased = counter(app.url, "shortener_keypool_leased_codes")
        db_reads = counter(app.url, "shortener_db_lookups")
    assert {reply.status for reply in created} == {201}
    assert len(codes) == 2000
    assert 2000 <= leased <= 2000 + 2 * int(FAST_ENV["LAB_SHORTENER_KEYPOOL_BATCH_SIZE"])
    assert [reply.status for reply in redirects] == [302] * 200
    assert db_reads == 1  # 200 concurrent misses spread over two workers: one database read
