"""What the bench knows of each design: its Locust users, its services, how to reset it between
runs, how to audit it afterwards, and what the instructor says about it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis

from loadtests.engine.generator import read_failure_reasons, read_recording
from loadtests.engine.lab import Endpoints, RunningLab
from loadtests.environment import counter

HERE = Path(__file__).parent


@dataclass(frozen=True)
class BenchContext:
    lab: RunningLab

    @property
    def endpoints(self) -> Endpoints:
        return self.lab.endpoints


Reset = Callable[[BenchContext, str], None]
Audit = Callable[[BenchContext, str, Path], "AuditResult"]


@dataclass(frozen=True)
class AuditResult:
    """The design's invariants as numbers, and whether they hold (every one at its correct value)."""

    invariants: Mapping[str, float | int]
    holds: bool
    explanation: str

    def to_json(self) -> dict[str, Any]:
        return {"invariants": dict(self.invariants), "holds": self.holds, "explanation": self.explanation}


@dataclass(frozen=True)
class Sweep:
    """The offered rates of a capacity sweep: ``start``, then ``factor`` times more each step."""

    start: float
    factor: float
    steps: int


@dataclass(frozen=True)
class Goal:
    """A target for one ratio: ``numerator``'s ``metric`` over ``denominator``'s, in ``mode`` runs."""

    name: str
    numerator: str
    denominator: str
    metric: str  # a key of a run's "metrics": knee_rps, goodput_rps, p99_ms, system_us_per_request…
    goal: float
    mode: str
    higher_is_better: bool = True


@dataclass(frozen=True)
class BenchDesign:
    name: str
    title: str
    question: str
    locustfile: Path
    services: Mapping[str, str]  # variant -> the lab's component name
    reset: Reset
    audit: Audit
    what_to_watch: str
    # How it is loaded by default: open loop ("rate" or "sweep") with ``open_user``, or "closed"
    # with ``closed_user`` (from ``closed_locustfile`` when it is another file).
    mode: str
    closed_user: str
    open_user: str | None = None
    closed_locustfile: Path | None = None
    rate: float = 200.0
    sweep: Sweep = field(default_factory=lambda: Sweep(start=100.0, factor=1.5, steps=6))
    users: int = 20
    deadline_s: float = 2.0  # the client's one overall deadline per request
    warmup_s: float = 2.0  # trimmed from the start of each window
    goals: tuple[Goal, ...] = ()
    # Settings of the Locust users (e.g. the client timeout of the flash-sale buyers).
    load_env: Mapping[str, str] = field(default_factory=dict)
    # Settings the design's services need for the flaw to show in a short run; a bench or demo
    # sets them when the user has not, before it brings the lab up (a running lab keeps its own).
    lab_env: Mapping[str, str] = field(default_factory=dict)


# -- rate limiter --------------------------------------------------------------------------------

# Admissions are timed by the server (served_at), a little after the limiter decided; two
# admissions exactly one window apart can appear a few milliseconds closer. Not a violation.
TIMING_TOLERANCE_S = 0.05


def _reset_ratelimit(context: BenchContext, variant: str) -> None:
    """Both services restart, so each run's decision counters start at zero (and the naive counts,
    which live in its processes, with them); the hardened counts live in Redis and are removed."""
    context.lab.restart([f"ratelimit-{variant}"])
    if variant == "naive":
        return
    client = redis.Redis.from_url(context.endpoints.redis_url)
    try:
        keys = list(client.scan_iter(match="rl:*", count=1000))
        for start in range(0, len(keys), 500):
            client.unlink(*keys[start : start + 500])
    finally:
        client.close()


def most_in_any_window(timestamps: list[float], *, window_s: float) -> int:
    """The largest number of timestamps inside any half-open interval of length ``window_s``."""
    ordered = sorted(timestamps)
    most, start = 0, 0
    for end, stamp in enumerate(ordered):
        while stamp - ordered[start] >= window_s:
            start += 1
        most = max(most, end - start + 1)
    return most


def _audit_ratelimit(context: BenchContext, variant: str, run_dir: Path) -> AuditResult:
    """Over-admitted requests: for each hot key, admissions beyond the limit in its busiest window."""
    from services.ratelimit.settings import RateLimitSettings

    settings = RateLimitSettings()
    admitted: dict[str, list[float]] = {}
    for path in run_dir.glob("admitted-*.json"):
        for key, stamps in json.loads(path.read_text()).items():
            admitted.setdefault(key, []).extend(stamps)
    window = settings.ratelimit_window_s - TIMING_TOLERANCE_S
    busiest = {key: most_in_any_window(stamps, window_s=window) for key, stamps in admitted.items()}
    over = sum(max(0, most - settings.ratelimit_limit) for most in busiest.values())
    unchecked = _unchecked_decisions(context.lab.url_of(f"ratelimit-{variant}"))
    return AuditResult(
        invariants={
            "over_admitted_requests": over,
            "degraded_checks": unchecked["degraded"],
            "shed_requests": unchecked["shed"],
            "hot_keys": len(busiest),
            "limit_per_window": settings.ratelimit_limit,
            "most_admitted_in_one_window": max(busiest.values(), default=0),
        },
        holds=over == 0 and unchecked["degraded"] == 0 and bool(busiest),
        explanation=(
            f"each hot key may get {settings.ratelimit_limit} requests per {settings.ratelimit_window_s} s; "
            f"the busiest got {max(busiest.values(), default=0)}; {unchecked['degraded']} checks were "
            f"admitted unchecked (degraded) and {unchecked['shed']} requests shed"
        ),
    )


