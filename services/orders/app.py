"""``create_app(variant)``: the orders service, naive or hardened, behind one contract."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import asyncpg
from fastapi import FastAPI

from services.core.app import build_app
from services.core.health import register_health_check
from services.core.resources import (
    apply_schema,
    kafka_producer_check,
    open_kafka_producer,
    open_postgres_pool,
    postgres_check,
    read_resource,
)
from services.orders import api
from services.orders.clients import InventoryClient, PaymentGatewayClient, open_http_client
from services.orders.events import ensure_topics
from services.orders.hardened import AdmissionGate, HardenedOrderFlow, reap_idempotency_keys
from services.orders.naive import NaiveOrderFlow
from services.orders.ports import OrderFlow
from services.orders.settings import OrdersSettings, schema_for
from services.orders.soldout import (
    NoSoldOutGate,
    RedisSoldOutGate,
    SoldOutGate,
    open_gate_checks,
    open_gate_redis,
)

FlowBuilder = Callable[[FastAPI, OrdersSettings, AsyncExitStack], Awaitable[OrderFlow]]


async def build_naive(app: FastAPI, settings: OrdersSettings, stack: AsyncExitStack) -> OrderFlow:
    pool = await stack.enter_async_context(open_postgres_pool(settings, schema=schema_for("naive")))
    await apply_schema(pool, read_resource("services.orders", "schema.sql"))
    await ensure_topics(settings, [settings.orders_naive_topic])
    producer = await stack.enter_async_context(open_kafka_producer(settings))
    http = await stack.enter_async_context(open_http_client(settings))
    register_health_check(app, name="postgres", check=postgres_check(pool))
    register_health_check(app, name="kafka", check=kafka_producer_check(producer))
    return NaiveOrderFlow(
        pool=pool,
        inventory=InventoryClient(http=http, base_url=settings.orders_inventory_url),
        gateway=PaymentGatewayClient(http=http, base_url=settings.orders_payment_gateway_url),
        producer=producer,
        settings=settings,
    )


async def build_hardened(app: FastAPI, settings: OrdersSettings, stack: AsyncExitStack) -> OrderFlow:
    pool = await stack.enter_async_context(open_postgres_pool(settings, schema=schema_for("hardened")))
    await apply_schema(pool, read_resource("services.orders", "schema.sql"))
    register_health_check(app, name="postgres", check=postgres_check(pool))
    reaper = asyncio.create_task(
        reap_idempotency_keys(pool, interval_s=settings.orders_idempotency_reap_interval_s)
    )
    stack.callback(reaper.cancel)
    return HardenedOrderFlow(
        pool=pool,
        settings=settings,
        admission=AdmissionGate(limit=settings.orders_max_in_flight),
        sold_out=await wire_sold_out_gate(settings, pool, stack),
    )


async def wire_sold_out_gate(
    settings: OrdersSettings, pool: asyncpg.Pool, stack: AsyncExitStack
) -> SoldOutGate:
    """No health check for its Redis: the gate is an optimisation that steps aside when Redis fails,
    so a Redis outage must not make the orders service look down."""
    if not settings.orders_sold_out_gate:
        return NoSoldOutGate()
    redis = await stack.enter_async_context(open_gate_redis(settings))
    checks = await stack.enter_async_context(open_gate_checks(settings))
    return RedisSoldOutGate(redis, pool, checks=checks, ttl_s=settings.orders_sold_out_gate_ttl_s)


VARIANTS: dict[str, FlowBuilder] = {"naive": build_naive, "hardened": build_hardened}


def create_app(variant: str, settings: OrdersSettings | None = None) -> FastAPI:
    """The orders service; the variant only chooses which :class:`OrderFlow` is wired in."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown orders variant {variant!r}; expected one of {sorted(VARIANTS)}")
    settings = settings or OrdersSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            app.state.flow = await VARIANTS[variant](app, settings, stack)
            yield

    app = build_app(title=f"orders ({variant})", settings=settings, lifespan=lifespan)
    app.include_router(api.router)
    return app
