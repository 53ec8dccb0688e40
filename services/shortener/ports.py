"""The seams where the variants differ. Everything else (the contract, validation, storage of
links) is shared, so ``naive.py`` and ``hardened.py`` show only the flaw and the fix."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import asyncpg
from fastapi import FastAPI

from services.shortener.links import Target
from services.shortener.repository import PostgresLinks
from services.shortener.settings import ShortenerSettings


class CodeSource(Protocol):
    """Hands out codes for new links."""

    async def next_code(self) -> str:
        """A code that is, as far as this source knows, free. Storing it may still lose a race;
        the caller then asks for another."""

    async def retire(self, code: str) -> None:
        """A custom alias has claimed ``code``: never hand it out."""


class Redirects(Protocol):
    """The hot path: where does this code point? Following a live link counts one click."""

    async def follow(self, code: str, *, now: datetime) -> Target | None:
        """The code's target (``None`` when no link was ever created under it). When the target is
        live at ``now`` the click is counted, exactly once, as part of the lookup."""

    async def remember(self, code: str, target: Target) -> None:
        """The stored truth changed (created, deleted): forget or replace what was cached."""


class ClickCounter(Protocol):
    """Counts redirects served."""

    async def record(self, code: str) -> None:
        """One redirect of ``code`` was served."""

    async def unflushed(self, code: str) -> int:
        """Clicks recorded but not yet in the link's row."""


@dataclass(frozen=True)
class Adapters:
    """What a variant plugs into the shared service."""

    codes: CodeSource
    redirects: Redirects
    clicks: ClickCounter


@dataclass(frozen=True)
class Wiring:
    """What the app hands a variant to build its adapters from."""

    app: FastAPI
    variant: str
    settings: ShortenerSettings
    pool: asyncpg.Pool
    links: PostgresLinks

    @property
    def redis_prefix(self) -> str:
        return self.settings.shortener_redis_prefix or f"shortener:{self.variant}:"
