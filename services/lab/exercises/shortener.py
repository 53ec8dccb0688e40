"""The shortener's stages: no read-before-write on create, one database read for a stampede, a
delete gone everywhere at once, every click counted, and a warm working set off the database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

import asyncpg

from loadtests.environment import counter
from loadtests.shortener.rawhttp import Call, send_all
from services.lab.exercises.scaffold import Flaw, ScaffoldSpec
from services.lab.exercises.stages import CheckContext, Exercise, Measured, Stage, at_most, exactly
from services.lab.standalone import ServedApp, serve_app

FACTORY = "services.shortener.app:create_app"
CREATES = 50
STAMPEDE = 200
LINKS = 20
CLICKS = 200
# Short intervals so a stage sees background work within a second instead of waiting on defaults;
# none of them is a claim a stage checks.
QUICK = {
    "LAB_SHORTENER_CLICK_FLUSH_INTERVAL_S": "0.2",
    "LAB_SHORTENER_KEYPOOL_CHECK_INTERVAL_S": "0.2",
    "LAB_SHORTENER_KEYPOOL_LOW_WATER": "2000",
    "LAB_SHORTENER_KEYPOOL_TARGET": "5000",
    "LAB_SHORTENER_KEYPOOL_BATCH_SIZE": "100",
}
CLICK_WAIT_S = 5.0


@contextmanager
def replicas(
    variant: str, *, env: Mapping[str, str], log_dir: Path, count: int = 2, startup_timeout_s: float = 30.0
) -> Iterator[list[ServedApp]]:
    """``count`` processes of one variant on the same servers, as replicas behind a load balancer."""
    with ExitStack() as stack:
        yield [
            stack.enter_context(
                serve_app(FACTORY, variant, env=env, log_dir=log_dir, startup_timeout_s=startup_timeout_s)
            )
            for _ in range(count)
        ]


@contextmanager
def two_replicas(ctx: CheckContext, **env: str) -> Iterator[list[str]]:
    """Two replicas of the variant under check, with the check's environment."""
    served = replicas(
        ctx.variant, env=ctx.env(**QUICK, **env), log_dir=ctx.log_dir, startup_timeout_s=ctx.startup_timeout_s
    )
    with served as apps:
        yield [app.url for app in apps]


def total(urls: Iterable[str], name: str, labels: Mapping[str, str] | None = None) -> float:
    """A counter summed over the replicas."""
    return sum(counter(url, name, labels) for url in urls)


async def create_links(url: str, count: int) -> list[str]:
    calls = [Call("POST", "/api/v1/urls", {"long_url": f"https://example.com/{i}"}) for i in range(count)]
    replies = await send_all(url, calls, concurrency=10)
    return [reply.json()["code"] for reply in replies if reply.status == 201]


async def no_read_before_write(ctx: CheckContext) -> Measured:
    with two_replicas(ctx) as urls:
        codes = await create_links(urls[0], CREATES)
        checks = total(urls, "shortener_db_code_checks")
    if len(codes) != CREATES:
        return Measured(len(codes), f"== {CREATES} creates", False, "not every create answered 201")
    return exactly(
        checks / CREATES, 0, f"database reads per create ('is this code taken?') over {CREATES} creates"
    )


