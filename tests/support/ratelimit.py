"""Helpers for the rate-limiter tests: run a variant, fire requests concurrently, read the answers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loadtests.environment import counter
from services.lab.exercises.ratelimit import FACTORY, RESOURCE, Answer, fire, get
from services.lab.infra import InfraEndpoints
from tests.support.servers import RunningApp, run_app

__all__ = ["FACTORY", "RESOURCE", "Answer", "fire", "get"]  # the lab check's, imported from here by the tests


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


async def degraded_checks(url: str) -> float:
    """Checks the service admitted unchecked (its store failed or was slower than the budget), all
    workers together."""
    return await asyncio.to_thread(counter, url, "ratelimit_decisions", {"outcome": "degraded"})
