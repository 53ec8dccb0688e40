"""Each design's side of the fault matrix: what it runs, one request of its load, its auditor, and
the cells (:data:`MATRIX`).

Every cell starts the design afresh (two uvicorn workers for the service under test, its background
workers, unique links, keys, SKUs and topics), so a fault in one cell never shows in the next.
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

from loadtests.fault_targets import FaultLab, OneUvicornWorker, running_workers
from loadtests.faults import (
    FAULTS,
    LOAD_S,
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
from services.lab.standalone import ServedApp, serve_app
from services.orders.audit import SaleAudit, audit_sale
from services.orders.settings import OrdersSettings, schema_for
from services.ratelimit.settings import RateLimitSettings
from services.shortener.settings import ShortenerSettings

SERVICE_WORKERS = 2  # "one of two service workers": the other keeps serving
ADMIN_TOKEN = uuid.uuid4().hex


# -- URL shortener -------------------------------------------------------------------------------

SHORTENER_APP = "services.shortener.app:create_app"
LINKS = 20
CLICKS_QUERY = "SELECT coalesce(sum(clicks), 0) FROM shortener_{variant}.links WHERE long_url LIKE $1"


@dataclass
class ShortenerScenario:
    """Redirects over a few links; every redirect served must be one click counted."""

    lab: FaultLab
    cell: Cell
    app: ServedApp
    base_url: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    codes: list[str] = field(default_factory=list)

    def targets(self) -> Mapping[str, Target]:
        return {
            "postgres": self.lab.server("postgres"),
            "redis": self.lab.server("redis"),
            "worker": OneUvicornWorker(self.app),
        }

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


@contextmanager
def shortener(lab: FaultLab, cell: Cell, log_dir: Path) -> Iterator[Scenario]:
    env = lab.endpoints.as_env()
    with serve_app(SHORTENER_APP, cell.variant, env=env, log_dir=log_dir, workers=SERVICE_WORKERS) as app:
        yield ShortenerScenario(lab=lab, cell=cell, app=app, base_url=app.url)


# -- rate limiter --------------------------------------------------------------------------------

RATELIMIT_APP = "services.ratelimit.app:create_app"


@dataclass
class RateLimitScenario:
    """One client over its limit: the limiter must admit exactly the limit per window."""

    lab: FaultLab
    cell: Cell
    app: ServedApp
    base_url: str
    key: str = field(default_factory=lambda: f"fault-{uuid.uuid4().hex[:12]}")

    def targets(self) -> Mapping[str, Target]:
        return {"redis": self.lab.server("redis"), "worker": OneUvicornWorker(self.app)}

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


@contextmanager
def ratelimit(lab: FaultLab, cell: Cell, log_dir: Path) -> Iterator[Scenario]:
    env = lab.endpoints.as_env()
    with serve_app(RATELIMIT_APP, cell.variant, env=env, log_dir=log_dir, workers=SERVICE_WORKERS) as app:
        yield RateLimitScenario(lab=lab, cell=cell, app=app, base_url=app.url)


# -- order flow ----------------------------------------------------------------------------------

ORDERS_APP = "services.orders.app:create_app"
INVENTORY_APP = "services.orders.inventory:create_app"
GATEWAY_APP = "services.orders.gateway:create_app"
HARDENED_WORKERS = {
    "relay": "services.orders.relay:run",
    "payments": "services.orders.consumers:run_payments",
    "notifications": "services.orders.consumers:run_notifications",
}
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


def fresh_topics() -> dict[str, str]:
    """Topics and consumer groups of one cell alone."""
    unique = uuid.uuid4().hex[:8]
    return {
        "LAB_ORDERS_TOPIC": f"orders.events.{unique}",
        "LAB_ORDERS_DLQ_TOPIC": f"orders.events.{unique}.dlq",
        "LAB_ORDERS_NAIVE_TOPIC": f"orders.naive.events.{unique}",
        "LAB_ORDERS_CONSUMER_GROUP_PREFIX": f"orders-{unique}",
    }


@dataclass
class OrdersScenario:
    """Orders from new customers, each with a key of its own, for a sale that never sells out."""

    lab: FaultLab
    cell: Cell
    app: ServedApp
    base_url: str
    settings: OrdersSettings
    workers: Mapping[str, Target]
    sku: str = field(default_factory=lambda: f"fault-{uuid.uuid4().hex[:10]}")
    answered: set[str] = field(default_factory=set)
    broker_held: int = 0

    def targets(self) -> Mapping[str, Target]:
        return {
            "postgres": self.lab.server("postgres"),
            "kafka": self.lab.server("kafka"),
            "worker": OneUvicornWorker(self.app),
            **self.workers,
        }

    async def prepare(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/api/v1/admin/flash-sales",
            json={"sku": self.sku, "stock": 2 * int(RATE_PER_S * LOAD_S), "price_cents": 1999},
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
        held = {"events": self.broker_held, "charges": self.broker_held, "notifications": self.broker_held}
        return Audit(
            numbers={k: v for k, v in sale.as_dict().items() if isinstance(v, int)},
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
            bound=Bound(
                lost=held if self.broker_held else {},
                why=(
                    f"the embedded broker keeps messages in memory: a kill loses what it held, at most the "
                    f"{self.broker_held} events published before it (DESIGN.md)"
                    if self.broker_held
                    else "never lost, never doubled (docs/designs/orders.md)"
                ),
            ),
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
    """Every order paid, announced and notified: what the hardened flow promises, eventually."""
    sale, unnotified = reading
    return sale.orders_not_paid == 0 and sale.events_lost == 0 and unnotified == 0


def _any(_: tuple[SaleAudit, int]) -> bool:
    return True


@contextmanager
def orders(lab: FaultLab, cell: Cell, log_dir: Path) -> Iterator[Scenario]:
    topics = fresh_topics()
    base = {**lab.endpoints.as_env(), **topics, "LAB_ADMIN_TOKEN": ADMIN_TOKEN}
    with ExitStack() as stack:
        inventory = stack.enter_context(serve_app(INVENTORY_APP, "inventory", env=base, log_dir=log_dir))
        gateway = stack.enter_context(serve_app(GATEWAY_APP, "gateway", env=base, log_dir=log_dir))
        env = {
            **base,
            "LAB_ORDERS_INVENTORY_URL": inventory.url,
            "LAB_ORDERS_PAYMENT_GATEWAY_URL": gateway.url,
        }
        app = stack.enter_context(
            serve_app(ORDERS_APP, cell.variant, env=env, log_dir=log_dir, workers=SERVICE_WORKERS)
        )
        targets = HARDENED_WORKERS if cell.variant == "hardened" else {}
        workers = stack.enter_context(running_workers(targets, env=env, log_dir=log_dir))
        settings = OrdersSettings(
            postgres_url=lab.endpoints.postgres_url,
            kafka_bootstrap=lab.endpoints.kafka_bootstrap,
            orders_topic=topics["LAB_ORDERS_TOPIC"],
            orders_dlq_topic=topics["LAB_ORDERS_DLQ_TOPIC"],
            orders_naive_topic=topics["LAB_ORDERS_NAIVE_TOPIC"],
        )
        yield OrdersScenario(
            lab=lab, cell=cell, app=app, base_url=app.url, settings=settings, workers=workers
        )


# -- the matrix ----------------------------------------------------------------------------------

ScenarioFactory = Callable[[FaultLab, Cell, Path], AbstractContextManager[Scenario]]
SCENARIOS: dict[str, ScenarioFactory] = {"shortener": shortener, "ratelimit": ratelimit, "orders": orders}
COMPONENTS = {
    "shortener": ("postgres", "redis", "worker"),
    "ratelimit": ("redis", "worker"),
    "orders": ("postgres", "kafka", "worker", *HARDENED_WORKERS),
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
        Cell(design, "hardened", component, fault)
        for design, components in COMPONENTS.items()
        for component in components
        for fault in FAULTS
    ),
    *NAIVE_LESSONS,
)


async def run_matrix_cell(lab: FaultLab, cell: Cell, log_dir: Path) -> CellResult:
    """One cell on the matrix's own servers, its design started for it alone."""
    with SCENARIOS[cell.design](lab, cell, log_dir / cell.id) as scenario:
        return await run_cell(cell, scenario)
