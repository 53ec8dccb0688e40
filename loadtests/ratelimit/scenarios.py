"""The rate limiter's questions, each a named scenario of ``lab bench ratelimit``.

- ``hot-keys`` (the headline): does each variant admit at most its limit per hot key?
- ``floor``: what does the hardened check cost against the same endpoint doing one plain ``GET``?
- ``limits``: the hardened limiter against the ``limits`` library's moving window, same endpoint.
"""

from __future__ import annotations

from pathlib import Path

from loadtests.engine.lab import AppSpec
from loadtests.engine.scenario import BenchDesign, Goal, Scenario, Sweep, Target, reference_endpoint
from loadtests.ratelimit.audit import admissions_so_far, audit_ratelimit, reset_ratelimit

USERS = Path(__file__).with_name("users.py")
NAIVE = Target("naive", "ratelimit-naive", "naive")
HARDENED = Target("hardened", "ratelimit-hardened", "hardened")
MINE = Target("mine", "ratelimit-mine", "mine")  # a learner's variant: lab exercise start ratelimit
FLOOR = reference_endpoint(
    "floor", design="ratelimit", app_factory="loadtests.ratelimit.references:create_floor_app"
)
# Not a reference: it refuses over the limit, so it is audited as the variants are.
LIMITS = Target(
    "limits",
    "ratelimit-limits",
    "hardened",
    app=AppSpec("loadtests.ratelimit.references:create_limits_app", "limits", workers=2),
)
# The capacity questions: the same sweep for both columns; 10,000 keys and 5 hot ones (the users'
# default mix), so most checks are admissions and a few refusals, as in front of a real API.
CAPACITY_SWEEP = Sweep(start=200.0, factor=1.5, steps=6)

COMMON = {
    "locustfile": USERS,
    "reset": reset_ratelimit,
    "audit": audit_ratelimit,
    "live_audit": admissions_so_far,
    "open_user": "RateLimitedArrivals",
    "closed_user": "RateLimitedClient",
}

HOT_KEYS = Scenario(
    name="hot-keys",
    title="Rate limiter: hot keys across two workers",
    question="Does each variant admit at most its limit per hot key, and what does a check cost?",
    what_to_watch=(
        "Both variants run two worker processes. Watch the hot keys: the naive limiter counts in each "
        "process separately, so a hot key gets its limit once per worker; the hardened one counts in "
        "Redis, once for everybody."
    ),
    targets=(NAIVE, HARDENED),
    learner=MINE,
    mode="rate",
    # Two hot keys at a tenth of 600 req/s: each gets 30 a second, past the quota of 100 a minute on
    # both workers within a few seconds, which is what shows the naive per-process count.
    rate=600.0,
    load_env={"LAB_LOAD_HOT_KEYS": "2"},
    **COMMON,  # type: ignore[arg-type]
)

FLOOR_SCENARIO = Scenario(
    name="floor",
    title="Rate limiter: the check against one plain Redis GET",
    question="How close does the hardened limiter come to the same endpoint doing one plain GET instead?",
    what_to_watch=(
        "The floor serves the same protected endpoint on the same multiplexed Redis connection, with "
        "the same failure policy, but its check is one GET that admits everything: what any Redis-backed "
        "check costs at least. The hardened limiter's capacity at the SLO should be within 10% of it."
    ),
    targets=(FLOOR, HARDENED),
    mode="sweep",
    sweep=CAPACITY_SWEEP,
    goals=(Goal("capacity at the SLO, hardened / floor", "hardened", "floor", "knee_rps", 0.9, "sweep"),),
    **COMMON,  # type: ignore[arg-type]
)

LIMITS_SCENARIO = Scenario(
    name="limits",
    title="Rate limiter: hardened against the limits library",
    question="Does the hardened limiter hold as much load at the SLO as the limits library, and as exactly?",
    what_to_watch=(
        "The same endpoint, guarded by the limits library's moving window (an exact sliding log, as the "
        "hardened default) on the same Valkey. Both are audited for over-admission of the hot keys."
    ),
    targets=(LIMITS, HARDENED),
    mode="sweep",
    sweep=CAPACITY_SWEEP,
    goals=(
        Goal(
            "capacity at the SLO, hardened / limits library", "hardened", "limits", "knee_rps", 1.0, "sweep"
        ),
    ),
    **COMMON,  # type: ignore[arg-type]
)

RATELIMIT = BenchDesign(
    name="ratelimit",
    scenarios={s.name: s for s in (HOT_KEYS, FLOOR_SCENARIO, LIMITS_SCENARIO)},
    headline=HOT_KEYS.name,
)