def _unchecked_decisions(url: str) -> dict[str, int]:
    """The run's requests that no check counted: admitted because the store failed (degraded), or
    refused with 503 because the server had too many checks in flight (shed)."""
    return {
        "degraded": int(counter(url, "ratelimit_decisions", {"outcome": "degraded"})),
        "shed": int(counter(url, "ratelimit_shed")),
    }


RATELIMIT = BenchDesign(
    name="ratelimit",
    title="Rate limiter",
    question="Does each variant admit at most its limit per hot key, and what does a check cost?",
    locustfile=HERE / "ratelimit_users.py",
    mode="rate",
    open_user="RateLimitedArrivals",
    closed_user="RateLimitedClient",
    # Two hot keys at a tenth of 600 req/s: each gets 30 a second, past the quota of 100 a minute on
    # both workers within a few seconds, which is what shows the naive per-process count.
    rate=600.0,
    services={"naive": "ratelimit-naive", "mine": "ratelimit-mine", "hardened": "ratelimit-hardened"},
    reset=_reset_ratelimit,
    audit=_audit_ratelimit,
    what_to_watch=(
        "Both variants run two worker processes. Watch the hot keys: the naive limiter counts in each "
        "process separately, so a hot key gets its limit once per worker; the hardened one counts in "
        "Redis, once for everybody."
    ),
    load_env={"LAB_LOAD_HOT_KEYS": "2"},
)

# -- order flow / flash sale ---------------------------------------------------------------------

FLASH_SKU = "flash"
FLASH_STOCK = 100


def _reset_orders(context: BenchContext, variant: str) -> None:
    """A fresh sale of the same SKU: the admin endpoint resets stock, orders and keys.

    The naive service may still be working through requests its clients abandoned in an earlier
    run (that backlog is part of its failure); a restart drops it, so it cannot sell into this sale.
    """
    if variant == "naive":
        context.lab.restart(["orders-naive"])
    url = context.lab.url_of(f"orders-{variant}")
    response = httpx.post(
        f"{url}/api/v1/admin/flash-sales",
        json={"sku": FLASH_SKU, "stock": FLASH_STOCK, "price_cents": 1999},
        headers={"Authorization": f"Bearer {context.lab.admin_token()}"},
        timeout=30,
    )
    response.raise_for_status()


def _audit_orders(context: BenchContext, variant: str, run_dir: Path) -> AuditResult:
    from services.orders.audit import audit_when_settled
    from services.orders.settings import OrdersSettings

    endpoints = context.endpoints
    settings = OrdersSettings(
        postgres_url=endpoints.postgres_url,
        redis_url=endpoints.redis_url,
        kafka_bootstrap=endpoints.kafka_bootstrap,
    )
    # The naive service answers abandoned requests long after the load stops, and each of them can
    # be another order and another charge: the audit waits for that backlog (bounded).
    sale = asyncio.run(audit_when_settled(settings, variant=variant, sku=FLASH_SKU, timeout_s=60))
    numbers = sale.as_dict()
    wrong = (
        "oversold_units",
        "customers_with_multiple_orders",
        "customers_charged_more_than_once",
        "events_lost",
    )
    # An order whose event the broker's storage lost is never paid: the broker's failure, not the design's.
    dropped = numbers["events_lost_by_broker_storage"]
    unpaid = max(0, numbers["orders_not_paid"] - dropped) if variant == "hardened" else 0
    invariants = {k: v for k, v in numbers.items() if isinstance(v, int)}
    return AuditResult(
        invariants=invariants,
        holds=not any(numbers[k] for k in wrong) and not unpaid,
        explanation=(
            f"{numbers['units_sold']} units sold of {numbers['initial_stock']}, {numbers['charges']} charges "
            f"for {numbers['orders_committed']} orders, {numbers['events_published']} events published"
            + (
                f"; {dropped} events lost by the broker's in-memory storage, not the design"
                if dropped
                else ""
            )
        ),
    )


