"""The rate limiter's stages: exact across workers, no double burst at the window edge, the
RateLimit fields, and a paused Redis answered within the budget."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from pydantic import ValidationError

from loadtests.ratelimit.audit import most_in_any_window
from services.core.settings import invalid_settings
from services.lab.exercises.scaffold import Flaw, ScaffoldSpec
from services.lab.exercises.serving import serve_variant
from services.lab.exercises.stages import CheckContext, Exercise, Measured, Stage, at_most, exactly
from services.ratelimit.settings import RateLimitSettings

FACTORY = "services.ratelimit.app:create_app"
RESOURCE = "/api/v1/resource"
BURST = 500
EDGE_LIMIT = 10
EDGE_WINDOW_S = 2
EDGE_ATTEMPTS = 3
# What a request may take beyond the budget on a busy 2-core machine: HTTP, the event loop, the client.
MARGIN_S = 0.5


@dataclass(frozen=True)
class Answer:
    status: int
    sent_at: float
    received_at: float
    headers: Mapping[str, str]
    body: dict[str, object]


async def fire(
    url: str, *, count: int, headers: Mapping[str, str] | None = None, concurrency: int | None = None
) -> list[Answer]:
    """``count`` GETs at once, each on its own connection (unless ``concurrency`` bounds them), as
    concurrent clients would send them."""
    limits = httpx.Limits(max_connections=concurrency or count, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        return list(await asyncio.gather(*(get(client, headers=headers) for _ in range(count))))


async def get(client: httpx.AsyncClient, *, headers: Mapping[str, str] | None = None) -> Answer:
    sent_at = time.time()
    response = await client.get(RESOURCE, headers=dict(headers or {}))
    return Answer(
        status=response.status_code,
        sent_at=sent_at,
        received_at=time.time(),
        headers=response.headers,
        body=response.json(),
    )


def limiter_settings() -> RateLimitSettings:
    """The limiter's settings as the variant under check reads them, read when a stage runs (a
    malformed ``LAB_RATELIMIT_*`` is then that stage's one-line error, not a traceback at import)."""
    try:
        return RateLimitSettings()
    except ValidationError as exc:
        raise ValueError(invalid_settings(exc)) from None


async def exact_across_workers(ctx: CheckContext) -> Measured:
    """500 concurrent requests with one key against two worker processes at the default quota."""
    limit = limiter_settings().ratelimit_limit
    with serve_variant(ctx, FACTORY, workers=2) as app:
        answers = await fire(app.url, count=BURST, headers={"X-API-Key": f"exact-{time.time_ns()}"})
    statuses = Counter(a.status for a in answers)
    workers = len({a.body.get("worker_pid") for a in answers if a.status == 200})
    detail = f"admitted {statuses[200]} of {BURST} (limit {limit}) by {workers} worker(s); {dict(statuses)}"
    return exactly(statuses[200], limit, detail)


async def admitted_around_a_window_edge(url: str, key: str) -> list[float] | None:
    """A full burst 0.6 s before a window boundary and another 0.2 s after it: when each was admitted.

    The claim needs the first burst served before the boundary; on a machine too busy for that the
    pair is tried again at a later boundary, with a fresh key. ``None`` when no attempt managed it:
    a pair that does not straddle the edge says nothing about the edge.
    """
    await fire(url, count=4, headers={"X-API-Key": f"{key}-warm-up"})  # connections and workers warm
    for attempt in range(EDGE_ATTEMPTS):
        boundary = _next_boundary(at_least_in_s=0.8)
        first = await _admitted_at(url, f"{key}-{attempt}", moment=boundary - 0.6)
        second = await _admitted_at(url, f"{key}-{attempt}", moment=boundary + 0.2)
        if first and max(first) < boundary:
            return first + second
    return None


