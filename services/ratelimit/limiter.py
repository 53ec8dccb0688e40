"""The reusable piece: a FastAPI dependency that counts each request against its route's policy and
answers with the IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers-10).

Any app can protect a route with it, whichever limiter (naive or hardened) it is wired to::

    guard = RateLimitGuard(limiter, default=Policy("default", 100, 60))
    app.state.rate_limit_guard = guard
    @app.get("/thing", dependencies=[Depends(rate_limited)])
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Annotated

from fastapi import Depends, Request, Response
from prometheus_client import Counter

from services.ratelimit.errors import QuotaExceeded
from services.ratelimit.fields import ratelimit_fields
from services.ratelimit.identity import Network, client_identity
from services.ratelimit.ports import Decision, Policy, RateLimiter

DECISIONS = Counter(
    "ratelimit_decisions_total",
    "Rate-limit checks by outcome: admitted, refused, or degraded (admitted unchecked: the store failed)",
    ["policy", "outcome"],
)


@functools.cache
def decisions_counted(policy: str, outcome: str) -> Counter:
    """The counter of one (policy, outcome), bound once: ``labels()`` looks the child up under a lock,
    which every request would otherwise pay. Policies and outcomes are few and fixed."""
    return DECISIONS.labels(policy, outcome)


def outcome_of(decision: Decision) -> str:
    if decision.degraded:
        return "degraded"
    return "admitted" if decision.allowed else "refused"


class RateLimitGuard:
    def __init__(
        self,
        limiter: RateLimiter,
        *,
        default: Policy,
        per_route: Mapping[str, Policy] | None = None,
        trusted_proxies: Sequence[Network] = (),
    ) -> None:
        self.limiter = limiter
        self._default = default
        self._per_route = dict(per_route or {})
        self._trusted_proxies = tuple(trusted_proxies)

    def policy_for(self, request: Request) -> Policy:
        route = getattr(request.scope.get("route"), "path", request.url.path)
        return self._per_route.get(f"{request.method} {route}", self._default)

    async def check(self, request: Request) -> tuple[str, Policy, Decision]:
        identity = client_identity(
            api_key=request.headers.get("x-api-key"),
            peer=request.client.host if request.client else None,
            forwarded_for=request.headers.get("x-forwarded-for"),
            trusted_proxies=self._trusted_proxies,
        )
        policy = self.policy_for(request)
        decision = await self.limiter.check(identity, policy)
        decisions_counted(policy.name, outcome_of(decision)).inc()
        if not decision.allowed:
            raise QuotaExceeded(policy=policy, decision=decision)
        return identity, policy, decision


async def rate_limited(request: Request, response: Response) -> str:
    """Admit the request or raise :class:`QuotaExceeded`; returns the identity it was counted as."""
    guard: RateLimitGuard = request.app.state.rate_limit_guard
    identity, policy, decision = await guard.check(request)
    response.headers.update(ratelimit_fields(policy, decision))
    return identity


RateLimitedDep = Annotated[str, Depends(rate_limited)]
