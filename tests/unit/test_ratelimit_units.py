"""Rate-limiter pieces without I/O: identity, the naive window, the RateLimit fields, shedding."""

from __future__ import annotations

import asyncio
from ipaddress import ip_network

import pytest

from services.ratelimit.errors import InvalidApiKey, LimiterOverloaded, to_problem
from services.ratelimit.fields import ratelimit_fields
from services.ratelimit.hardened import ShedWhenBusy
from services.ratelimit.identity import client_identity, client_ip
from services.ratelimit.naive import FixedWindowCounter
from services.ratelimit.ports import Decision, Policy

PROXIES = [ip_network("10.0.0.0/8"), ip_network("127.0.0.1/32")]


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        ("203.0.113.9", "1.2.3.4", "203.0.113.9"),  # untrusted peer: header ignored
        ("10.1.1.1", "1.2.3.4", "1.2.3.4"),  # one trusted proxy
        ("10.1.1.1", "6.6.6.6, 1.2.3.4", "1.2.3.4"),  # forged prefix: the proxy's hop wins
        ("10.1.1.1", "1.2.3.4, 10.2.2.2", "1.2.3.4"),  # two trusted proxies
        ("10.1.1.1", "10.3.3.3, 10.2.2.2", "10.1.1.1"),  # only proxies: the peer
        ("10.1.1.1", "not-an-ip", "10.1.1.1"),  # malformed: nothing believed
        ("10.1.1.1", "", "10.1.1.1"),
        ("10.1.1.1", "2001:db8::1", "2001:db8::1"),
    ],
)
def test_client_ip_is_the_rightmost_untrusted_hop(peer: str, forwarded_for: str, expected: str) -> None:
    assert client_ip(peer=peer, forwarded_for=forwarded_for, trusted_proxies=PROXIES) == expected


def test_api_key_takes_precedence_over_the_address() -> None:
    identity = client_identity(api_key="alice-1", peer="1.2.3.4", forwarded_for=None, trusted_proxies=[])
    assert identity == "key:alice-1"


@pytest.mark.parametrize("api_key", ["", "a b", "x" * 129, "{tag}"])
def test_invalid_api_keys_are_refused(api_key: str) -> None:
    with pytest.raises(InvalidApiKey):
        client_identity(api_key=api_key, peer="1.2.3.4", forwarded_for=None, trusted_proxies=[])


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_fixed_window_admits_the_limit_then_refuses_until_the_edge() -> None:
    clock = Clock(1000.0)
    counter = FixedWindowCounter(clock=clock)
    policy = Policy("default", 3, 10)
    decisions = [await counter.check("a", policy) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert decisions[-1].reset_s == 10
    clock.now = 1010.0
    assert (await counter.check("a", policy)).allowed


async def test_fixed_window_edge_admits_twice_the_limit_within_one_window_length() -> None:
    """The flaw in miniature: 0.1 s before and after the edge, 2 x limit in 0.2 s."""
    clock = Clock(1009.9)
    counter = FixedWindowCounter(clock=clock)
    policy = Policy("default", 5, 10)
    before = [await counter.check("a", policy) for _ in range(5)]
    clock.now = 1010.1
    after = [await counter.check("a", policy) for _ in range(5)]
    assert sum(d.allowed for d in before + after) == 10


async def test_fixed_window_forgets_finished_windows() -> None:
    clock = Clock(0.0)
    counter = FixedWindowCounter(clock=clock)
    policy = Policy("default", 1, 10)
    for n in range(100):
        await counter.check(f"client-{n}", policy)
    clock.now = 25.0
    await counter.check("late", policy)
    assert counter.tracked_counts == 1


def test_fields_follow_the_draft_syntax() -> None:
    policy = Policy("default", 100, 60)
    fields = ratelimit_fields(policy, Decision(allowed=True, remaining=42, reset_s=17))
    assert fields == {"RateLimit-Policy": '"default";q=100;w=60', "RateLimit": '"default";r=42;t=17'}


def test_a_degraded_decision_states_only_the_policy() -> None:
    fields = ratelimit_fields(Policy("default", 100, 60), Decision(True, 100, 0, degraded=True))
    assert fields == {"RateLimit-Policy": '"default";q=100;w=60'}


class HeldChecks:
    """A limiter whose checks wait until released: checks in flight, as a stalled store makes them."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def check(self, identity: str, policy: Policy) -> Decision:
        await self.release.wait()
        return Decision(allowed=True, remaining=policy.limit - 1, reset_s=1)


async def test_shedding_refuses_past_the_bound_of_checks_in_flight_and_admits_nothing_unchecked() -> None:
    held = HeldChecks()
    limiter = ShedWhenBusy(held, max_in_flight=5)
    policy = Policy("default", 100, 60)
    waiting = [asyncio.create_task(limiter.check("a", policy)) for _ in range(5)]
    await asyncio.sleep(0)  # the five are in flight now

    with pytest.raises(LimiterOverloaded):
        await limiter.check("a", policy)
    held.release.set()
    decisions = await asyncio.gather(*waiting)

    assert all(d.allowed and not d.degraded for d in decisions)
    assert (await limiter.check("a", policy)).allowed  # room again once they finished


def test_a_shed_request_is_a_503_with_retry_after() -> None:
    problem = to_problem(LimiterOverloaded("5 checks are already waiting on the rate limiter"))
    assert problem.status == 503
    assert problem.headers == {"Retry-After": "1"}
