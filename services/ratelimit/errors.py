"""Domain errors of the rate limiter, and their one mapping to problem+json (:data:`ERRORS`)."""

from __future__ import annotations

from services.core.problems import ErrorMapping, Problem
from services.ratelimit.fields import ratelimit_fields
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


def to_problem(error: RateLimitError) -> Problem:
    """The one place a rate-limiter error becomes HTTP."""
    if isinstance(error, QuotaExceeded):
        retry_after = max(1, error.decision.reset_s)  # never earlier than the field's t
        return Problem(
            status=429,
            kind="quota-exceeded",
            title="Too Many Requests",
            detail=f"quota '{error.policy.name}' of {error.policy.limit} requests per "
            f"{error.policy.window_s} s is used up; retry in {retry_after} s",
            headers={**ratelimit_fields(error.policy, error.decision), "Retry-After": str(retry_after)},
        )
    if isinstance(error, InvalidApiKey):
        return Problem(status=400, kind="invalid-api-key", title="Invalid API key", detail=str(error))
    if isinstance(error, LimiterUnavailable):
        return Problem(
            status=503,
            kind="rate-limiter-unavailable",
            title="Service Unavailable",
            detail="the rate limiter cannot check requests right now and fails closed",
            headers={"Retry-After": "1"},
        )
    if isinstance(error, LimiterOverloaded):
        return Problem(
            status=503,
            kind="rate-limiter-overloaded",
            title="Service Unavailable",
            detail=f"this server is shedding load: {error}; retry in 1 s",
            headers={"Retry-After": "1"},
        )
    raise TypeError(f"unmapped rate-limiter error {error!r}")


ERRORS = ErrorMapping(base=RateLimitError, to_problem=to_problem)
