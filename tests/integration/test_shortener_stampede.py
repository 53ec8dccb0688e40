"""A stampede: 200 concurrent first requests for one uncached code, split over two replicas.

The database read is slowed by an injected delay so every request arrives while the first read is
still in flight. The naive variant reads PostgreSQL once per request; the hardened variant once in
all, for a link and for a code that does not exist (negative caching) alike.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.cluster import on_each_redis_mode
from tests.support.shortener import FAST_ENV, Call, create, replicas, send_all, total

pytestmark = pytest.mark.integration

REQUESTS = 200
EXPECTED_DB_READS = {"naive": REQUESTS, "hardened": 1}


@on_each_redis_mode("variant", ["naive", "hardened"], on_cluster=lambda variant: variant == "hardened")
@pytest.mark.parametrize(("existing", "status"), [(True, 302), (False, 404)], ids=["link", "unknown-code"])
async def test_concurrent_first_requests_read_the_database(
    variant: str, existing: bool, status: int, infra_env: dict[str, str], tmp_path: Path, unique_id: str
) -> None:
    env = {**infra_env, **FAST_ENV, "LAB_SHORTENER_DB_LOOKUP_DELAY_MS": "300"}
    with replicas(variant, env=env, log_dir=tmp_path) as apps:
        urls = [app.url for app in apps]
        code = create(urls[0]) if existing else f"none{unique_id}"
        before = total(urls, "shortener_db_lookups")
        calls = [Call("GET", f"/{code}")] * (REQUESTS // len(urls))

        batches = await asyncio.gather(*(send_all(url, calls, concurrency=len(calls)) for url in urls))

        statuses = [reply.status for batch in batches for reply in batch]
        db_reads = total(urls, "shortener_db_lookups") - before
    assert statuses == [status] * REQUESTS
    assert db_reads == EXPECTED_DB_READS[variant]
