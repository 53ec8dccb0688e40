"""The IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers-10) of one decision:
sent on every answer by the guard, and on the 429 by the error mapping."""

from __future__ import annotations

from services.ratelimit.ports import Decision, Policy


def policy_field(policy: Policy) -> str:
    return f'"{policy.name}";q={policy.limit};w={policy.window_s}'


def ratelimit_fields(policy: Policy, decision: Decision) -> dict[str, str]:
    """Both fields; a degraded (fail-open) decision has no real count, so it states only the policy."""
    fields = {"RateLimit-Policy": policy_field(policy)}
    if not decision.degraded:
        fields["RateLimit"] = f'"{policy.name}";r={decision.remaining};t={decision.reset_s}'
    return fields
