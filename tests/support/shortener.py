"""Helpers for the shortener's tests: run a variant, read its counters over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from loadtests.environment import counter
from loadtests.shortener.rawhttp import Call, Reply, exchange, send_all
from tests.support.servers import RunningApp, run_app

__all__ = ["Call", "Reply", "send_all"]  # the tests import them from here, next to the other helpers

APP = "services.shortener.app:create_app"
VARIANTS = ("naive", "hardened")

# Short intervals so tests see background work within a second, never waiting on defaults.
FAST_ENV = {
    "LAB_SHORTENER_CLICK_FLUSH_INTERVAL_S": "0.2",
    "LAB_SHORTENER_KEYPOOL_CHECK_INTERVAL_S": "0.2",
    "LAB_SHORTENER_KEYPOOL_LOW_WATER": "2000",
    "LAB_SHORTENER_KEYPOOL_TARGET": "5000",
    "LAB_SHORTENER_KEYPOOL_BATCH_SIZE": "100",
    "LAB_LOG_LEVEL": "WARNING",
}


# The hardened variant with its optional replica-local cache on (a long TTL, so only the delete
# broadcast can explain a prompt 410).
HOT_ENV = {"LAB_SHORTENER_HOT_CACHE_TTL_MS": "30000"}
CONFIGS = {"naive": ("naive", {}), "hardened": ("hardened", {}), "hardened-hot": ("hardened", HOT_ENV)}


def total(urls: Iterable[str], name: str, labels: Mapping[str, str] | None = None) -> float:
    return sum(counter(url, name, labels) for url in urls)


@dataclass(frozen=True)
class Answered:
    replica: str
    status: int
    at: float  # time.monotonic() when the answer was read


async def keep_requesting(base_url: str, path: str, *, until: float, connections: int = 4) -> list[Answered]:
    """``GET path`` over ``connections`` keep-alive connections, one request after another on each,
    until ``until`` (``time.monotonic()``) or until the server goes away: the answers it gave."""
    url = httpx.URL(base_url)
    answers: list[Answered] = []

    async def connection() -> None:
        try:
            reader, writer = await asyncio.open_connection(url.host, url.port)
        except OSError:
            return
        try:
            while time.monotonic() < until:
                reply = await exchange(reader, writer, url.host, Call("GET", path))
                answers.append(Answered(replica=base_url, status=reply.status, at=time.monotonic()))
        except (OSError, asyncio.IncompleteReadError, IndexError, ValueError):
            return  # the server went away mid-answer: that request was not answered
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return answers


def create(url: str, **body: object) -> str:
    response = httpx.post(f"{url}/api/v1/urls", json={"long_url": "https://example.com/", **body}, timeout=10)
    response.raise_for_status()
    code: str = response.json()["code"]
    return code


@contextmanager
def replicas(
    variant: str, *, env: Mapping[str, str], log_dir: Path, count: int = 2
) -> Iterator[list[RunningApp]]:
    """``count`` processes of one variant on the same servers, as replicas behind a load balancer."""
    with ExitStack() as stack:
        yield [stack.enter_context(run_app(APP, variant, env=env, log_dir=log_dir)) for _ in range(count)]