ORDERS = BenchDesign(
    name="orders",
    title="Order flow: flash sale",
    question="Does each variant sell exactly its stock, charge each buyer once, and answer in time?",
    locustfile=HERE / "orders_flash_users.py",
    mode="closed",
    closed_user="FlashSaleBuyer",
    users=400,
    warmup_s=0.0,  # the sale is the burst at the start: nothing to trim
    services={"naive": "orders-naive", "mine": "orders-mine", "hardened": "orders-hardened"},
    reset=_reset_orders,
    audit=_audit_orders,
    what_to_watch=(
        f"{FLASH_STOCK} units, buyers who each want one and retry once when the answer is late. Watch "
        "oversold units (the naive stock check reads, waits for the slow inventory service, and writes "
        "back), customers charged twice (a retry is a new order), and p99 against the client timeout."
    ),
    # The lab compresses the incident's time: a 1.2 s gateway and a 1 s client timeout stand
    # for a stalled payment provider and a frontend giving up, so a short run shows what a real
    # sale shows over minutes.
    load_env={"LAB_LOAD_SKU": FLASH_SKU},
    deadline_s=1.0,
    lab_env={"LAB_PAYMENT_GATEWAY_LATENCY_MS": "1200"},
)


# -- URL shortener -------------------------------------------------------------------------------


def _fresh_links_per_run(context: BenchContext, variant: str) -> None:
    """Nothing to clear: every run creates its own links under its run id (``LAB_BENCH_RUN_ID``),
    and the auditor looks only at those."""


def _audit_shortener(context: BenchContext, variant: str, run_dir: Path) -> AuditResult:
    """Every redirect served is a click counted (after the flush), and every Location was right.

    A request the generator gave up on (its deadline passed, or the run ended) may still have been
    served and counted by the service, so the clicks may exceed the redirects seen by at most that many.
    """
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    whole = read_recording(run_dir).whole_run()
    served, failed = whole.ok, whole.failed
    # Any request without a good answer may still have reached the service and been counted.
    unanswered = whole.failed + whole.timeouts + whole.unfinished
    wrong = sum(n for reason, n in read_failure_reasons(run_dir).items() if "wrong Location" in reason)
    counted = asyncio.run(_clicks_when_flushed(context, variant, run_id, expected=served))
    return AuditResult(
        invariants={
            "redirects_served": served,
            "clicks_counted": counted,
            "clicks_lost": max(0, served - counted),
            "unanswered_but_counted": max(0, counted - served),
            "wrong_redirects": wrong,
            "failed_requests": failed,
        },
        holds=served > 0 and served <= counted <= served + unanswered and wrong == 0,
        explanation=(
            f"{served} redirects served, {counted} clicks counted, {wrong} redirects to a wrong "
            f"Location, {failed} requests failed"
        ),
    )


async def _clicks_when_flushed(context: BenchContext, variant: str, run_id: str, *, expected: int) -> int:
    """Hardened clicks reach PostgreSQL in batches: wait (bounded) until the flush caught up."""
    conn = await asyncpg.connect(context.endpoints.postgres_url)
    query = f"SELECT coalesce(sum(clicks), 0) FROM shortener_{variant}.links WHERE long_url LIKE $1"
    try:
        for _ in range(30):
            counted = int(await conn.fetchval(query, f"https://example.com/{run_id}/%"))
            if counted >= expected:
                return counted
            await asyncio.sleep(0.5)
        return counted
    finally:
        await conn.close()


SHORTENER = BenchDesign(
    name="shortener",
    title="URL shortener: redirects over a skewed working set",
    question="How many redirects per second does each variant hold at the SLO, and does every click count?",
    locustfile=HERE / "shortener" / "users.py",
    mode="sweep",
    open_user="ShortenerArrivals",
    closed_user="ShortenerUser",
    sweep=Sweep(start=200.0, factor=1.5, steps=6),
    goals=(
        Goal("capacity at the SLO, hardened / naive", "hardened", "naive", "knee_rps", 3.0, "sweep"),
        Goal("CPU per redirect, naive / hardened", "naive", "hardened", "system_us_per_request", 3.0, "rate"),
    ),
    services={"naive": "shortener-naive", "mine": "shortener-mine", "hardened": "shortener-hardened"},
    reset=_fresh_links_per_run,
    audit=_audit_shortener,
    what_to_watch=(
        "Each run creates 1,000 links, then redirects over them with Zipf popularity, checking every "
        "Location. Both variants count every click; watch what it costs: the naive variant reads and "
        "writes PostgreSQL on every redirect, the hardened one answers from Redis and adds clicks "
        "up in memory, written to PostgreSQL once a second. Throughput and p99 tell the difference."
    ),
    load_env={"LAB_SHORTENER_PROFILE": "zipf", "LAB_SHORTENER_SEED_LINKS": "1000"},
)


DESIGNS: dict[str, BenchDesign] = {design.name: design for design in (SHORTENER, RATELIMIT, ORDERS)}
