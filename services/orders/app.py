"""``create_app(variant)``: the orders service, naive or hardened, behind one contract.

Both variants share the PostgreSQL pool in their own schema, opened once here; the variant then opens
its own adapters (:data:`VARIANTS`) on that pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import asyncpg
from fastapi import FastAPI

from services.core.app import build_app, open_service_pool, variant_wiring
from services.core.background import background
from services.core.health import register_health_check
from services.core.learner import learner_slot
from services.core.resources import kafka_producer_check, open_kafka_producer, read_resource
from services.orders import api
from services.orders.clients import InventoryClient, PaymentGatewayClient, open_http_client
from services.orders.errors import error_mapping
from services.orders.events import ensure_topics
from services.orders.hardened import AdmissionGate, HardenedOrderFlow
from services.orders.idempotency import keep_reaping_expired
from services.orders.naive import NaiveOrderFlow
from services.orders.ports import OrderFlow
from services.orders.settings import OrdersSettings, schema_for
from services.orders.soldout import open_sold_out_gate

OpenFlow = Callable[[FastAPI, OrdersSettings, asyncpg.Pool], AbstractAsyncContextManager[OrderFlow]]


@asynccontextmanager
async def open_naive_flow(
    app: FastAPI, settings: OrdersSettings, pool: asyncpg.Pool
) -> AsyncIterator[OrderFlow]:
    """The synchronous checkout: HTTP clients of inventory and the gateway, and a Kafka producer."""
    await ensure_topics(settings, [settings.orders_naive_topic])
    async with open_kafka_producer(settings) as producer, open_http_client(settings) as http:
        register_health_check(app, name="kafka", check=kafka_producer_check(producer))
        yield NaiveOrderFlow(
            pool=pool,
            inventory=InventoryClient(http=http, base_url=settings.orders_inventory_url),
            gateway=PaymentGatewayClient(http=http, base_url=settings.orders_payment_gateway_url),
            producer=producer,
            settings=settings,
        )


@asynccontextmanager
async def open_hardened_flow(
    app: FastAPI, settings: OrdersSettings, pool: asyncpg.Pool
) -> AsyncIterator[OrderFlow]:
    """The checkout in one statement, the optional sold-out gate, and the reaper of expired keys."""
    reaping = keep_reaping_expired(pool, interval_s=settings.orders_idempotency_reap_interval_s)
    async with open_sold_out_gate(settings, pool) as sold_out, background(reaping):
        yield HardenedOrderFlow(
            pool=pool,
            settings=settings,
            admission=AdmissionGate(limit=settings.orders_max_in_flight),
            sold_out=sold_out,
        )


VARIANTS: dict[str, OpenFlow] = {"naive": open_naive_flow, "hardened": open_hardened_flow}


def create_app(variant: str, settings: OrdersSettings | None = None) -> FastAPI:
    """The orders service; the variant only chooses which :class:`OrderFlow` is wired in."""
    settings = settings or OrdersSettings()
    open_flow = variant_wiring(
        VARIANTS, variant, design="orders", mine=learner_slot(settings, design="orders"), port=OrderFlow
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ddl = read_resource("services.orders", "schema.sql")
        async with (
            open_service_pool(app, settings, schema=schema_for(variant), ddl=ddl) as pool,
            open_flow(app, settings, pool) as flow,
        ):
            app.state.flow = flow
            yield

    errors = error_mapping(retry_after_s=settings.orders_retry_after_s)
    app = build_app(title=f"orders ({variant})", settings=settings, lifespan=lifespan, errors=errors)
    app.include_router(api.router)
    return app
