"""What every limiter implements, and the values it trades in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Policy:
    """A quota: ``limit`` requests per ``window_s`` seconds, named for the RateLimit fields."""

    name: str
    limit: int
    window_s: int


@dataclass(frozen=True)
class Decision:
    """The answer to one check.

    ``remaining`` is what is left now; ``reset_s`` (the ``t`` of the RateLimit field) is the number
    of seconds until the quota next grows, so a denied caller that waits that long is admitted.
    ``degraded`` marks a request admitted without a real check because the backend failed and the
    policy is fail-open. ``decided_at`` is the limiter's clock at the decision (Redis time for the
    hardened limiter), in seconds since the epoch, for audits that replay decisions.
    """

    allowed: bool
    remaining: int
    reset_s: int
    degraded: bool = False
    decided_at: float | None = None


class BackendError(Exception):
    """The limiter's store did not answer in time or at all."""


class RateLimiter(Protocol):
    async def check(self, identity: str, policy: Policy) -> Decision:
        """Count one request of ``identity`` against ``policy`` if it fits, and say whether it did.

        Raises :class:`BackendError` when the store fails; the caller applies the failure policy.
        """
        ...
