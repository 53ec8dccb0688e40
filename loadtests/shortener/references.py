"""Reference endpoints for the shortener's ``ceiling`` scenario, built by the same ``build_app`` and
served the same way as the variants, answering the same two requests the Locust users make
(``POST /api/v1/urls`` to seed links, ``GET /{code}`` for the ``302``):

- ``create_bare_app``: the redirect with no I/O at all, the physical limit of a Python ``302`` here.
  The code *is* the long URL, base64url-encoded, so any worker answers any code without shared state.
- ``create_floor_app``: the one Redis ``GET`` a cache-aside redirect needs, then the same ``302``;
  a create is one ``SET``. What the hardened redirect costs at least.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel

from services.core.app import build_app
from services.core.health import register_health_check
from services.core.resources import open_redis, redis_check
from services.core.settings import CoreSettings
from services.shortener.api import REDIRECT_CACHE_CONTROL

FLOOR_PREFIX = "floor:"


class LinkCreate(BaseModel):
    long_url: str


def _redirect(long_url: str) -> Response:
    return Response(status_code=302, headers={"Location": long_url, "Cache-Control": REDIRECT_CACHE_CONTROL})


def create_bare_app(_: str) -> FastAPI:
    """uvicorn factory (the variant name is unused: there is one bare redirect)."""
    app = build_app(title="Bare 302", settings=CoreSettings())

    @app.post("/api/v1/urls", status_code=201)
    async def create_link(body: LinkCreate) -> dict[str, str]:
        return {"code": base64.urlsafe_b64encode(body.long_url.encode()).decode().rstrip("=")}

    @app.get("/{code}", status_code=302)
    async def follow_link(code: str) -> Response:
        padded = code + "=" * (-len(code) % 4)
        return _redirect(base64.urlsafe_b64decode(padded).decode())

    return app


@asynccontextmanager
async def _redis_lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with open_redis(app.state.settings) as client:
        app.state.redis = client
        register_health_check(app, name="redis", check=redis_check(client))
        yield


def create_floor_app(_: str) -> FastAPI:
    """uvicorn factory (the variant name is unused: there is one floor)."""
    app = build_app(title="Redirect floor (one Redis GET)", settings=CoreSettings(), lifespan=_redis_lifespan)

    @app.post("/api/v1/urls", status_code=201)
    async def create_link(body: LinkCreate, request: Request) -> dict[str, str]:
        code = secrets.token_urlsafe(6)
        await _redis_of(request).set(FLOOR_PREFIX + code, body.long_url)
        return {"code": code}

    @app.get("/{code}", status_code=302)
    async def follow_link(code: str, request: Request) -> Response:
        long_url = await _redis_of(request).get(FLOOR_PREFIX + code)
        if long_url is None:
            return Response(status_code=404)
        return _redirect(long_url.decode() if isinstance(long_url, bytes) else long_url)

    return app


def _redis_of(request: Request) -> aioredis.Redis:
    client: aioredis.Redis = request.app.state.redis
    return client
