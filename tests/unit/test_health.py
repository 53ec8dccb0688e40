"""``/healthz`` reports each dependency and turns a failing one into a 503 problem, never a 500."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.core.app import build_app
from services.core.health import register_health_check
from services.core.settings import CoreSettings


async def _answers() -> None:
    return None


async def _refuses() -> None:
    raise ConnectionRefusedError("connection refused")


async def _hangs() -> None:
    await asyncio.sleep(60)


def _app_with(**checks: object) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for name, check in checks.items():
            register_health_check(app, name=name, check=check)  # type: ignore[arg-type]
        yield

    return build_app(title="t", settings=CoreSettings(health_timeout_s=0.2), lifespan=lifespan)


def test_all_dependencies_answering_is_200() -> None:
    with TestClient(_app_with(postgres=_answers, redis=_answers)) as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"postgres": "ok", "redis": "ok"}


def test_a_refusing_dependency_is_a_503_naming_it() -> None:
    with TestClient(_app_with(postgres=_answers, redis=_refuses)) as client:
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    body = response.json()
    assert body["checks"]["postgres"] == "ok"
    assert "ConnectionRefusedError" in body["checks"]["redis"]


def test_a_hanging_dependency_times_out_as_unhealthy() -> None:
    with TestClient(_app_with(kafka=_hangs)) as client:
        response = client.get("/healthz")
    assert response.status_code == 503
    assert "TimeoutError" in response.json()["checks"]["kafka"]
