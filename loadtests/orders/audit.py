"""The order flow's resets and audits: a fresh sale per run, then its invariants read from
PostgreSQL, the broker and the payment ledger (:mod:`services.orders.audit`), or, for the relay,
how fast and how late the run's outbox rows were published."""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from loadtests.engine.scenario import AuditResult, BenchContext, Reset, Target

WRONG_SALE = (
    "oversold_units",
    "customers_with_multiple_orders",
    "customers_charged_more_than_once",
)


def _reset_sale(context: BenchContext, target: Target, *, sku: str, stock: int) -> None:
    """A fresh sale of ``sku``: the admin endpoint resets stock, orders and keys.

    A naive service may still be working through requests its clients abandoned in an earlier
    run (that backlog is part of its failure); a restart drops it, so it cannot sell into this sale.
    """
    if target.variant == "naive":
        context.lab.restart([target.component])
    response = httpx.post(
        f"{context.lab.url_of(target.component)}/api/v1/admin/flash-sales",
        json={"sku": sku, "stock": stock, "price_cents": 1999},
        headers={"Authorization": f"Bearer {context.lab.admin_token()}"},
        timeout=30,
    )
    response.raise_for_status()


def sale_reset(*, sku: str, stock: int) -> Reset:
    return partial(_reset_sale, sku=sku, stock=stock)


def _settings(context: BenchContext) -> Any:
    from services.orders.settings import OrdersSettings

    endpoints = context.endpoints
    return OrdersSettings(
        postgres_url=endpoints.postgres_url,
        redis_url=endpoints.redis_url,
        kafka_bootstrap=endpoints.kafka_bootstrap,
    )


def audit_flash_sale(context: BenchContext, target: Target, run_dir: Path, *, sku: str) -> AuditResult:
    """Sold exactly the stock, charged each buyer once, lost no event, paid every order."""
    from services.orders.audit import audit_when_settled

    variant = target.variant
    # The naive service answers abandoned requests long after the load stops, and each of them can
    # be another order and another charge: the audit waits for that backlog (bounded).
    sale = asyncio.run(audit_when_settled(_settings(context), variant=variant, sku=sku, timeout_s=60))
    numbers = sale.as_dict()
    # An order whose event the broker's storage lost is never paid: the broker's failure, not the design's.
    dropped = numbers["events_lost_by_broker_storage"]
    unpaid = max(0, numbers["orders_not_paid"] - dropped) if variant == "hardened" else 0
    return AuditResult(
        invariants={k: v for k, v in numbers.items() if isinstance(v, int)},
        holds=not any(numbers[k] for k in (*WRONG_SALE, "events_lost")) and not unpaid,
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


def sale_so_far(context: BenchContext, target: Target, run_dir: Path, *, sku: str) -> dict[str, int]:
    """The live console's counts of a sale still going (read-only; lost events wait for the audit)."""
    from services.orders.audit import sale_so_far as read_sale_so_far

    return asyncio.run(read_sale_so_far(_settings(context), variant=target.variant, sku=sku))


def audit_hot_sku(context: BenchContext, target: Target, run_dir: Path, *, sku: str) -> AuditResult:
    """The sale's invariants as they stand when the load ends. The question is capacity: the
    payments of thousands of orders are not waited for (the flash-sale scenario audits events and
    payments to the end), so only what the request path decides is held to its correct value."""
    from services.orders.audit import audit_sale

    numbers = asyncio.run(audit_sale(_settings(context), variant=target.variant, sku=sku)).as_dict()
    return AuditResult(
        invariants={k: v for k, v in numbers.items() if isinstance(v, int)},
        holds=not any(numbers[k] for k in WRONG_SALE),
        explanation=(
            f"{numbers['orders_committed']} orders, {numbers['units_sold']} units sold, "
            f"{numbers['customers_with_multiple_orders']} customers with more than one order "
            "(payments and events: see the flash-sale scenario)"
        ),
    )


RELAY_QUERY = """
SELECT count(*) AS events,
       count(o.published_at) AS published,
       coalesce(percentile_cont(0.5) WITHIN GROUP (
           ORDER BY extract(epoch FROM o.published_at - o.created_at)), 0) * 1000 AS p50_ms,
       coalesce(percentile_cont(0.99) WITHIN GROUP (
           ORDER BY extract(epoch FROM o.published_at - o.created_at)), 0) * 1000 AS p99_ms,
       coalesce(extract(epoch FROM max(o.published_at) - min(o.published_at)), 0) AS publishing_s
FROM orders_hardened.outbox o JOIN orders_hardened.orders r ON r.order_id::text = o.aggregate_id
WHERE r.sku = $1
"""


def audit_relay(context: BenchContext, target: Target, run_dir: Path, *, sku: str) -> AuditResult:
    """Every order of the run relayed, and how late: commit → publish lag from the outbox's own
    timestamps (both PostgreSQL's clock), and the events published per second while it published."""
    row = asyncio.run(_relayed_when_done(context.endpoints.postgres_url, sku))
    events, published = int(row["events"]), int(row["published"])
    seconds = float(row["publishing_s"])
    rate = round(published / seconds, 1) if seconds > 0 else 0.0
    return AuditResult(
        invariants={
            "events_committed": events,
            "events_unpublished": events - published,
            "publish_lag_p50_ms": round(float(row["p50_ms"]), 1),
            "publish_lag_p99_ms": round(float(row["p99_ms"]), 1),
            "events_published_per_s": rate,
        },
        holds=events > 0 and published == events,
        explanation=(
            f"{published} of {events} events published, {rate} a second; commit → publish lag "
            f"p50 {float(row['p50_ms']):.1f} ms, p99 {float(row['p99_ms']):.1f} ms"
        ),
    )


async def _relayed_when_done(postgres_url: str, sku: str) -> asyncpg.Record:
    """The relay publishes in batches: wait (bounded) until it caught up with the run's orders."""
    conn = await asyncpg.connect(postgres_url)
    try:
        for _ in range(60):
            row = await conn.fetchrow(RELAY_QUERY, sku)
            if row["events"] == row["published"]:
                break
            await asyncio.sleep(0.5)
        return row
    finally:
        await conn.close()
