"""Each design's side of the fault matrix: the services it runs, one request of its load, its
auditor, and the cells (:data:`MATRIX`); and :class:`FaultMatrix`, which runs the cells.

A design's services start once, on its first cell, and serve every cell of that design and variant
after it (:data:`MATRIX` lists them in a row), as the servers do: every cell ends with what it
faulted recovered, which is what it checks, and each cell has links, keys and SKUs of its own, so
no cell's data enters another's audit. A cell that missed its targets may have left its design
broken, and a killed embedded broker leaves topics behind it that are not what they were: after
either, the next cell starts the design afresh, so one cell never fails the cells after it.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from loadtests.faults.model import (
    FAULTS,
    MOST_REQUESTS,
    RATE_PER_S,
    Answer,
    Audit,
    Bound,
    Cell,
    CellResult,
    Fault,
    Scenario,
    Target,
    Timeline,
    run_cell,
    settle,
)
from loadtests.faults.targets import (
    FaultLab,
    OneUvicornWorker,
    WorkerProcess,
    fault_lab,
    fault_lab_settings,
    running_workers,
)
from loadtests.orders.services import (
    ADMIN_TOKEN,
    HARDENED_WORKERS,
    fresh_topics,
    run_orders_lab,
    settings_for,
)
from services.lab.standalone import ServedApp, serve_app
from services.orders.audit import SaleAudit, audit_sale
from services.orders.settings import OrdersSettings, schema_for
from services.ratelimit.settings import RateLimitSettings
from services.shortener.settings import ShortenerSettings

SERVICE_WORKERS = 2  # "one of two service workers": the other keeps serving


@dataclass(frozen=True)
class Services:
    """A design's processes, shared by its cells: the service under test (two uvicorn workers) and,
    for the hardened order flow, its background workers; ``env`` is what they were started with."""

    app: ServedApp
    workers: Mapping[str, WorkerProcess] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)


ServicesStarter = Callable[[FaultLab, str, Path], AbstractContextManager[Services]]


def one_app(app_factory: str) -> ServicesStarter:
    """How a design that is one service starts: its app, under two uvicorn workers."""

    @contextmanager
    def start(lab: FaultLab, variant: str, log_dir: Path) -> Iterator[Services]:
        env = lab.endpoints.as_env()
        with serve_app(app_factory, variant, env=env, log_dir=log_dir, workers=SERVICE_WORKERS) as app:
            yield Services(app=app, env=env)

    return start


@dataclass
class OnServices:
    """What each design's scenario stands on: the matrix's servers, its cell, the design's services."""

    lab: FaultLab
    cell: Cell
    services: Services

    @property
    def base_url(self) -> str:
        return self.services.app.url

    def _faultable(self, *servers: str) -> dict[str, Target]:
        """The named servers, and one of the service's two uvicorn workers."""
        return {
            **{name: self.lab.server(name) for name in servers},
            "worker": OneUvicornWorker(self.services.app),
        }


# -- URL shortener -------------------------------------------------------------------------------

SHORTENER_APP = "services.shortener.app:create_app"
LINKS = 20
CLICKS_QUERY = "SELECT coalesce(sum(clicks), 0) FROM shortener_{variant}.links WHERE long_url LIKE $1"


