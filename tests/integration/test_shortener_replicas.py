"""Delete on one replica → 410 on every replica, for both variants.

The hardened replicas answer from a shared Redis cache; the delete overwrites each entry with a
tombstone, so the 410s come at once and without a database read. The naive replicas read the database
every time. With the optional replica-local cache on (30 s TTL), the delete's broadcast must reach the
other replica long before its copy would expire.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.support.cluster import on_each_redis_mode
from tests.support.shortener import CONFIGS, FAST_ENV, Call, Reply, create, replicas, send_all, total

pytestmark = pytest.mark.integration

LINKS = 20
EXPECTED_DB_READS_AFTER_DELETE = {"naive": 2 * LINKS, "hardened": 0, "hardened-hot": 0}
# A broadcast travels through Redis pub/sub: delivered within milliseconds, not synchronously with
# the DELETE's answer. Far below the local copies' 30 s lifetime.
BROADCAST_BOUND_S = {"naive": 0.0, "hardened": 0.0, "hardened-hot": 2.0}


async def _until_all_gone(url: str, calls: list[Call], *, within_s: float) -> list[Reply]:
    deadline = time.monotonic() + within_s
    while True:
        replies = await send_all(url, calls, concurrency=10)
        if all(reply.status == 410 for reply in replies) or time.monotonic() >= deadline:
            return replies
        await asyncio.sleep(0.02)


@on_each_redis_mode("config", CONFIGS, on_cluster=lambda config: config != "naive")  # naive: no Redis
async def test_a_deleted_link_is_gone_on_every_replica(
    config: str, infra_env: dict[str, str], tmp_path: Path
) -> None:
    variant, extra_env = CONFIGS[config]
    with replicas(variant, env={**infra_env, **FAST_ENV, **extra_env}, log_dir=tmp_path) as apps:
        urls = [app.url for app in apps]
        codes = [create(urls[0], long_url=f"https://example.com/{i}") for i in range(LINKS)]
        redirects = [Call("GET", f"/{code}") for code in codes]
        warm = await asyncio.gather(*(send_all(url, redirects * 2, concurrency=10) for url in urls))
        assert {reply.status for batch in warm for reply in batch} == {302}

        deletes = [Call("DELETE", f"/api/v1/urls/{code}") for code in codes]
        assert {reply.status for reply in await send_all(urls[0], deletes, concurrency=1)} == {204}
        before = total(urls, "shortener_db_lookups")
        bound = BROADCAST_BOUND_S[config]
        after_delete = await asyncio.gather(
            *(_until_all_gone(url, redirects, within_s=bound) for url in urls)
        )
        db_reads = total(urls, "shortener_db_lookups") - before

    assert [[reply.status for reply in batch] for batch in after_delete] == [[410] * LINKS] * 2
    assert db_reads == EXPECTED_DB_READS_AFTER_DELETE[config]