async def one_read_for_a_stampede(ctx: CheckContext) -> Measured:
    """200 concurrent first requests for one code over two replicas, the database read slowed to
    300 ms so they all arrive while the first read is in flight."""
    with two_replicas(ctx, LAB_SHORTENER_DB_LOOKUP_DELAY_MS="300") as urls:
        [code] = await create_links(urls[0], 1)
        before = total(urls, "shortener_db_lookups")
        calls = [Call("GET", f"/{code}")] * (STAMPEDE // len(urls))
        batches = await asyncio.gather(*(send_all(url, calls, concurrency=len(calls)) for url in urls))
        reads = total(urls, "shortener_db_lookups") - before
    statuses = sorted({reply.status for batch in batches for reply in batch})
    return exactly(
        reads, 1, f"database reads for {STAMPEDE} concurrent misses of one code; answers {statuses}"
    )


async def gone_everywhere_at_once(ctx: CheckContext) -> Measured:
    with two_replicas(ctx) as urls:
        codes = await create_links(urls[0], LINKS)
        for url in urls:  # warm: both replicas have followed every link
            await send_all(url, [Call("GET", f"/{code}") for code in codes], concurrency=10)
        await send_all(urls[0], [Call("DELETE", f"/api/v1/urls/{code}") for code in codes], concurrency=1)
        after = [
            await send_all(url, [Call("GET", f"/{code}") for code in codes], concurrency=10) for url in urls
        ]
    still_served = sum(reply.status != 410 for batch in after for reply in batch)
    detail = f"answers other than 410 right after deleting {LINKS} links on one replica, over both"
    return exactly(still_served, 0, detail)


async def every_click_counted(ctx: CheckContext) -> Measured:
    with two_replicas(ctx) as urls:
        [code] = await create_links(urls[0], 1)
        calls = [Call("GET", f"/{code}")] * (CLICKS // len(urls))
        await asyncio.gather(*(send_all(url, calls, concurrency=20) for url in urls))
        stored = await stored_clicks(ctx, code, expect=CLICKS)
    return exactly(stored, CLICKS, f"clicks in the link's row within {CLICK_WAIT_S:g}s of {CLICKS} redirects")


async def stored_clicks(ctx: CheckContext, code: str, *, expect: int) -> int:
    """The row's count once it reaches ``expect``, or what it holds after :data:`CLICK_WAIT_S`."""
    query = f"SELECT clicks FROM shortener_{ctx.variant}.links WHERE code = $1"
    deadline = time.monotonic() + CLICK_WAIT_S
    conn = await asyncpg.connect(ctx.infra.postgres_url)
    try:
        while (clicks := int(await conn.fetchval(query, code))) != expect and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    return clicks


async def warm_set_off_the_database(ctx: CheckContext) -> Measured:
    with two_replicas(ctx) as urls:
        codes = await create_links(urls[0], LINKS)
        follow = [Call("GET", f"/{code}") for code in codes]
        for url in urls:
            await send_all(url, follow, concurrency=10)
        before = total(urls, "shortener_db_lookups")
        for url in urls:
            await send_all(url, follow * 5, concurrency=10)
        reads = total(urls, "shortener_db_lookups") - before
    return at_most(reads, 0, f"database reads for {len(urls) * 5 * LINKS} redirects of {LINKS} warm links")


SCAFFOLD = ScaffoldSpec(
    design="shortener",
    title="URL shortener",
    naive_opener="services.shortener.app:open_naive_adapters",
    opener="open_adapters",
    port="Adapters (services/shortener/ports.py: a CodeSource, Redirects and a ClickCounter)",
    flaws=(
        Flaw("if not await self._links.code_exists(code):", "a database read before every write"),
        Flaw("target = await self._links.find_target(code)", "every redirect reads PostgreSQL"),
        Flaw("await self._links.add_click(code)", "a row update on the hot read path, per click"),
    ),
)

EXERCISE = Exercise(
    scaffold=SCAFFOLD,
    factory=FACTORY,
    stages=(
        Stage(1, "no read-before-write on create (database reads per create counted)",
              "Asking 'is this code taken?' costs a round trip per create. Could codes be made ahead "
              "of time, and handed out in batches?", no_read_before_write),
        Stage(2, f"{STAMPEDE} concurrent misses of one code read the database once",
              "A cache alone still lets every concurrent miss through. Let one request fill the entry "
              "while the others wait for it (and remember codes that do not exist).",
              one_read_for_a_stampede),
        Stage(3, "delete is 410 on every replica at once",
              "A delete must change what every replica's cache says, not only the database row.",
              gone_everywhere_at_once),
        Stage(4, f"every click counted after the flush ({CLICKS} redirects, within {CLICK_WAIT_S:g}s)",
              "If clicks are added up in memory, they must reach the row: on a timer and on shutdown, "
              "and a failed write must keep them.", every_click_counted),
        Stage(5, "a redirect never reads the database on a warm working set",
              "Once a link has been followed, where is its target kept, and for how long?",
              warm_set_off_the_database),
    ),
)  # fmt: skip
