"""The shortener's questions, each a named scenario of ``lab bench shortener``.

- ``zipf`` (the headline): redirects over a skewed working set, naive against hardened.
- ``ceiling``: the hardened redirect, with and without its optional hot cache, against a bare
  FastAPI ``302`` with no I/O and a floor endpoint doing the one Redis ``GET`` then the same ``302``.
- ``viral``: every redirect for one link.
- ``creates``: every request a new link.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loadtests.engine.lab import AppSpec
from loadtests.engine.scenario import BenchDesign, Goal, Scenario, Sweep, Target, reference_endpoint
from loadtests.shortener.audit import audit_creates, audit_shortener, fresh_links_per_run, reads_so_far

USERS = Path(__file__).with_name("users.py")
NAIVE = Target("naive", "shortener-naive", "naive")
HARDENED = Target("hardened", "shortener-hardened", "hardened")
MINE = Target("mine", "shortener-mine", "mine")  # a learner's variant: lab exercise start shortener
# Two uvicorn workers, as the lab serves its variants.
HARDENED_HOT = Target(
    "hardened-hot",
    "shortener-hardened-hot",
    "hardened",
    app=AppSpec(
        "services.shortener.app:create_app",
        "hardened",
        env={"LAB_SHORTENER_HOT_CACHE_TTL_MS": "1000"},
        workers=2,
    ),
)
BARE = reference_endpoint(
    "bare-302", design="shortener", app_factory="loadtests.shortener.references:create_bare_app"
)
FLOOR = reference_endpoint(
    "floor", design="shortener", app_factory="loadtests.shortener.references:create_floor_app"
)


def _capacity_goal(numerator: str, denominator: str, goal: float) -> Goal:
    return Goal(
        f"capacity at the SLO, {numerator} / {denominator}", numerator, denominator, "knee_rps", goal, "sweep"
    )


def _sweep_of(profile: str, *, start: float, **question: Any) -> Scenario:
    """A stepped sweep of the users' ``profile`` (``zipf``, ``viral``, ``creates``); ``question``
    holds the scenario's name, text, targets, audit and goals."""
    return Scenario(
        locustfile=USERS,
        reset=fresh_links_per_run,
        open_user="ShortenerArrivals",
        closed_user="ShortenerUser",
        mode="sweep",
        sweep=Sweep(start=start, factor=1.5, steps=6),
        load_env={"LAB_SHORTENER_PROFILE": profile, "LAB_SHORTENER_SEED_LINKS": "1000"},
        learner=MINE,
        **question,
    )


ZIPF = _sweep_of(
    "zipf",
    start=200.0,
    name="zipf",
    title="URL shortener: redirects over a skewed working set",
    question="How many redirects per second does each variant hold at the SLO, and does every click count?",
    what_to_watch=(
        "Each run creates 1,000 links, then redirects over them with Zipf popularity, checking every "
        "Location. Both variants count every click; watch what it costs: the naive variant reads and "
        "writes PostgreSQL on every redirect, the hardened one answers from Redis and adds clicks "
        "up in memory, written to PostgreSQL once a second. Throughput and p99 tell the difference."
    ),
    targets=(NAIVE, HARDENED),
    audit=audit_shortener,
    live_audit=reads_so_far,
    goals=(
        _capacity_goal("hardened", "naive", 3.0),
        Goal("CPU per redirect, naive / hardened", "naive", "hardened", "system_us_per_request", 3.0, "rate"),
    ),
)

CEILING = _sweep_of(
    "zipf",
    start=300.0,
    name="ceiling",
    title="URL shortener: the hardened redirect against the floor and the ceiling of a Python 302",
    question=(
        "Is the hardened redirect at least as fast as one Redis GET and a 302, and with its hot cache "
        "within 80% of a bare 302 with no I/O?"
    ),
    what_to_watch=(
        "Four targets answer the same Zipf redirects: a bare FastAPI 302 with no I/O (the code is the "
        "URL, encoded), a floor endpoint doing the one Redis GET a cache-aside redirect needs, the "
        "hardened variant (one auto-pipelined GET, clicks added up in memory) and the same with its "
        "optional 1 s replica-local hot cache, which takes the network off the redirect path."
    ),
    targets=(BARE, FLOOR, HARDENED, HARDENED_HOT),
    audit=audit_shortener,  # the runner audits no reference endpoint
    live_audit=reads_so_far,
    goals=(
        _capacity_goal("hardened", "floor", 1.0),
        _capacity_goal("hardened", "bare-302", 0.8),
        _capacity_goal("hardened-hot", "bare-302", 0.8),
    ),
)

VIRAL = _sweep_of(
    "viral",
    start=200.0,
    name="viral",
    title="URL shortener: one viral link",
    question="How many redirects per second of one link does each variant hold at the SLO?",
    what_to_watch=(
        "Every request redirects the same code. The naive variant reads and updates the same "
        "PostgreSQL row each time; the hardened one answers from Redis and adds the clicks up in memory."
    ),
    targets=(NAIVE, HARDENED),
    audit=audit_shortener,
    live_audit=reads_so_far,
    goals=(_capacity_goal("hardened", "naive", 5.0),),
)

CREATES = _sweep_of(
    "creates",
    start=300.0,
    name="creates",
    title="URL shortener: creates",
    question="How many creates per second does each variant hold at the SLO, and is every link stored?",
    what_to_watch=(
        "Every request creates a link. The naive variant draws a random code and checks PostgreSQL for "
        "a collision first; the hardened one takes a code from its pre-generated, leased key pool."
    ),
    targets=(NAIVE, HARDENED),
    audit=audit_creates,
    goals=(_capacity_goal("hardened", "naive", 1.5),),
)

SHORTENER = BenchDesign(
    name="shortener",
    scenarios={s.name: s for s in (ZIPF, CEILING, VIRAL, CREATES)},
    headline=ZIPF.name,
)
