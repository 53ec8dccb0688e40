"""The use cases of the contract, written once against the ports; both variants run this code."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from services.shortener.errors import AliasTaken, CodeSpaceExhausted, LinkGone, LinkNotFound, TtlTooLong
from services.shortener.links import Link, NewLink, Target, utc_now
from services.shortener.metrics import CREATE_RETRIES
from services.shortener.ports import Adapters
from services.shortener.repository import PostgresLinks
from services.shortener.settings import ShortenerSettings

TOMBSTONE = Target(long_url="", deleted=True)


class LinkService:
    def __init__(
        self, *, variant: str, links: PostgresLinks, adapters: Adapters, settings: ShortenerSettings
    ) -> None:
        self.variant = variant
        self._links = links
        self._codes = adapters.codes
        self._redirects = adapters.redirects
        self._clicks = adapters.clicks
        self._settings = settings

    async def create(self, *, long_url: str, custom_alias: str | None, ttl_seconds: int | None) -> Link:
        new = NewLink(long_url=long_url, expires_at=self._expiry(ttl_seconds))
        if custom_alias is None:
            return await self._create_with_generated_code(new)
        link = await self._create_with_alias(custom_alias, new)
        # Someone may have tried the alias before it existed; replace a cached "no such link".
        await self._redirects.remember(link.code, link.target)
        return link

    async def resolve(self, code: str) -> str:
        """The long URL a redirect of ``code`` goes to; the click is counted."""
        now = utc_now()  # one instant for the adapter's count and this check: never a click on a 410
        return _live(code, await self._redirects.follow(code, now=now), now=now).long_url

    async def stats(self, code: str) -> Link:
        link = await self._links.find_link(code)
        if link is None:
            raise LinkNotFound(code)
        _live(code, link.target, now=utc_now())
        unflushed = await self._clicks.unflushed(code)
        return replace(link, clicks=link.clicks + unflushed)

    async def delete(self, code: str) -> None:
        if await self._links.mark_deleted(code):
            await self._redirects.remember(code, TOMBSTONE)
            return
        if await self._links.find_link(code) is None:
            raise LinkNotFound(code)
        # Deleted before: write the tombstone again, in case a cache outage lost it the first time.
        await self._redirects.remember(code, TOMBSTONE)
        raise LinkGone(code, reason="deleted")

    def _expiry(self, ttl_seconds: int | None) -> datetime | None:
        if ttl_seconds is None:
            return None
        if ttl_seconds > self._settings.shortener_max_ttl_seconds:
            raise TtlTooLong(
                ttl_seconds=ttl_seconds, max_ttl_seconds=self._settings.shortener_max_ttl_seconds
            )
        return utc_now() + timedelta(seconds=ttl_seconds)

    async def _create_with_generated_code(self, new: NewLink) -> Link:
        for _ in range(self._settings.shortener_max_create_attempts):
            link = await self._links.insert(await self._codes.next_code(), new)
            if link is not None:
                return link
            CREATE_RETRIES.labels(self.variant).inc()  # lost a race for the code: draw another
        raise CodeSpaceExhausted("every code tried was taken by the time it was stored")

    async def _create_with_alias(self, alias: str, new: NewLink) -> Link:
        await self._codes.retire(alias)
        link = await self._links.insert(alias, new)
        if link is None:
            raise AliasTaken(alias)
        return link


def _live(code: str, target: Target | None, *, now: datetime) -> Target:
    """The target if the code may be followed at ``now``; otherwise the 404 or 410 it deserves."""
    if target is None:
        raise LinkNotFound(code)
    reason = target.gone_reason(now=now)
    if reason is not None:
        raise LinkGone(code, reason=reason)
    return target
