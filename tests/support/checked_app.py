"""A minimal service for testing the lab's supervision: real resources, real health checks,
nothing of any design."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from services.core.app import build_app
from services.core.health import register_health_check
from services.core.problems import Problem
from services.core.resources import open_postgres_pool, open_redis, postgres_check, redis_check
from services.core.settings import CoreSettings


def create_app(variant: str, settings: CoreSettings | None = None) -> FastAPI:
    settings = settings or CoreSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            pool = await stack.enter_async_context(open_postgres_pool(settings))
            redis = await stack.enter_async_context(open_redis(settings))
            register_health_check(app, name="postgres", check=postgres_check(pool))
            register_health_check(app, name="redis", check=redis_check(redis))
            yield

    app = build_app(title=f"checked app ({variant})", settings=settings, lifespan=lifespan)

    @app.get("/whoami")
    async def whoami() -> dict[str, object]:
        return {"variant": variant, "pid": os.getpid()}

    @app.get("/teapot")
    async def teapot() -> None:
        raise Problem(status=418, kind="teapot", title="I'm a teapot", detail="short and stout")

    return app