def _next_boundary(*, at_least_in_s: float) -> float:
    boundary = (time.time() // EDGE_WINDOW_S + 1) * EDGE_WINDOW_S
    return boundary if boundary - time.time() >= at_least_in_s else boundary + EDGE_WINDOW_S


async def _admitted_at(url: str, key: str, *, moment: float) -> list[float]:
    await asyncio.sleep(max(0.0, moment - time.time()))
    answers = await fire(url, count=EDGE_LIMIT, headers={"X-API-Key": key})
    return [float(str(a.body["served_at"])) for a in answers if a.status == 200]


async def no_double_burst(ctx: CheckContext) -> Measured:
    env = {"LAB_RATELIMIT_LIMIT": str(EDGE_LIMIT), "LAB_RATELIMIT_WINDOW_S": str(EDGE_WINDOW_S)}
    with serve_variant(ctx, FACTORY, workers=2, env=env) as app:
        admitted = await admitted_around_a_window_edge(app.url, f"edge-{time.time_ns()}")
    if admitted is None:
        too_busy = f"machine too busy to aim the window edge in {EDGE_ATTEMPTS} attempts; rerun"
        return Measured(
            value=EDGE_ATTEMPTS, bound=f"< {EDGE_ATTEMPTS} missed aims", passed=False, detail=too_busy
        )
    most = most_in_any_window(admitted, window_s=EDGE_WINDOW_S)
    detail = f"most admitted in any {EDGE_WINDOW_S}s interval (limit {EDGE_LIMIT} per {EDGE_WINDOW_S}s)"
    return at_most(most, EDGE_LIMIT, detail)


def header_problems(admitted: httpx.Response, refused: httpx.Response) -> list[str]:
    """What is missing from an admitted and a refused answer's RateLimit fields and Retry-After."""
    problems = [
        f"admitted answer lacks {h}" for h in ("ratelimit", "ratelimit-policy") if h not in admitted.headers
    ]
    problems += [
        f"refused answer lacks {h}" for h in ("ratelimit", "retry-after") if h not in refused.headers
    ]
    if refused.status_code != 429:
        problems.append(f"the request past the limit got {refused.status_code}, not 429")
    elif not refused.headers.get("retry-after", "").isdigit() or int(refused.headers["retry-after"]) < 1:
        problems.append(f"Retry-After is {refused.headers.get('retry-after')!r}, not whole seconds >= 1")
    return problems


async def ratelimit_fields(ctx: CheckContext) -> Measured:
    with serve_variant(ctx, FACTORY, env={"LAB_RATELIMIT_LIMIT": "2"}) as app:
        async with httpx.AsyncClient(base_url=app.url, timeout=10) as client:
            headers = {"X-API-Key": f"fields-{time.time_ns()}"}
            answers = [await client.get(RESOURCE, headers=headers) for _ in range(3)]
    problems = header_problems(answers[0], answers[2])
    return exactly(len(problems), 0, "; ".join(problems) or "RateLimit, RateLimit-Policy, 429 + Retry-After")


async def paused_redis(ctx: CheckContext) -> Measured:
    """20 requests one after another while Redis is paused (SIGSTOP): the slowest answer."""
    assert ctx.signal_infra is not None, "this stage pauses the check's own Redis"
    budget_ms = limiter_settings().ratelimit_redis_timeout_ms
    with serve_variant(ctx, FACTORY, env={"LAB_RATELIMIT_LIMIT": "3"}) as app:
        async with httpx.AsyncClient(base_url=app.url, timeout=10) as client:
            await client.get(RESOURCE)
            with paused_redis_servers(ctx):
                timings = [await _timed(client) for _ in range(20)]
    return paused_verdict(timings, budget_ms=budget_ms)


@contextmanager
def paused_redis_servers(ctx: CheckContext) -> Iterator[None]:
    """Every Redis server of the check paused (each node of a cluster), resumed whatever happens."""
    assert ctx.signal_infra is not None
    paused: list[str] = []
    try:
        for name in ctx.redis_components:
            ctx.signal_infra(name, signal.SIGSTOP)
            paused.append(name)
        yield
    finally:
        for name in paused:
            ctx.signal_infra(name, signal.SIGCONT)


def paused_verdict(timings: list[tuple[float, int | str]], *, budget_ms: int) -> Measured:
    """The slowest answer against the budget; every answer must be the policy's 200 or 503."""
    slowest = max(took for took, _ in timings)
    statuses = sorted({status for _, status in timings}, key=str)  # a timeout is a status too
    bound = budget_ms / 1000 + MARGIN_S
    measured = at_most(
        round(slowest, 3), bound, f"slowest of {len(timings)} answers in s; statuses {statuses}"
    )
    if not set(statuses) <= {200, 503}:
        return Measured(
            measured.value, measured.bound, False, f"{measured.detail}: expected 200, or 503 with Retry-After"
        )
    return measured


async def _timed(client: httpx.AsyncClient) -> tuple[float, int | str]:
    started = time.perf_counter()
    try:
        status = answered_status(await client.get(RESOURCE))
    except httpx.TimeoutException:
        status = "timeout"
    return time.perf_counter() - started, status


def answered_status(response: httpx.Response) -> int | str:
    """The status, but a refusal that does not say when to come back is not the policy's 503."""
    if response.status_code == 503 and "retry-after" not in response.headers:
        return "503 without Retry-After"
    return response.status_code


SCAFFOLD = ScaffoldSpec(
    design="ratelimit",
    title="rate limiter",
    naive_opener="services.ratelimit.app:open_naive_limiter",
    opener="open_limiter",
    port="RateLimiter (services/ratelimit/ports.py: check(identity, policy) -> Decision)",
    flaws=(
        Flaw("self._counts: dict[", "this count lives in one process's memory; every worker has its own"),
        Flaw("window = int(now // policy.window_s)", "a fixed window: everything is forgotten at its edge"),
    ),
)

EXERCISE = Exercise(
    scaffold=SCAFFOLD,
    factory=FACTORY,
    stages=(
        Stage(1, f"exact across two workers: {BURST} concurrent requests, one key, admitted == limit",
              "Each worker process counts in its own memory. Where could one count live that every "
              "worker sees, and how is 'read, compare, increment' made one step?", exact_across_workers),
        Stage(2, f"no double burst at the window edge (at most {EDGE_LIMIT} in any {EDGE_WINDOW_S}s)",
              "A fixed window forgets everything at its boundary. What if the window slid with each "
              "request, remembering when each admitted request came?", no_double_burst),
        Stage(3, "RateLimit and RateLimit-Policy fields on answers; 429 with Retry-After past the limit",
              "The guard writes these fields from your Decision: are remaining and reset_s right, and "
              "is a denied check a Decision(allowed=False), not an exception?", ratelimit_fields),
        Stage(4, f"a paused Redis answered by the policy in LAB_RATELIMIT_REDIS_TIMEOUT_MS + {MARGIN_S}s",
              "Every call to Redis needs a deadline (LAB_RATELIMIT_REDIS_TIMEOUT_MS), and a decision "
              "for when it passes: admit (open) or refuse with 503 (closed).", paused_redis),
    ),
)  # fmt: skip
