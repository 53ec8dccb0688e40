"""Domain errors of the rate limiter; ``api.py`` maps them to HTTP in one place."""

from __future__ import annotations

from services.ratelimit.ports import Decision, Policy


class RateLimitError(Exception):
    """Base of every rate-limiter error."""


class InvalidApiKey(RateLimitError):
    """The ``X-API-Key`` header is present but not 1–128 characters of ``[A-Za-z0-9._-]``."""


class QuotaExceeded(RateLimitError):
    """The caller used its quota under ``policy``; ``decision.reset_s`` says when one more fits."""

    def __init__(self, *, policy: Policy, decision: Decision) -> None:
        super().__init__(f"quota '{policy.name}' exceeded; one more request fits in {decision.reset_s} s")
        self.policy = policy
        self.decision = decision


class LimiterUnavailable(RateLimitError):
    """The limiter's backend failed and the failure policy is ``closed``."""


class LimiterOverloaded(RateLimitError):
    """This app server has as many checks in flight as it allows; the request is shed, not admitted."""
