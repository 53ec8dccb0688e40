"""The flash-sale auditor: a sale's invariants as numbers, read from PostgreSQL, the payment
gateway's ledger and the broker.

Lost events are split by who lost them. ``events_lost`` are the design's: committed orders whose
event neither is on the topic nor reached a consumer. ``events_lost_by_broker_storage`` are events
the broker acknowledged (the outbox marks a row published only then) that are gone from its topic
before any consumer read them: a broker that keeps messages in memory (the lab's embedded one) loses
them when it is killed or restarted; Apache Kafka keeps them on disk. Only the hardened variant
records acknowledgements, so a naive sale's losses are all counted as the design's.

The broker is read from the offsets recorded in ``flash_sales.event_offsets`` when the sale was
opened, not from the beginning: every event of the sale comes after them, and a lab that keeps every
run's events does not make each audit slower.

Used by the tests and the benchmark (:func:`audit_sale`) and as a command:
``lab audit orders [--sku SKU] [--variant naive|hardened] --json`` (the typer app :data:`cli`,
mounted by the lab as ``audit``) or ``python -m services.orders.audit orders --sku SKU``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import asyncpg
import typer
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from services.orders.events import TopicOffsets
from services.orders.settings import OrdersSettings, schema_for

logger = logging.getLogger(__name__)

VARIANTS = ("naive", "hardened")
# Polls of a second that bring nothing before a partition that reports records below its end counts
# as unreadable: the embedded broker, back from a kill, can report a high watermark it cannot serve.
# What was not read is not on the topic, and the audit ends instead of waiting forever.
SILENT_POLLS = 5


@dataclass(frozen=True)
class SaleAudit:
    """What happened in one sale of one variant. Every buyer of the flash-sale profile means to buy
    one unit once, so a customer with two orders or two charges is a duplicate."""

    variant: str
    sku: str
    initial_stock: int
    units_sold: int
    orders_committed: int
    oversold_units: int
    customers_with_multiple_orders: int
    charges: int
    customers_charged_more_than_once: int
    orders_never_charged: int
    orders_not_paid: int
    events_published: int
    events_lost: int
    events_lost_by_broker_storage: int
    redeliveries_absorbed: int
    dlq_messages: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _orders_queries(schema: str) -> dict[str, str]:
    orders = f'"{schema}".orders'
    charges = f'"{schema_for("gateway")}".charges'
    return {
        "stock": f'SELECT stock FROM "{schema}".flash_sales WHERE sku = $1',
        "event_offsets": f'SELECT event_offsets::text FROM "{schema}".flash_sales WHERE sku = $1',
        "sold": f"SELECT count(*) AS orders, coalesce(sum(quantity), 0) AS units FROM {orders} "
        "WHERE sku = $1",
        "multi_order": f"""
            SELECT count(*) FROM (SELECT customer_id FROM {orders} WHERE sku = $1
                                  GROUP BY customer_id HAVING count(*) > 1) AS dup""",
        "order_ids": f"SELECT order_id::text FROM {orders} WHERE sku = $1",
        "not_paid": f"SELECT count(*) FROM {orders} WHERE sku = $1 AND status <> 'paid'",
        "charges": f"""
            SELECT count(*) AS charges,
                   count(DISTINCT customer_id) FILTER (WHERE per_customer > 1) AS customers_charged_twice
            FROM (SELECT o.customer_id, count(c.*) OVER (PARTITION BY o.customer_id) AS per_customer
                  FROM {charges} c JOIN {orders} o ON o.order_id::text = c.order_id
                  WHERE o.sku = $1) AS charged""",
        "never_charged": f"""
            SELECT count(*) FROM {orders} o
            WHERE o.sku = $1
              AND NOT EXISTS (SELECT 1 FROM {charges} c WHERE c.order_id = o.order_id::text)""",
        # Events the consumers saw (an inbox row) and events the broker acknowledged (published_at).
        "consumed": f"""
            SELECT DISTINCT x.aggregate_id FROM "{schema}".outbox x
            JOIN "{schema}".inbox i ON i.message_id = x.id::text
            JOIN {orders} o ON o.order_id::text = x.aggregate_id
            WHERE o.sku = $1""",
        "acknowledged": f"""
            SELECT DISTINCT x.aggregate_id FROM "{schema}".outbox x
            JOIN {orders} o ON o.order_id::text = x.aggregate_id
            WHERE o.sku = $1 AND x.published_at IS NOT NULL""",
        "redeliveries": f"""
            SELECT coalesce(sum(i.deliveries - 1), 0) FROM "{schema}".inbox i
            JOIN "{schema}".outbox x ON x.id::text = i.message_id
            JOIN {orders} o ON o.order_id::text = x.aggregate_id
            WHERE o.sku = $1""",
    }


async def read_topic(
    settings: OrdersSettings, topic: str, *, start: Mapping[int, int] | None = None
) -> list[dict[str, Any]]:
    """Every message of ``topic`` from ``start`` (offsets per partition; the beginning where none is
    given), as decoded JSON (an absent topic is empty)."""
    return [json.loads(record.value) for record in await read_records(settings, topic, start=start)]


async def read_records(
    settings: OrdersSettings, topic: str, *, start: Mapping[int, int] | None = None
) -> list[ConsumerRecord]:
    """Every record of ``topic`` from ``start``, with its partition, offset, key and headers,
    each partition's in offset order."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=settings.kafka_request_timeout_ms,
    )
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            return []
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return await _read_to_end(consumer, partitions, start=start or {}) if partitions else []
    finally:
        await consumer.stop()


