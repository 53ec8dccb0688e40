"""``create_app(variant)``: the shortener's FastAPI app, naive or hardened, built from settings.

Both variants share the PostgreSQL pool in their own schema, opened once here; the variant then opens
its own adapters (:data:`VARIANTS`): the naive ones need nothing more, the hardened ones Redis, the
key pool's generator, the click flush and, when set, the optional replica-local cache.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from services.core.app import build_app, open_service_pool, variant_wiring
from services.core.background import background
from services.core.health import register_health_check
from services.core.learner import learner_slot
from services.core.resources import (
    apply_schema,
    command_pipeline,
    connect_early,
    open_redis,
    read_resource,
    redis_check,
)
from services.shortener import api
from services.shortener.clicks import flush_on_shutdown, keep_flushing
from services.shortener.errors import ERRORS
from services.shortener.hardened import CachedRedirects, ClickTally, KeyPool
from services.shortener.hotcache import open_hot_cache
from services.shortener.keypool import keep_pool_filled
from services.shortener.naive import CheckedRandomCodes, DatabaseRedirects, RowClickCounter
from services.shortener.ports import Adapters, Wiring
from services.shortener.repository import PostgresLinks
from services.shortener.service import LinkService
from services.shortener.settings import ShortenerSettings

OpenAdapters = Callable[[Wiring], AbstractAsyncContextManager[Adapters]]


@asynccontextmanager
async def open_naive_adapters(wiring: Wiring) -> AsyncIterator[Adapters]:
    """Everything goes to PostgreSQL; no cache, no background work."""
    settings = wiring.settings
    clicks = RowClickCounter(wiring.links)
    yield Adapters(
        codes=CheckedRandomCodes(
            wiring.links,
            code_length=settings.shortener_code_length,
            max_attempts=settings.shortener_max_create_attempts,
        ),
        redirects=DatabaseRedirects(wiring.links, clicks=clicks),
        clicks=clicks,
    )


@asynccontextmanager
async def open_hardened_adapters(wiring: Wiring) -> AsyncIterator[Adapters]:
    """Redis (a pooled client, and the redirect path's commands batched on one connection), the key
    pool, the click tally and the optional replica-local cache."""
    settings, prefix = wiring.settings, wiring.redis_prefix
    async with AsyncExitStack() as stack:
        redis = await stack.enter_async_context(open_redis(settings))
        register_health_check(wiring.app, name="redis", check=redis_check(redis))
        pipeline = await stack.enter_async_context(
            command_pipeline(settings, timeout_s=settings.shortener_cache_timeout_ms / 1000)
        )
        await connect_early(pipeline)
        for sql in ("keypool.sql", "clicks.sql"):
            await apply_schema(wiring.pool, read_resource("services.shortener", sql))
        keys = await stack.enter_async_context(open_key_pool(wiring))
        clicks = await stack.enter_async_context(open_click_tally(wiring))
        hot = await stack.enter_async_context(open_hot_cache(redis, prefix=prefix, settings=settings))
        redirects = CachedRedirects(
            redis, wiring.links, prefix=prefix, settings=settings, pipeline=pipeline, clicks=clicks, hot=hot
        )
        yield Adapters(codes=keys, redirects=redirects, clicks=clicks)


@asynccontextmanager
async def open_key_pool(wiring: Wiring) -> AsyncIterator[KeyPool]:
    """The pool, filled before the first create, and this instance's share of the generator's work."""
    settings = wiring.settings
    keys = KeyPool(
        wiring.pool,
        code_length=settings.shortener_code_length,
        batch_size=settings.shortener_keypool_batch_size,
        low_water=settings.shortener_keypool_low_water,
        target=settings.shortener_keypool_target,
    )
    await keys.refill()
    async with background(
        keep_pool_filled(keys.refill, interval_s=settings.shortener_keypool_check_interval_s)
    ):
        yield keys


@asynccontextmanager
async def open_click_tally(wiring: Wiring) -> AsyncIterator[ClickTally]:
    """Clicks added up in memory, flushed on a timer and once more on shutdown: a clean stop loses none."""
    tally = ClickTally(wiring.links)
    flushing = keep_flushing(tally, interval_s=wiring.settings.shortener_click_flush_interval_s)
    try:
        async with background(flushing):
            yield tally
    finally:
        await flush_on_shutdown(tally)


VARIANTS: dict[str, OpenAdapters] = {"naive": open_naive_adapters, "hardened": open_hardened_adapters}


def create_app(variant: str, settings: ShortenerSettings | None = None) -> FastAPI:
    settings = settings or ShortenerSettings()
    open_adapters = variant_wiring(
        VARIANTS, variant, design="shortener", mine=learner_slot(settings, design="shortener"), port=Adapters
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ddl = read_resource("services.shortener", "schema.sql")
        async with open_service_pool(app, settings, schema=f"shortener_{variant}", ddl=ddl) as pool:
            links = PostgresLinks(
                pool, variant=variant, lookup_delay_ms=settings.shortener_db_lookup_delay_ms
            )
            wiring = Wiring(app=app, variant=variant, settings=settings, pool=pool, links=links)
            async with open_adapters(wiring) as adapters:
                app.state.shortener = LinkService(
                    variant=variant, links=links, adapters=adapters, settings=settings
                )
                yield

    app = build_app(title=f"URL shortener ({variant})", settings=settings, lifespan=lifespan, errors=ERRORS)
    app.include_router(api.router)
    return app
