"""Order-flow benchmarks, naive against hardened, measured in one run on this machine.

``python -m loadtests.orders_bench [--quick] [--out docs/results/orders.md]`` starts private embedded
servers, then, one variant at a time:

1. **Flash sale**: 100 units, 2,000 Locust buyers (``loadtests/orders_flash_users.py``) spawned
   within about a second, each buying once with a 2 s timeout and one retry with the same key;
   latency percentiles over every attempt (answers and timeouts) and the audit's invariants.
2. **Hot SKU**: 64 Locust users (``loadtests/orders_users.py``, FastHttpUser, own process) buy one
   unit each, closed loop, from a SKU whose stock never runs out; completed orders per second (from
   the database) and latency percentiles.
3. **Relay**: 50,000 outbox rows published to the broker; events per second.

Each measurement gets freshly started services, so none pays for work the one before left behind:
the hardened variant leaves a hot-SKU run's thousands of payments to its consumers (that is the
outbox's point), and the naive service goes on serving the requests of flash-sale buyers who gave up
waiting.

Locust runs in its own process and shares the two cores with the services and whatever else runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer

from loadtests.environment import counter, machine_info, private_infra
from loadtests.locust_runner import LoadSummary, run_locust
from loadtests.markdown import table_row
from services.lab.standalone import ServedApp, run_worker, serve_app
from services.orders.audit import audit_sale, audit_when_settled
from services.orders.events import ensure_topics
from services.orders.settings import OrdersSettings

HOST = "127.0.0.1"
ADMIN_TOKEN = "orders-bench"
USERS_FILE = Path(__file__).with_name("orders_users.py")
FLASH_USERS_FILE = Path(__file__).with_name("orders_flash_users.py")
RELAY = "services.orders.relay:run"
CONSUMERS = ("services.orders.consumers:run_payments", "services.orders.consumers:run_notifications")
# A slow inventory service (the incident) and a third-party gateway that answers in 50 ms.
BENCH_ENV = {
    "LAB_INVENTORY_DELAY_MS": "20",
    "LAB_PAYMENT_GATEWAY_LATENCY_MS": "50",
    "LAB_LOG_LEVEL": "WARNING",
}
CASES = (("naive", "none"), ("naive", "row-lock"), ("hardened", "-"))


# --- processes ------------------------------------------------------------------------------------


def service(
    factory: str, variant: str, *, env: Mapping[str, str], log_dir: Path, workers: int = 1
) -> AbstractContextManager[ServedApp]:
    return serve_app(factory, variant, env=env, log_dir=log_dir, workers=workers, startup_timeout_s=60)


@contextmanager
def orders_system(variant: str, *, env: Mapping[str, str], log_dir: Path, workers: int = 1) -> Iterator[str]:
    """Inventory, gateway, the orders variant (``workers`` uvicorn processes) and, for hardened, the
    relay and both consumers."""
    with ExitStack() as stack:
        inventory = stack.enter_context(
            service("services.orders.inventory:create_app", "inventory", env=env, log_dir=log_dir)
        ).url
        gateway = stack.enter_context(
            service("services.orders.gateway:create_app", "gateway", env=env, log_dir=log_dir)
        ).url
        wired = {**env, "LAB_ORDERS_INVENTORY_URL": inventory, "LAB_ORDERS_PAYMENT_GATEWAY_URL": gateway}
        url = stack.enter_context(
            service("services.orders.app:create_app", variant, env=wired, log_dir=log_dir, workers=workers)
        ).url
        if variant == "hardened":
            for target in (RELAY, *CONSUMERS):
                stack.enter_context(run_worker(target, env=wired, log_dir=log_dir))
        yield url


# --- load -----------------------------------------------------------------------------------------


async def open_sale(client: httpx.AsyncClient, *, sku: str, stock: int) -> None:
    response = await client.post(
        "/api/v1/admin/flash-sales",
        json={"sku": sku, "stock": stock, "price_cents": 1999},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    response.raise_for_status()


def hot_sku(url: str, *, users: int, duration_s: int, out_dir: Path) -> tuple[LoadSummary, str]:
    """Locust (its own process, FastHttpUser) with closed-loop buyers of one SKU that never sells out."""
    sku = f"hot-{uuid.uuid4().hex[:8]}"
    asyncio.run(_open_sale(url, sku=sku, stock=100_000_000))
    summary = run_locust(
        USERS_FILE, host=url, users=users, duration_s=duration_s, env={"LAB_LOAD_SKU": sku}, out_dir=out_dir
    )
    return summary, sku


async def _open_sale(url: str, *, sku: str, stock: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        await open_sale(client, sku=sku, stock=stock)


def flash_sale(
    url: str, *, sku: str, stock: int, buyers: int, timeout_s: float, out_dir: Path
) -> LoadSummary:
    """Locust: ``buyers`` users spawned within a second, each buying once with one retry."""
    asyncio.run(_open_sale(url, sku=sku, stock=stock))
    env = {"LAB_LOAD_SKU": sku, "LAB_LOAD_DEADLINE_S": str(timeout_s)}
    return run_locust(FLASH_USERS_FILE, host=url, users=buyers, duration_s=20, env=env, out_dir=out_dir)


async def _settled_audit(settings: OrdersSettings, *, variant: str, sku: str) -> dict[str, Any]:
    return (await audit_when_settled(settings, variant=variant, sku=sku)).as_dict()


# --- relay ----------------------------------------------------------------------------------------

INSERT_EVENTS = """
INSERT INTO orders_hardened.outbox (aggregate_id, event_type, payload)
SELECT id::text, 'OrderPlaced', jsonb_build_object('order_id', id::text, 'sku', 'relay-bench')
FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, $1)) AS events
"""


async def relay_throughput(env: Mapping[str, str], *, events: int, log_dir: Path) -> dict[str, Any]:
    conn = await asyncpg.connect(env["LAB_POSTGRES_URL"])
    try:
        await conn.execute(
            "UPDATE orders_hardened.outbox SET published_at = now() WHERE published_at IS NULL"
        )
        await conn.execute(INSERT_EVENTS, events)
        relay_env = {**env, "LAB_ORDERS_TOPIC": f"orders.bench.{uuid.uuid4().hex[:6]}"}
        with run_worker(RELAY, env=relay_env, log_dir=log_dir):
            first, last = await _publish_window(conn, events)
    finally:
        await conn.close()
    elapsed = last[0] - first[0]
    rate = (last[1] - first[1]) / elapsed if elapsed > 0 else 0.0
    return {"events": events, "events_per_s": round(rate), "seconds": round(elapsed, 2)}


async def _publish_window(
    conn: asyncpg.Connection, events: int
) -> tuple[tuple[float, int], tuple[float, int]]:
    """(time, published) when publishing was first seen and when it finished."""
    query = "SELECT count(*) FROM orders_hardened.outbox WHERE published_at IS NULL"
    first: tuple[float, int] | None = None
    deadline = time.perf_counter() + 300
    while time.perf_counter() < deadline:
        published = events - int(await conn.fetchval(query))
        now = time.perf_counter()
        if published > 0 and first is None:
            first = (now, published)
        if published >= events:
            return first or (now, published), (now, published)
        await asyncio.sleep(0.05)
    raise TimeoutError("the relay did not publish every event in time")


LAG_EVENTS = """
INSERT INTO orders_hardened.outbox (aggregate_id, event_type, payload)
SELECT id::text, 'OrderPlaced', jsonb_build_object(
    'order_id', id::text, 'sku', 'relay-lag', 'committed_ms', extract(epoch FROM clock_timestamp()) * 1000)
FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, $1)) AS events
"""


async def relay_lag(env: Mapping[str, str], *, rate: int, seconds: int, log_dir: Path) -> dict[str, Any]:
    """Commit ``rate`` events/s for ``seconds`` (a transaction every 10 ms) with the relay running,
    and measure commit → consumer lag with a consumer in this process (same clock)."""
    topic = f"orders.lag.{uuid.uuid4().hex[:6]}"
    settings = OrdersSettings(kafka_bootstrap=env["LAB_KAFKA_BOOTSTRAP"], orders_topic=topic)
    await ensure_topics(settings, [topic])
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    lags: list[float] = []
    expected = rate * seconds
    try:
        with run_worker(RELAY, env={**env, "LAB_ORDERS_TOPIC": topic}, log_dir=log_dir):
            await asyncio.sleep(3)  # the relay connects; rows it finds waiting would not measure lag
            collecting = asyncio.create_task(_collect_lags(consumer, lags, expected=expected))
            await _commit_steadily(env["LAB_POSTGRES_URL"], rate=rate, seconds=seconds)
            await asyncio.wait_for(collecting, timeout=60)
    finally:
        await consumer.stop()
    return {
        "rate": rate,
        "events": len(lags),
        "p50_ms": _percentile(lags, 0.50),
        "p99_ms": _percentile(lags, 0.99),
    }


async def _commit_steadily(postgres_url: str, *, rate: int, seconds: int) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        per_tick, started = rate // 100, time.perf_counter()
        for tick in range(seconds * 100):
            await conn.execute(LAG_EVENTS, per_tick)
            await asyncio.sleep(max(0.0, started + (tick + 1) / 100 - time.perf_counter()))
    finally:
        await conn.close()


async def _collect_lags(consumer: AIOKafkaConsumer, lags: list[float], *, expected: int) -> None:
    while len(lags) < expected:
        batches = await consumer.getmany(timeout_ms=500, max_records=5000)
        received_ms = time.time() * 1000
        payloads = [json.loads(r.value) for batch in batches.values() for r in batch]
        lags.extend(received_ms - p["committed_ms"] for p in payloads if "committed_ms" in p)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 1) if ordered else 0.0


# --- the run --------------------------------------------------------------------------------------


def bench_case(
    variant: str, locking: str, *, env: dict[str, str], quick: bool, log_dir: Path, workers: int
) -> dict[str, Any]:
    case_env = {**env, "LAB_ORDERS_NAIVE_LOCKING": locking if locking != "-" else "none"}
    settings = OrdersSettings(
        postgres_url=env["LAB_POSTGRES_URL"], kafka_bootstrap=env["LAB_KAFKA_BOOTSTRAP"]
    )
    case_dir = log_dir / f"{variant}-{locking}"
    # A fresh system per measurement: neither leaves work behind for the other to pay for (the naive
    # service keeps serving the requests of buyers who gave up; the hardened consumers keep charging).
    with orders_system(variant, env=case_env, log_dir=case_dir / "flash", workers=workers) as url:
        sku = f"flash-{uuid.uuid4().hex[:8]}"
        gated_before = gate_answers(url, variant)
        sale = flash_sale(url, sku=sku, stock=100, buyers=2000, timeout_s=2.0, out_dir=case_dir / "flash")
        gated = gate_answers(url, variant) - gated_before
        audit = asyncio.run(_settled_audit(settings, variant=variant, sku=sku))
    with orders_system(variant, env=case_env, log_dir=case_dir / "hot", workers=workers) as url:
        load, hot = hot_sku(url, users=64, duration_s=5 if quick else 15, out_dir=case_dir / "locust")
        created = asyncio.run(audit_sale(settings, variant=variant, sku=hot)).orders_committed
    hot_summary = {
        "created_per_s": round(created / load.duration_s, 1),
        "answers_per_s": load.throughput_rps,
        "failures": load.failures,
        "p50_ms": load.p50_ms,
        "p99_ms": load.p99_ms,
        "locust_saturated": load.locust_saturated,
    }
    sale_summary = {
        "requests": sale.requests,
        "failures": sale.failures,
        "p50_ms": sale.p50_ms,
        "p99_ms": sale.p99_ms,
        "locust_saturated": sale.locust_saturated,
        "sold_out_gate_answers": int(gated) if variant == "hardened" else "-",
    }
    return {
        "variant": variant,
        "locking": locking,
        "hot_sku": hot_summary,
        "flash_sale": sale_summary,
        "audit": audit,
    }


def gate_answers(url: str, variant: str) -> float:
    """Orders the sold-out gate answered so far (only the hardened variant has one)."""
    return counter(url, "orders_sold_out_gate") if variant == "hardened" else 0.0


def run(*, quick: bool, env: dict[str, str], log_dir: Path, workers: int) -> dict[str, Any]:
    cases = [bench_case(v, lock, env=env, quick=quick, log_dir=log_dir, workers=workers) for v, lock in CASES]
    relay = asyncio.run(relay_throughput(env, events=10_000 if quick else 50_000, log_dir=log_dir))
    relay["lag"] = asyncio.run(relay_lag(env, rate=2_500, seconds=5 if quick else 10, log_dir=log_dir))
    return {"machine": machine_info(), "env": BENCH_ENV, "workers": workers, "cases": cases, "relay": relay}


def render_markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items())
    lines = [
        "# Order flow: naive versus hardened (benchmark results)",
        "",
        f"Machine: {machine['cores']} cores ({machine['cpu']}), {machine['memory_gib']} GiB, "
        f"{machine['os']}, Python {machine['python']}; commit `{machine['commit']}`.",
        f"Packages: {packages}.",
        f"Injected: `{json.dumps(report['env'])}`. Orders service: {report['workers']} uvicorn "
        "worker(s); every other service one; Locust shares the cores.",
        "",
        "## Hot SKU (64 Locust users, closed loop, stock never runs out)",
        "",
        "| variant | locking | orders/s | answers/s | p50 ms | p99 ms | failures | Locust saturated |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    lines += [_hot_row(case) for case in report["cases"]]
    lines += [
        "",
        "## Flash sale (100 units, 2,000 Locust buyers spawned within ~1 s, 2 s timeout, one retry)",
        "",
        "| variant | locking | p50 ms | p99 ms | requests | timeouts (failures) | answered by the "
        "sold-out gate | sold | oversold | multi-order customers | double-charged customers | events lost |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [_sale_row(case) for case in report["cases"]]
    relay = report["relay"]
    lines += [
        "",
        "## Relay",
        "",
        f"{relay['events']} outbox rows published in {relay['seconds']} s: "
        f"**{relay['events_per_s']} events/s** (batch 500, one relay, acks=all).",
        *_lag_lines(relay.get("lag")),
        "",
    ]
    return "\n".join(lines)


def _hot_row(case: dict[str, Any]) -> str:
    hot = case["hot_sku"]
    cells = [case["variant"], case["locking"], hot["created_per_s"], hot["answers_per_s"], hot["p50_ms"]]
    cells += [hot["p99_ms"], hot["failures"], hot["locust_saturated"]]
    return table_row(cells)


def _sale_row(case: dict[str, Any]) -> str:
    sale, audit = case["flash_sale"], case["audit"]
    cells = [
        case["variant"],
        case["locking"],
        sale["p50_ms"],
        sale["p99_ms"],
        sale["requests"],
        sale["failures"],
        sale.get("sold_out_gate_answers", "-"),
    ]
    keys = ("units_sold", "oversold_units", "customers_with_multiple_orders")
    cells += [audit.get(key) for key in (*keys, "customers_charged_more_than_once", "events_lost")]
    return table_row(cells)


def _lag_lines(lag: dict[str, Any] | None) -> list[str]:
    if not lag:
        return []
    return [
        "",
        f"Commit → consumer lag at {lag['rate']} events/s ({lag['events']} events, LISTEN/NOTIFY wake-up): "
        f"p50 {lag['p50_ms']} ms, **p99 {lag['p99_ms']} ms**.",
    ]


def write_report(report: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    out.write_text(render_markdown(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="shorter runs, for a smoke test")
    parser.add_argument("--out", type=Path, default=Path("docs/results/orders.md"))
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers of the orders service")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="orders-bench-") as tmp,
        private_infra(Path(tmp) / "lab") as infra,
    ):
        env = {**infra.as_env(), **BENCH_ENV, "LAB_ADMIN_TOKEN": ADMIN_TOKEN}
        report = run(quick=args.quick, env=env, log_dir=Path(tmp) / "logs", workers=args.workers)
    write_report(report, args.out)
    print(json.dumps(report["cases"], indent=2))
    print(json.dumps(report["relay"]))


if __name__ == "__main__":
    main()
