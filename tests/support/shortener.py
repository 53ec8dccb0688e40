"""Helpers for the shortener's tests: run a variant, read its counters over HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from loadtests.environment import counter
from tests.support.servers import RunningApp, run_app

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
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: dict[str, object] | None = None


async def send_all(base_url: str, calls: list[Call], *, concurrency: int) -> list[Reply]:
    """Make every call over ``concurrency`` keep-alive connections, all opened before the first
    request goes out, so the first ``concurrency`` requests really are in flight together.

    A bare HTTP/1.1 client: httpx's async client spends about 3 ms of CPU per request, more than the
    service under test, and would measure itself instead of the service on a 2-core machine.
    """
    url = httpx.URL(base_url)
    pending = iter(range(len(calls)))
    replies: list[Reply | None] = [None] * len(calls)
    count = min(concurrency, len(calls))
    streams = await asyncio.gather(*(asyncio.open_connection(url.host, url.port) for _ in range(count)))

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for index in pending:
                replies[index] = await _exchange(reader, writer, url.host, calls[index])
        finally:
            writer.close()

    await asyncio.gather(*(connection(reader, writer) for reader, writer in streams))
    return [reply for reply in replies if reply is not None]


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, call: Call
) -> Reply:
    payload = b"" if call.body is None else json.dumps(call.body).encode()
    head = f"{call.method} {call.path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(payload)}\r\n"
    if call.body is not None:
        head += "Content-Type: application/json\r\n"
    writer.write(head.encode() + b"\r\n" + payload)
    status = int((await reader.readline()).split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    return Reply(status=status, headers=headers, body=await reader.readexactly(length) if length else b"")


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
                reply = await _exchange(reader, writer, url.host, Call("GET", path))
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