@dataclass
class ShortenerScenario(OnServices):
    """Redirects over a few links; every redirect served must be one click counted."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    codes: list[str] = field(default_factory=list)

    def targets(self) -> Mapping[str, Target]:
        return self._faultable("postgres", "redis")

    async def prepare(self, client: httpx.AsyncClient) -> None:
        for number in range(LINKS):
            body = {"long_url": f"https://example.com/{self.run_id}/{number}"}
            response = await client.post("/api/v1/urls", json=body)
            response.raise_for_status()
            self.codes.append(response.json()["code"])

    async def send(self, client: httpx.AsyncClient, number: int) -> httpx.Response:
        return await client.get(f"/{self.codes[number % LINKS]}")

    def served(self, response: httpx.Response) -> bool:
        return response.status_code == 302

    async def before_fault(self, component: str, fault: Fault) -> None:
        pass

    async def audit(self, answers: list[Answer], timeline: Timeline) -> Audit:
        served = sum(1 for a in answers if a.served)
        # A request the client gave up on may still have been served, and counted.
        unknown = sum(1 for a in answers if a.outcome in ("timeout", "no answer"))
        counted = await settle(self._clicks, done=lambda c: c >= served, timeout_s=_click_settle_s())
        return Audit(
            numbers={"redirects_served": served, "clicks_counted": counted, "unanswered": unknown},
            lost={"clicks": max(0, served - counted)},
            doubled={"clicks": max(0, counted - served - unknown)},
            bound=_click_bound(self.cell),
        )

    async def _clicks(self) -> int:
        conn = await asyncpg.connect(self.lab.endpoints.postgres_url)
        try:
            query = CLICKS_QUERY.format(variant=self.cell.variant)
            return int(await conn.fetchval(query, f"https://example.com/{self.run_id}/%"))
        finally:
            await conn.close()


def _click_bound(cell: Cell) -> Bound:
    """What the shortener's docs allow: no click lost, except the pending clicks of a killed worker,
    at most one flush interval of its own (bounded here by the whole cell's rate over that interval)."""
    if (cell.component, cell.fault) != ("worker", "kill"):
        return Bound(why="clicks never lost to a Redis or PostgreSQL fault (docs/designs/shortener.md)")
    interval_s = ShortenerSettings().shortener_click_flush_interval_s
    most = math.ceil(RATE_PER_S * interval_s)
    return Bound(
        lost={"clicks": most},
        why=(
            f"a killed worker loses at most one flush interval ({interval_s:g} s) of its clicks: at "
            f"{RATE_PER_S} requests/s, at most {most} (docs/designs/shortener.md)"
        ),
    )


def _click_settle_s() -> float:
    """How late the docs say a click may reach PostgreSQL: with the next flush of the replica that
    served it (a killed replica's own pending clicks are lost, within the stated bound, not late)."""
    return 2 * ShortenerSettings().shortener_click_flush_interval_s


# -- rate limiter --------------------------------------------------------------------------------

RATELIMIT_APP = "services.ratelimit.app:create_app"


@dataclass
class RateLimitScenario(OnServices):
    """One client over its limit: the limiter must admit exactly the limit per window."""

    key: str = field(default_factory=lambda: f"fault-{uuid.uuid4().hex[:12]}")

    def targets(self) -> Mapping[str, Target]:
        return self._faultable("redis")

    async def prepare(self, client: httpx.AsyncClient) -> None:
        pass

    async def send(self, client: httpx.AsyncClient, number: int) -> httpx.Response:
        return await client.get("/api/v1/resource", headers={"X-API-Key": self.key})

    def served(self, response: httpx.Response) -> bool:
        """A checked decision: a 429, or a 200 carrying the ``RateLimit`` field (a fail-open
        admission states only ``RateLimit-Policy``)."""
        return response.status_code == 429 or (
            response.status_code == 200 and "ratelimit" in response.headers
        )

    async def before_fault(self, component: str, fault: Fault) -> None:
        pass

    async def audit(self, answers: list[Answer], timeline: Timeline) -> Audit:
        limit = RateLimitSettings().ratelimit_limit
        admitted = [a for a in answers if a.status == 200]
        unchecked = [a for a in admitted if not a.served]
        excused = [a for a in unchecked if self._while_redis_was_away(a, answers, timeline)]
        windows = 2 if self._redis_restarted_empty(timeline) else 1
        return Audit(
            numbers={
                "limit": limit,
                "admitted": len(admitted),
                "admitted_unchecked": len(unchecked),
                "admitted_unchecked_while_redis_was_away": len(excused),
            },
            lost={},
            doubled={"admissions": max(0, len(admitted) - limit)},
            bound=Bound(
                doubled={"admissions": len(excused) + (windows - 1) * limit},
                why=(
                    "fail-open admits unchecked while Redis is away (ADR 0202); a Redis killed without "
                    "persistence comes back empty and every window starts again"
                    if self._faults_redis
                    else "exactly the limit per window"
                ),
            ),
        )

    @property
    def _faults_redis(self) -> bool:
        return self.cell.component == "redis"

    def _redis_restarted_empty(self, timeline: Timeline) -> bool:
        return self._faults_redis and self.cell.fault == "kill" and timeline.recovered_at is not None

    def _while_redis_was_away(self, answer: Answer, answers: list[Answer], timeline: Timeline) -> bool:
        """Sent between the fault and the first checked decision after the recovery."""
        if not self._faults_redis or timeline.fault_at is None:
            return False
        back = min(
            (a.sent_at for a in answers if a.served and a.sent_at >= (timeline.recovered_at or 0)),
            default=float("inf"),
        )
        return timeline.fault_at <= answer.sent_at < back


# -- order flow ----------------------------------------------------------------------------------

# How long the audit waits for the hardened flow to pay and announce every order (bounded, as the
# bench's own audit waits).
ORDERS_SETTLE_S = 60.0
WARM_UP = -1  # the number of the order placed before the load
PUBLISHED_QUERY = """
    SELECT count(*) FROM "{schema}".outbox x JOIN "{schema}".orders o ON x.aggregate_id = o.order_id::text
    WHERE o.sku = $1 AND x.published_at IS NOT NULL"""
# The naive service publishes each order right after its commit: every committed order's event may
# be in the broker.
COMMITTED_COUNT_QUERY = 'SELECT count(*) FROM "{schema}".orders WHERE sku = $1'
UNNOTIFIED_QUERY = """
    SELECT count(*) FROM "{schema}".orders o
    WHERE o.sku = $1
      AND NOT EXISTS (SELECT 1 FROM "{schema}".notifications n WHERE n.order_id = o.order_id)"""
COMMITTED_QUERY = 'SELECT order_id::text FROM "{schema}".orders WHERE sku = $1'


@contextmanager
def order_flow(lab: FaultLab, variant: str, log_dir: Path) -> Iterator[Services]:
    """Inventory, the gateway and the orders service (two workers) wired to each other, on topics
    of their own; the hardened flow's relay and consumers beside them."""
    env = {**lab.endpoints.as_env(), **fresh_topics()}
    with ExitStack() as stack:
        flow = stack.enter_context(run_orders_lab(variant, env=env, log_dir=log_dir, workers=SERVICE_WORKERS))
        targets = HARDENED_WORKERS if variant == "hardened" else {}
        workers = stack.enter_context(running_workers(targets, env=flow.env, log_dir=log_dir))
        yield Services(app=flow.orders, workers=workers, env=flow.env)


@dataclass
class OrdersScenario(OnServices):
    """Orders from new customers, each with a key of its own, for a sale that never sells out."""

    sku: str = field(default_factory=lambda: f"fault-{uuid.uuid4().hex[:10]}")
    answered: set[str] = field(default_factory=set)
    broker_held: int = 0

    @property
    def settings(self) -> OrdersSettings:
        return settings_for(self.services.env)

    def targets(self) -> Mapping[str, Target]:
        return {**self._faultable("postgres", "kafka"), **self.services.workers}

    async def prepare(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/api/v1/admin/flash-sales",
            json={"sku": self.sku, "stock": MOST_REQUESTS + 1, "price_cents": 1999},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        response.raise_for_status()
        await self._warm_up(client)

    async def _warm_up(self, client: httpx.AsyncClient) -> None:
        """One order through the whole flow before the load: a fault must hit workers that run, not
        workers still starting (a relay paused while it applies the schema holds its locks)."""
        (await self.send(client, WARM_UP)).raise_for_status()
        done = _settled if self.cell.variant == "hardened" else _any
        if not done(await settle(self._sale, done=done, timeout_s=ORDERS_SETTLE_S)):
            raise RuntimeError(f"the warm-up order of {self.sku} was not paid and announced in time")

    async def send(self, client: httpx.AsyncClient, number: int) -> httpx.Response:
        body = {"sku": self.sku, "quantity": 1, "customer_id": f"c{number}"}
        response = await client.post(
            "/api/v1/orders", json=body, headers={"Idempotency-Key": f"{self.sku}-{number}"}
        )
        if response.status_code == 201:
            self.answered.add(str(response.json()["order_id"]))
        return response

    def served(self, response: httpx.Response) -> bool:
        return response.status_code == 201

    async def before_fault(self, component: str, fault: Fault) -> None:
        """Before a broker kill: what it may hold, since the embedded broker keeps it in memory."""
        if component == "kafka" and fault == "kill":
            hardened = self.cell.variant == "hardened"
            self.broker_held = await self._count(PUBLISHED_QUERY if hardened else COMMITTED_COUNT_QUERY)

    async def audit(self, answers: list[Answer], timeline: Timeline) -> Audit:
        hardened = self.cell.variant == "hardened"
        done = _settled if hardened else _any
        sale, unnotified = await settle(self._sale, done=done, timeout_s=ORDERS_SETTLE_S)
        committed = await self._committed()
        return Audit(
            numbers={
                **{k: v for k, v in sale.as_dict().items() if isinstance(v, int)},
                "published_before_the_kill": self.broker_held,
            },
            lost={
                "orders": len(self.answered - committed),
                "events": sale.events_lost,
                "charges": sale.orders_never_charged if hardened else 0,
                "notifications": unnotified,
            },
            doubled={
                "orders": sale.customers_with_multiple_orders,
                "charges": sale.customers_charged_more_than_once,
            },
            bound=self._bound(sale) if hardened else self._naive_bound(),
        )

    def _bound(self, sale: SaleAudit) -> Bound:
        """Never lost, never doubled; but the events a killed broker acknowledged and came back
        without (the audit finds them: marked published, gone from the topic before any consumer
        read them) are never charged or notified."""
        gone = sale.events_lost_by_broker_storage
        if not gone:
            return Bound(why="never lost, never doubled (docs/designs/orders.md)")
        return Bound(
            lost={"charges": gone, "notifications": gone},
            why=(
                f"the embedded broker keeps messages in memory: the kill lost {gone} events it had "
                f"acknowledged ({self.broker_held} were published just before it), which nothing will "
                "charge or notify (DESIGN.md)"
            ),
        )

    def _naive_bound(self) -> Bound:
        """The naive flow records no acknowledgement: what the broker may have held is every order
        committed before the kill."""
        held = self.broker_held
        if not held:
            return Bound(why="shown, not judged")
        return Bound(
            lost={"events": held, "charges": held, "notifications": held},
            why=f"a kill loses what the broker held, at most the {held} events published before it",
        )

    async def _sale(self) -> tuple[SaleAudit, int]:
        """The sale's audit and its orders without a notification (the naive flow sends none)."""
        sale = await audit_sale(self.settings, variant=self.cell.variant, sku=self.sku)
        hardened = self.cell.variant == "hardened"
        return sale, await self._count(UNNOTIFIED_QUERY) if hardened else 0

    async def _count(self, query: str) -> int:
        conn = await asyncpg.connect(self.settings.postgres_url)
        try:
            return int(await conn.fetchval(query.format(schema=schema_for(self.cell.variant)), self.sku))
        finally:
            await conn.close()

    async def _committed(self) -> set[str]:
        conn = await asyncpg.connect(self.settings.postgres_url)
        try:
            query = COMMITTED_QUERY.format(schema=schema_for(self.cell.variant))
            return {row[0] for row in await conn.fetch(query, self.sku)}
        finally:
            await conn.close()


def _settled(reading: tuple[SaleAudit, int]) -> bool:
    """Every order paid, announced and notified, what the hardened flow promises eventually; but
    those whose event a killed broker lost, which nothing will pay (waiting for them only runs out
    the settling time)."""
    sale, unnotified = reading
    gone = sale.events_lost_by_broker_storage
    return sale.events_lost == 0 and sale.orders_not_paid <= gone and unnotified <= gone


def _any(_: tuple[SaleAudit, int]) -> bool:
    return True


# -- the matrix ----------------------------------------------------------------------------------

ScenarioFactory = Callable[[FaultLab, Cell, Services], Scenario]


@dataclass(frozen=True)
class Design:
    start: ServicesStarter
    scenario: ScenarioFactory
    components: tuple[str, ...]


DESIGNS = {
    "shortener": Design(one_app(SHORTENER_APP), ShortenerScenario, ("postgres", "redis", "worker")),
    "ratelimit": Design(one_app(RATELIMIT_APP), RateLimitScenario, ("redis", "worker")),
    "orders": Design(order_flow, OrdersScenario, ("postgres", "kafka", "worker", *HARDENED_WORKERS)),
}
DUAL_WRITE = "publish after commit: the events of the outage are lost"
NAIVE_LESSONS = (
    Cell("shortener", "naive", "postgres", "kill", lesson="every redirect reads PostgreSQL: none is served"),
    Cell(
        "ratelimit", "naive", "worker", "kill",
        lesson="each worker counts alone, and the replacement of a killed one starts from zero",
    ),
    Cell("orders", "naive", "kafka", "kill", lesson=DUAL_WRITE),
)  # fmt: skip
MATRIX: tuple[Cell, ...] = (
    *(
        Cell(name, "hardened", component, fault)
        for name, design in DESIGNS.items()
        for component in design.components
        for fault in FAULTS
    ),
    *NAIVE_LESSONS,
)


class FaultMatrix:
    """The matrix's own servers, and the services of one design and variant at a time: started for
    its first cell, kept for the cells after it, stopped when another design's cell comes."""

    def __init__(self, lab: FaultLab, log_dir: Path) -> None:
        self.lab = lab
        self._log_dir = log_dir
        self._running: tuple[tuple[str, str], Services, ExitStack] | None = None

    async def run(self, cell: Cell) -> CellResult:
        design = DESIGNS[cell.design]
        try:
            result = await run_cell(cell, design.scenario(self.lab, cell, self._services_for(cell)))
        except BaseException:
            self.close()
            raise
        if not result.holds or result.timeline.error or _leaves_broker_state_behind(cell):
            self.close()  # what it left broken must not fail the next cell
        return result

    def _services_for(self, cell: Cell) -> Services:
        key = (cell.design, cell.variant)
        if self._running is not None and self._running[0] == key:
            return self._running[1]
        self.close()
        with ExitStack() as stack:
            log_dir = self._log_dir / f"{cell.design}-{cell.variant}-{uuid.uuid4().hex[:6]}"
            services = stack.enter_context(DESIGNS[cell.design].start(self.lab, cell.variant, log_dir))
            self._running = (key, services, stack.pop_all())
        return services

    def close(self) -> None:
        running, self._running = self._running, None
        if running is not None:
            running[2].close()


def _leaves_broker_state_behind(cell: Cell) -> bool:
    """A killed embedded broker comes back with its topics gone, and at times with one it cannot
    serve (see the test's BROKER_DEFECTS): the cells after it start the design on new topics."""
    return (cell.component, cell.fault) == ("kafka", "kill")


@contextmanager
def fault_matrix(state_dir: Path) -> Iterator[FaultMatrix]:
    """A matrix on embedded servers of its own under ``state_dir``, with the services' logs."""
    with fault_lab(fault_lab_settings(state_dir / "lab")) as lab:
        matrix = FaultMatrix(lab, state_dir / "services")
        try:
            yield matrix
        finally:
            matrix.close()
