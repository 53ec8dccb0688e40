"""Code generation: the naive collision check degrades as the key space fills; the hardened key pool
hands out distinct codes from several processes with no check at all."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import pytest

from loadtests.environment import counter
from tests.support.shortener import APP, FAST_ENV, Call, create, replicas, run_app, send_all, total

pytestmark = pytest.mark.integration

CREATES = 10_000
LOW_WATER = int(FAST_ENV["LAB_SHORTENER_KEYPOOL_LOW_WATER"])
BATCH = int(FAST_ENV["LAB_SHORTENER_KEYPOOL_BATCH_SIZE"])


async def _free_codes(pg: asyncpg.Connection) -> int:
    count: int = await pg.fetchval("SELECT count(*) FROM shortener_hardened.key_pool WHERE leased_at IS NULL")
    return count


async def _empty_pool(pg: asyncpg.Connection) -> None:
    """Free codes removed (never handed out, so nothing is lost): the replicas fill it again."""
    if await pg.fetchval("SELECT to_regclass('shortener_hardened.key_pool') IS NOT NULL"):
        await pg.execute("DELETE FROM shortener_hardened.key_pool WHERE leased_at IS NULL")


async def _eventually_free(pg: asyncpg.Connection, *, at_least: int) -> int:
    """The free codes once the generator has topped the pool up (it checks every 0.2 s)."""
    deadline = time.monotonic() + 30
    while (free := await _free_codes(pg)) < at_least and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    return free


async def test_hardened_10000_creates_from_two_processes_get_10000_distinct_codes(
    infra_env: dict[str, str], pg: asyncpg.Connection, tmp_path: Path
) -> None:
    await _empty_pool(pg)  # another test's replicas may have filled it to their (default) target
    with replicas("hardened", env={**infra_env, **FAST_ENV}, log_dir=tmp_path) as apps:
        urls = [app.url for app in apps]
        free_before = await _free_codes(pg)
        generated_before = total(urls, "shortener_keypool_generated_codes")
        calls = [
            Call("POST", "/api/v1/urls", {"long_url": f"https://example.com/{i}"})
            for i in range(CREATES // 2)
        ]

        # Both processes at once, 20 connections each.
        batches = await asyncio.gather(*(send_all(url, calls, concurrency=20) for url in urls))
        replies = [reply for batch in batches for reply in batch]

        statuses = {r.status for r in replies}
        codes = {r.json()["code"] for r in replies}
        stored = await pg.fetchval(
            "SELECT count(*) FROM shortener_hardened.links WHERE code = any($1)", list(codes)
        )
        leased = total(urls, "shortener_keypool_leased_codes")
        free_after = await _eventually_free(pg, at_least=LOW_WATER)
        generated = total(urls, "shortener_keypool_generated_codes") - generated_before
        retries = total(urls, "shortener_create_retries")
    assert statuses == {201}
    assert len(codes) == CREATES
    assert stored == CREATES
    assert CREATES <= leased <= CREATES + len(apps) * BATCH  # at most one unused batch per process
    assert generated >= leased - free_before > 0  # the generator refilled the pool as it drained
    assert free_after >= LOW_WATER
    assert retries == 0  # no collision check, and no collision


async def test_naive_retries_grow_as_the_key_space_fills(
    infra_env: dict[str, str], pg: asyncpg.Connection, tmp_path: Path
) -> None:
    """A 2-character code space holds 3,844 codes; four rounds of 600 creates fill it to 62 %."""
    env = {**infra_env, **FAST_ENV, "LAB_SHORTENER_CODE_LENGTH": "2"}
    with run_app(APP, "naive", env=env, log_dir=tmp_path) as app:
        await pg.execute("DELETE FROM shortener_naive.links WHERE length(code) = 2")
        retries_per_round = []
        for round_ in range(4):
            before = counter(app.url, "shortener_create_retries")
            calls = [
                Call("POST", "/api/v1/urls", {"long_url": f"https://e.com/{round_}/{i}"}) for i in range(600)
            ]
            replies = await send_all(app.url, calls, concurrency=8)
            assert {r.status for r in replies} == {201}
            retries_per_round.append(counter(app.url, "shortener_create_retries") - before)
    first, second, third, fourth = retries_per_round
    assert first < second < third < fourth, retries_per_round
    assert fourth >= 5 * first, retries_per_round
    assert fourth >= 300, retries_per_round  # expected ≈ 700: more than one retry per create at the end


async def test_a_custom_alias_equal_to_a_pooled_code_is_handled(
    infra_env: dict[str, str], pg: asyncpg.Connection, tmp_path: Path
) -> None:
    """An alias that equals a code still free in the pool retires it; an alias that equals a code
    already leased into this process's memory makes that code's turn a counted retry, never a 500."""
    with run_app(APP, "hardened", env={**infra_env, **FAST_ENV}, log_dir=tmp_path) as app:
        started = await pg.fetchval("SELECT now()")
        first = create(app.url)  # leases this process's first batch
        in_memory = await pg.fetchval(
            "SELECT code FROM shortener_hardened.key_pool p WHERE leased_at >= $1 AND code <> $2"
            " AND NOT EXISTS (SELECT 1 FROM shortener_hardened.links l WHERE l.code = p.code) LIMIT 1",
            started,
            first,
        )
        still_free = await pg.fetchval(
            "SELECT code FROM shortener_hardened.key_pool WHERE leased_at IS NULL LIMIT 1"
        )
        aliases = [create(app.url, custom_alias=code) for code in (in_memory, still_free)]
        calls = [
            Call("POST", "/api/v1/urls", {"long_url": f"https://example.com/{i}"}) for i in range(2 * BATCH)
        ]
        replies = await send_all(app.url, calls, concurrency=4)
        retries = counter(app.url, "shortener_create_retries")
        retired = await pg.fetchval(
            "SELECT leased_at IS NOT NULL FROM shortener_hardened.key_pool WHERE code = $1", still_free
        )
    codes = {reply.json()["code"] for reply in replies}
    assert aliases == [in_memory, still_free]
    assert {reply.status for reply in replies} == {201}
    assert len(codes) == 2 * BATCH
    assert not codes & {in_memory, still_free}
    assert retries == 1  # the leased copy of the alias came up once and was skipped
    assert retired
