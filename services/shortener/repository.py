"""Links in PostgreSQL, the same for both variants: the variants differ in how often they come here."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import asyncpg

from services.shortener.links import Link, NewLink, Target
from services.shortener.metrics import DB_CODE_CHECKS, DB_LOOKUPS

INSERT_LINK = """
INSERT INTO links (code, long_url, expires_at) VALUES ($1, $2, $3)
ON CONFLICT (code) DO NOTHING
RETURNING code, long_url, created_at, expires_at, deleted_at, clicks
"""
CODE_EXISTS = "SELECT EXISTS (SELECT 1 FROM links WHERE code = $1)"
FIND_TARGET = "SELECT long_url, expires_at, deleted_at FROM links WHERE code = $1"
FIND_LINK = "SELECT code, long_url, created_at, expires_at, deleted_at, clicks FROM links WHERE code = $1"
MARK_DELETED = "UPDATE links SET deleted_at = now() WHERE code = $1 AND deleted_at IS NULL RETURNING code"
ADD_CLICK = "UPDATE links SET clicks = clicks + 1 WHERE code = $1"
ADD_CLICKS = """
UPDATE links SET clicks = links.clicks + v.n
FROM unnest($1::text[], $2::bigint[]) AS v(code, n)
WHERE links.code = v.code
"""


class PostgresLinks:
    """The ``links`` table of one variant's schema."""

    def __init__(self, pool: asyncpg.Pool, *, variant: str, lookup_delay_ms: int = 0) -> None:
        self.pool = pool
        self._pool = pool
        self._variant = variant
        self._lookup_delay_s = lookup_delay_ms / 1000

    async def insert(self, code: str, link: NewLink) -> Link | None:
        """The stored link, or ``None`` when the code is already taken."""
        row = await self._pool.fetchrow(INSERT_LINK, code, link.long_url, link.expires_at)
        return _link(row) if row else None

    async def code_exists(self, code: str) -> bool:
        """A read before a write; counted, since whether a create needs one is the point of the design."""
        DB_CODE_CHECKS.labels(self._variant).inc()
        return bool(await self._pool.fetchval(CODE_EXISTS, code))

    async def find_target(self, code: str) -> Target | None:
        """The redirect path's database read; counted, and slowed by the injected delay."""
        DB_LOOKUPS.labels(self._variant).inc()
        if self._lookup_delay_s:
            await asyncio.sleep(self._lookup_delay_s)
        row = await self._pool.fetchrow(FIND_TARGET, code)
        if row is None:
            return None
        return Target(
            long_url=row["long_url"], expires_at=row["expires_at"], deleted=row["deleted_at"] is not None
        )

    async def find_link(self, code: str) -> Link | None:
        row = await self._pool.fetchrow(FIND_LINK, code)
        return _link(row) if row else None

    async def mark_deleted(self, code: str) -> bool:
        """``True`` when this call deleted the link; ``False`` when it was unknown or already deleted."""
        return await self._pool.fetchval(MARK_DELETED, code) is not None

    async def add_click(self, code: str) -> None:
        await self._pool.execute(ADD_CLICK, code)

    async def add_clicks(self, counts: Mapping[str, int], *, conn: asyncpg.Connection | None = None) -> None:
        """Several codes' clicks in one statement, on ``conn`` when it is part of a transaction."""
        codes = sorted(counts)  # a fixed order: concurrent updates of the same rows cannot deadlock
        await (conn or self._pool).execute(ADD_CLICKS, codes, [counts[code] for code in codes])


def _link(row: Any) -> Link:
    return Link(
        code=row["code"],
        long_url=row["long_url"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        deleted_at=row["deleted_at"],
        clicks=row["clicks"],
    )
