"""Clicks: 1,000 redirects of one code → ``clicks == 1000`` once flushed, for both variants; and the
hardened flush neither loses nor double-counts a batch left behind by a crashed instance."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from tests.support.servers import run_app
from tests.support.shortener import APP, CONFIGS, FAST_ENV, Call, create, replicas, send_all

pytestmark = pytest.mark.integration

REDIRECTS = 1000


async def _stored_clicks(pg: asyncpg.Connection, variant: str, code: str, *, expect: int) -> int:
    """The row's count once it reaches ``expect`` (the hardened flush runs every 0.2 s), or after 15 s."""
    deadline = time.monotonic() + 15
    query = f"SELECT clicks FROM shortener_{variant}.links WHERE code = $1"
    while (clicks := await pg.fetchval(query, code)) < expect and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    stored: int = clicks
    return stored


async def _eventually_none_left(redis: aioredis.Redis, *keys: str) -> int:
    deadline = time.monotonic() + 15
    while (left := await redis.exists(*keys)) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    count: int = left
    return count


@pytest.mark.parametrize("config", list(CONFIGS))
async def test_1000_redirects_are_1000_clicks(
    config: str, infra_env: dict[str, str], pg: asyncpg.Connection, tmp_path: Path
) -> None:
    variant, extra_env = CONFIGS[config]
    with replicas(variant, env={**infra_env, **FAST_ENV, **extra_env}, log_dir=tmp_path) as apps:
        urls = [app.url for app in apps]
        code = create(urls[0])
        calls = [Call("GET", f"/{code}")] * (REDIRECTS // len(urls))
        batches = await asyncio.gather(*(send_all(url, calls, concurrency=25) for url in urls))
        assert sum(reply.status == 302 for batch in batches for reply in batch) == REDIRECTS

        stored = await _stored_clicks(pg, variant, code, expect=REDIRECTS)
        stats = await asyncio.gather(
            *(send_all(url, [Call("GET", f"/api/v1/urls/{code}")], concurrency=1) for url in urls)
        )
        reported = [batch[0].json()["clicks"] for batch in stats]
    assert stored == REDIRECTS
    assert reported == [REDIRECTS, REDIRECTS]


async def test_a_crashed_flush_is_applied_exactly_once(
    infra_env: dict[str, str],
    pg: asyncpg.Connection,
    redis_client: aioredis.Redis,
    tmp_path: Path,
    unique_id: str,
) -> None:
    """Two batches a dead instance left in Redis: one never applied (7 clicks), one applied but not
    yet deleted when it died (5 clicks). The survivors add the 7 and only the 7."""
    env = {**infra_env, **FAST_ENV, "LAB_SHORTENER_CLICK_RECOVERY_INTERVAL_S": "0.2"}
    with run_app(APP, "hardened", env=env, log_dir=tmp_path) as app:
        code = create(app.url)
        never_applied, applied = (f"shortener:hardened:clicks:batch:{unique_id}-{n}" for n in (1, 2))
        await pg.execute(
            "INSERT INTO shortener_hardened.click_batches (batch_id) VALUES ($1)",
            applied.rsplit(":", 1)[1],
        )
        await redis_client.hset(applied, code, 5)
        await redis_client.hset(never_applied, code, 7)

        stored = await _stored_clicks(pg, "hardened", code, expect=7)
        leftovers = await _eventually_none_left(redis_client, never_applied, applied)
        await asyncio.sleep(0.5)  # a few more flush rounds: nothing may be added twice
        final = await _stored_clicks(pg, "hardened", code, expect=7)
    assert (stored, leftovers, final) == (7, 0, 7)
