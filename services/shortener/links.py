"""The link as the domain sees it, independent of where it is stored or cached."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Target:
    """What a redirect needs to know about a code: where it points and whether it still does."""

    long_url: str
    expires_at: datetime | None = None
    deleted: bool = False

    def is_live(self, *, now: datetime) -> bool:
        return self.gone_reason(now=now) is None

    def gone_reason(self, *, now: datetime) -> str | None:
        """``"deleted"`` or ``"expired"`` when the code must answer 410, else ``None``."""
        if self.deleted:
            return "deleted"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return None


@dataclass(frozen=True)
class Link:
    """A stored link with its bookkeeping."""

    code: str
    long_url: str
    created_at: datetime
    expires_at: datetime | None
    deleted_at: datetime | None
    clicks: int

    @property
    def target(self) -> Target:
        return Target(long_url=self.long_url, expires_at=self.expires_at, deleted=self.deleted_at is not None)


@dataclass(frozen=True)
class NewLink:
    """A link about to be stored under a code not yet chosen."""

    long_url: str
    expires_at: datetime | None
