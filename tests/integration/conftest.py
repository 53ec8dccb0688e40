"""Fixtures shared by the integration tests (the session's servers come from ``tests/conftest.py``)."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from services.lab import processes
from tests.support.orders import OrdersLab
from tests.support.valkey import OwnRedis


@pytest.fixture
async def client(lab: OrdersLab) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the orders service of the module's ``lab`` fixture (a module that defines no
    ``lab`` fixture cannot use it; the shortener tests define a ``client`` of their own)."""
    async with httpx.AsyncClient(base_url=lab.orders.url, timeout=10) as client:
        yield client


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """A Valkey server of the test's own, to kill or pause; always resumed and stopped afterwards."""
    server = OwnRedis(port=processes.free_port(), log_dir=tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.signal(signal.SIGCONT)
        server.kill()
