"""Helpers for the rate-limiter tests: run a variant, fire requests concurrently, read the answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from loadtests.environment import counter
from services.lab.infra import InfraEndpoints
from tests.support.servers import RunningApp, run_app

FACTORY = "services.ratelimit.app:create_app"
RESOURCE = "/api/v1/resource"


@contextmanager
def run_limiter(
    variant: str,
    *,
    infra: InfraEndpoints,
    log_dir: Path,
    workers: int = 1,
    **settings: str | int,
) -> Iterator[RunningApp]:
    """A variant under uvicorn; ``settings`` are RateLimitSettings fields (limit=5 → LAB_RATELIMIT_LIMIT)."""
    env = {**infra.as_env(), **{_env_name(k): str(v) for k, v in settings.items()}}
    with run_app(FACTORY, variant, env=env, log_dir=log_dir, workers=workers) as app:
        yield app


def _env_name(field: str) -> str:
    return field.upper() if field.startswith("LAB_") else f"LAB_RATELIMIT_{field.upper()}"


@dataclass(frozen=True)
class Answer:
    status: int
    sent_at: float
    received_at: float
    headers: Mapping[str, str]
    body: dict[str, object]


async def fire(
    url: str, *, count: int, headers: Mapping[str, str] | None = None, concurrency: int | None = None
) -> list[Answer]:
    """``count`` GETs at once (each on its own connection unless ``concurrency`` bounds it)."""
    limits = httpx.Limits(max_connections=concurrency or count, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        return list(await asyncio.gather(*(get(client, headers=headers) for _ in range(count))))


async def get(client: httpx.AsyncClient, *, headers: Mapping[str, str] | None = None) -> Answer:
    sent_at = time.time()
    response = await client.get(RESOURCE, headers=dict(headers or {}))
    return Answer(
        status=response.status_code,
        sent_at=sent_at,
        received_at=time.time(),
        headers=response.headers,
        body=response.json(),
    )


async def degraded_checks(url: str) -> float:
    """Checks the service admitted unchecked (its store failed or was slower than the budget), all
    workers together."""
    return await asyncio.to_thread(counter, url, "ratelimit_decisions", {"outcome": "degraded"})