async def _read_to_end(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], *, start: Mapping[int, int]
) -> list[ConsumerRecord]:
    consumer.assign(partitions)
    end = await consumer.end_offsets(partitions)
    for tp in partitions:
        await _seek_to_start(consumer, tp, start=start.get(tp.partition), end=end[tp])
    records: list[ConsumerRecord] = []
    silent = 0
    while silent < SILENT_POLLS and [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
        batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
        records.extend(record for batch in batches.values() for record in batch)
        silent = 0 if batches else silent + 1
    if silent:
        logger.warning("topic_unreadable_below_its_end partitions=%s", [tp.partition for tp in partitions])
    return records


async def _seek_to_start(
    consumer: AIOKafkaConsumer, tp: TopicPartition, *, start: int | None, end: int
) -> None:
    """A start past the end means the topic is not the one the offset was recorded in (an in-memory
    broker restarted): nothing recorded can be trusted then, and the whole partition is read. A start
    below the log's first offset (retention) is moved up by ``auto_offset_reset``."""
    if start is None or start > end:
        await consumer.seek_to_beginning(tp)
    else:
        consumer.seek(tp, start)


def _order_ids_for(messages: Iterable[dict[str, Any]], sku: str) -> set[str]:
    return {str(m.get("order_id")) for m in messages if m.get("sku") == sku}


async def audit_sale(settings: OrdersSettings, *, variant: str, sku: str) -> SaleAudit:
    """The invariants of ``sku``'s sale in ``variant`` (``naive`` or ``hardened``)."""
    queries = _orders_queries(schema_for(variant))
    conn = await asyncpg.connect(settings.postgres_url)
    try:
        facts = await _database_facts(conn, queries, sku)
        offsets = await _sale_start_offsets(conn, queries, sku)
    finally:
        await conn.close()
    published = _order_ids_for(await _read_sale_events(settings, settings.topic_for(variant), offsets), sku)
    dead = (
        _order_ids_for(await _read_sale_events(settings, settings.orders_dlq_topic, offsets), sku)
        if variant != "naive"
        else set()
    )
    committed: set[str] = facts.pop("order_ids")
    missing = committed - published - facts.pop("consumed_ids")
    dropped_by_broker = missing & facts.pop("acknowledged_ids")
    stock = facts["initial_stock"]
    return SaleAudit(
        variant=variant,
        sku=sku,
        oversold_units=max(0, facts["units_sold"] - stock),
        events_published=len(published & committed),
        events_lost=len(missing - dropped_by_broker),
        events_lost_by_broker_storage=len(dropped_by_broker),
        dlq_messages=len(dead & committed),
        **facts,
    )


SO_FAR_TIMEOUT_S = 5.0


async def sale_so_far(settings: OrdersSettings, *, variant: str, sku: str) -> dict[str, int]:
    """What PostgreSQL and the ledger say of a sale still going, each correct at 0: units sold
    beyond the stock, customers with more than one order, customers charged more than once. Read
    only, one connection, no broker (lost events are known only once the sale has settled)."""
    queries = _orders_queries(schema_for(variant))
    # Bounded: a paused PostgreSQL delays the live counts, never the run that watches them.
    conn = await asyncpg.connect(
        settings.postgres_url, timeout=SO_FAR_TIMEOUT_S, command_timeout=SO_FAR_TIMEOUT_S
    )
    try:
        stock = int(await conn.fetchval(queries["stock"], sku) or 0)
        sold = await conn.fetchrow(queries["sold"], sku)
        charges = await conn.fetchrow(queries["charges"], sku)
        multi_order = int(await conn.fetchval(queries["multi_order"], sku))
    finally:
        await conn.close()
    return {
        "oversold_units": max(0, int(sold["units"]) - stock),
        "customers_with_multiple_orders": multi_order,
        "customers_charged_more_than_once": int(charges["customers_charged_twice"]),
    }


async def sale_start_offsets(settings: OrdersSettings, *, variant: str, sku: str) -> TopicOffsets:
    """Where the variant's topics ended when ``sku``'s sale was opened (empty: read from the start)."""
    conn = await asyncpg.connect(settings.postgres_url)
    try:
        return await _sale_start_offsets(conn, _orders_queries(schema_for(variant)), sku)
    finally:
        await conn.close()


async def _sale_start_offsets(conn: asyncpg.Connection, queries: dict[str, str], sku: str) -> TopicOffsets:
    recorded = await conn.fetchval(queries["event_offsets"], sku)
    by_topic: dict[str, dict[str, int]] = json.loads(recorded) if recorded else {}
    return {topic: {int(p): int(o) for p, o in offsets.items()} for topic, offsets in by_topic.items()}


async def _read_sale_events(
    settings: OrdersSettings, topic: str, offsets: TopicOffsets
) -> list[dict[str, Any]]:
    """The sale's events are all produced after it opened: nothing before its recorded offsets."""
    return await read_topic(settings, topic, start=offsets.get(topic))


async def _database_facts(conn: asyncpg.Connection, queries: dict[str, str], sku: str) -> dict[str, Any]:
    sold = await conn.fetchrow(queries["sold"], sku)
    charges = await conn.fetchrow(queries["charges"], sku)
    return {
        "initial_stock": int(await conn.fetchval(queries["stock"], sku) or 0),
        "units_sold": int(sold["units"]),
        "orders_committed": int(sold["orders"]),
        "customers_with_multiple_orders": int(await conn.fetchval(queries["multi_order"], sku)),
        "charges": int(charges["charges"]),
        "customers_charged_more_than_once": int(charges["customers_charged_twice"]),
        "orders_never_charged": int(await conn.fetchval(queries["never_charged"], sku)),
        "orders_not_paid": int(await conn.fetchval(queries["not_paid"], sku)),
        "redeliveries_absorbed": int(await conn.fetchval(queries["redeliveries"], sku)),
        "order_ids": await _ids(conn, queries["order_ids"], sku),
        "consumed_ids": await _ids(conn, queries["consumed"], sku),
        "acknowledged_ids": await _ids(conn, queries["acknowledged"], sku),
    }


async def _ids(conn: asyncpg.Connection, query: str, sku: str) -> set[str]:
    return {row[0] for row in await conn.fetch(query, sku)}


LATEST_SALE = 'SELECT sku FROM "{schema}".flash_sales ORDER BY opened_at DESC LIMIT 1'


async def audit_when_settled(
    settings: OrdersSettings, *, variant: str, sku: str, timeout_s: float = 60.0
) -> SaleAudit:
    """The audit once two readings a second apart agree and, for the hardened variant, every
    order is paid (but those whose event the broker's storage lost, which nothing will pay): late
    naive answers and lagging consumers are waited for, within ``timeout_s``."""
    previous: SaleAudit | None = None
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        current = await audit_sale(settings, variant=variant, sku=sku)
        all_paid = current.orders_not_paid <= current.events_lost_by_broker_storage
        settled = current == previous and (variant == "naive" or all_paid)
        if settled or asyncio.get_running_loop().time() > deadline:
            return current
        previous = current
        await asyncio.sleep(1)


async def latest_sale(settings: OrdersSettings, *, variant: str) -> str | None:
    """The sku of the sale opened last in ``variant`` (``None`` when it has none or no schema)."""
    conn = await asyncpg.connect(settings.postgres_url)
    try:
        sku: str | None = await conn.fetchval(LATEST_SALE.format(schema=schema_for(variant)))
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await conn.close()
    return sku


async def audit_variants(
    settings: OrdersSettings, *, variants: Iterable[str], sku: str | None
) -> dict[str, Any]:
    """One JSON-ready object: each variant's audit of ``sku`` (or of its latest sale)."""
    report: dict[str, Any] = {}
    for variant in variants:
        chosen = sku or await latest_sale(settings, variant=variant)
        if chosen is not None:
            report[variant] = (await audit_sale(settings, variant=variant, sku=chosen)).as_dict()
    return report


cli = typer.Typer(help="Audit a design's invariants after a run.", no_args_is_help=True)


@cli.command("orders")
def audit_orders(
    sku: Annotated[str | None, typer.Option(help="the sale to audit; default: each variant's latest")] = None,
    variant: Annotated[list[str] | None, typer.Option(help="naive and/or hardened; default: both")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Oversold units, duplicate orders, double charges, lost events (the design's apart from the
    broker storage's), redeliveries, DLQ."""
    report = asyncio.run(audit_variants(OrdersSettings(), variants=variant or VARIANTS, sku=sku))
    if as_json:
        typer.echo(json.dumps(report, sort_keys=True))
        return
    for name, numbers in report.items():
        typer.echo(f"[{name}] " + " ".join(f"{key}={value}" for key, value in numbers.items()))


@cli.callback()
def _group() -> None:
    """Keeps ``orders`` a sub-command even while it is the only one."""


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
