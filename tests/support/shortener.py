"""Helpers for the shortener's tests: run a variant, read its counters over HTTP."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from loadtests.shortener.rawhttp import Call, Reply, exchange, send_all
from services.lab.exercises.shortener import FACTORY as APP
from services.lab.exercises.shortener import QUICK, replicas, total
from tests.support.servers import run_app

# The tests import these from here, next to the other helpers; the lab's check uses the same ones.
__all__ = ["APP", "Call", "Reply", "replicas", "run_app", "send_all", "total"]

VARIANTS = ("naive", "hardened")

# Short intervals so tests see background work within a second, never waiting on defaults.
FAST_ENV = {**QUICK, "LAB_LOG_LEVEL": "WARNING"}


# The hardened variant with its optional replica-local cache on (a long TTL, so only the delete
# broadcast can explain a prompt 410).
HOT_ENV = {"LAB_SHORTENER_HOT_CACHE_TTL_MS": "30000"}
CONFIGS = {"naive": ("naive", {}), "hardened": ("hardened", {}), "hardened-hot": ("hardened", HOT_ENV)}


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
        except (OSError, ValueError):  # ConnectionError: a dropped connection
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
