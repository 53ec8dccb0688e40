"""``create_app(variant)``: the shortener's FastAPI app, naive or hardened, built from settings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from services.core.app import build_app
from services.core.health import register_health_check
from services.core.resources import apply_schema, open_postgres_pool, postgres_check, read_resource
from services.shortener import api, hardened, naive
from services.shortener.errors import ERRORS
from services.shortener.ports import Adapters, Wiring
from services.shortener.repository import PostgresLinks
from services.shortener.service import LinkService
from services.shortener.settings import ShortenerSettings

OpenAdapters = Callable[[Wiring], AbstractAsyncContextManager[Adapters]]

VARIANTS: dict[str, OpenAdapters] = {"naive": naive.open_adapters, "hardened": hardened.open_adapters}


def create_app(variant: str, settings: ShortenerSettings | None = None) -> FastAPI:
    if variant not in VARIANTS:
        raise ValueError(f"unknown shortener variant {variant!r}; expected one of {sorted(VARIANTS)}")
    settings = settings or ShortenerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            pool = await stack.enter_async_context(
                open_postgres_pool(settings, schema=f"shortener_{variant}")
            )
            await apply_schema(pool, read_resource("services.shortener", "schema.sql"))
            register_health_check(app, name="postgres", check=postgres_check(pool))
            links = PostgresLinks(
                pool, variant=variant, lookup_delay_ms=settings.shortener_db_lookup_delay_ms
            )
            wiring = Wiring(app=app, variant=variant, settings=settings, pool=pool, links=links)
            adapters = await stack.enter_async_context(VARIANTS[variant](wiring))
            app.state.shortener = LinkService(
                variant=variant, links=links, adapters=adapters, settings=settings
            )
            yield

    app = build_app(title=f"URL shortener ({variant})", settings=settings, lifespan=lifespan, errors=ERRORS)
    app.include_router(api.router)
    return app
