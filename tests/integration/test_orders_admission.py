"""Admission control of the hardened checkout: beyond the in-flight bound, 429 with Retry-After."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from services.lab.infra import InfraEndpoints
from tests.support.orders import open_sale, place_order, run_orders_lab, wait_until

pytestmark = pytest.mark.integration


async def test_orders_beyond_the_in_flight_bound_are_shed_with_429(
    infra: InfraEndpoints, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    env = {**infra.as_env(), "LAB_ORDERS_MAX_IN_FLIGHT": "1", "LAB_ORDERS_RETRY_AFTER_S": "2"}
    sku = f"adm-{uuid.uuid4().hex[:8]}"
    with run_orders_lab("hardened", env=env, log_dir=tmp_path) as lab:
        async with httpx.AsyncClient(base_url=lab.orders.url, timeout=10) as client:
            await open_sale(client, sku=sku, stock=5)
            async with pg.transaction():  # hold the product row: the first order stays in flight
                await pg.execute("SELECT 1 FROM orders_hardened.inventory WHERE sku = $1 FOR UPDATE", sku)
                first = asyncio.create_task(place_order(client, sku=sku, customer_id="a", key="k1"))
                assert await wait_until(lambda: _claimed(pg, sku), timeout_s=10)

                shed = await place_order(client, sku=sku, customer_id="b", key="k2")

            assert (await first).status_code == 201
            admitted_again = await place_order(client, sku=sku, customer_id="b", key="k2")

    assert shed.status_code == 429
    assert shed.headers["retry-after"] == "2"
    assert shed.json()["type"] == "/problems/overloaded"
    assert admitted_again.status_code == 201


async def _claimed(pg: asyncpg.Connection, sku: str) -> bool:
    return bool(
        await pg.fetchval("SELECT count(*) FROM orders_hardened.idempotency_keys WHERE sku = $1", sku)
    )
