"""Naive adapters: the shortener a team ships first.

Flaw 1, "we'll optimize later" at write time: every create draws a random code and asks the database
whether it is taken (``SELECT``) before inserting it. One extra round trip per create, more retries
as the key space fills, and a race between the check and the insert (the loser retries).
Exposed by ``tests/integration/test_shortener_keys.py::test_naive_retries_grow_as_the_key_space_fills``.

Flaw 2, "one database for everything" at read time: every redirect reads PostgreSQL, and counts the
click with ``UPDATE … SET clicks = clicks + 1`` on the link's row, a write on the hot read path and a
row lock every request of a viral link queues on. Exposed by
``tests/integration/test_shortener_stampede.py`` (200 concurrent first requests, 200 database reads)
and by the viral-link benchmark in ``loadtests/shortener_bench.py``.
"""

from __future__ import annotations

import logging
from datetime import datetime

from services.shortener.codes import random_code
from services.shortener.errors import CodeSpaceExhausted
from services.shortener.links import Target
from services.shortener.metrics import CREATE_RETRIES
from services.shortener.ports import ClickCounter
from services.shortener.repository import PostgresLinks

logger = logging.getLogger(__name__)


class CheckedRandomCodes:
    """A random code, then ``SELECT`` to see whether it exists; draw again on a hit."""

    def __init__(self, links: PostgresLinks, *, code_length: int, max_attempts: int) -> None:
        self._links = links
        self._code_length = code_length
        self._max_attempts = max_attempts

    async def next_code(self) -> str:
        for _ in range(self._max_attempts):
            code = random_code(length=self._code_length)
            if not await self._links.code_exists(code):
                return code
            CREATE_RETRIES.labels("naive").inc()
        logger.warning("code_space_exhausted attempts=%d", self._max_attempts)
        raise CodeSpaceExhausted(f"no free code found in {self._max_attempts} random draws")

    async def retire(self, code: str) -> None:
        """Nothing to do: every draw is checked against the table anyway."""


class DatabaseRedirects:
    """Every redirect reads PostgreSQL, then writes the click to the link's row."""

    def __init__(self, links: PostgresLinks, *, clicks: ClickCounter) -> None:
        self._links = links
        self._clicks = clicks

    async def follow(self, code: str, *, now: datetime) -> Target | None:
        target = await self._links.find_target(code)
        if target is not None and target.is_live(now=now):
            await self._clicks.record(code)
        return target

    async def remember(self, code: str, target: Target) -> None:
        """Nothing cached, nothing to forget."""


class RowClickCounter:
    """``UPDATE links SET clicks = clicks + 1`` per redirect."""

    def __init__(self, links: PostgresLinks) -> None:
        self._links = links

    async def record(self, code: str) -> None:
        await self._links.add_click(code)

    async def unflushed(self, code: str) -> int:
        return 0
