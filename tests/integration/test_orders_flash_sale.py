"""The flash sale, as numbers: the naive checkout oversells and double-charges, the row-lock "fix"
stops the oversell but not the duplicates, the hardened checkout sells exactly the stock and charges
each order once.

The profile: 50 units, 300 buyers of one unit each arriving over 3 s, a client timeout of 0.15 s and
one retry (same Idempotency-Key, which only the hardened variant honours). The gateway answers in
0.4 s, longer than the client waits, so every naive buyer who gets a unit times out and retries;
the inventory service waits 20 ms between reading and writing stock, so concurrent reservations
overlap (lost updates), or, with the row lock, queue behind each other.
"""

from __future__ import annotations

import uuid
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from services.lab.exercises.orders import BUYERS, CLIENT_TIMEOUT_S, NAIVE_POOL, PROFILE_ENV, SPREAD_S, STOCK
from services.lab.infra import InfraEndpoints
from services.orders.audit import SaleAudit
from tests.support.orders import (
    audit_when,
    flash_sale,
    fresh_topics,
    open_sale,
    run_orders_lab,
    run_worker,
    settings_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def env(infra: InfraEndpoints) -> dict[str, str]:
    return {
        **infra.as_env(),
        **PROFILE_ENV,
        **fresh_topics(),
    }


async def run_sale(base_url: str, sku: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as admin:
        await open_sale(admin, sku=sku, stock=STOCK)
    await flash_sale(base_url, sku=sku, buyers=BUYERS, spread_s=SPREAD_S, timeout_s=CLIENT_TIMEOUT_S)


def naive_settled(audit: SaleAudit) -> bool:
    return audit.charges >= audit.orders_committed and audit.events_published >= audit.orders_committed


async def test_naive_oversells_and_double_charges(env: dict[str, str], tmp_path: Path) -> None:
    sku = f"flash-{uuid.uuid4().hex[:8]}"
    with run_orders_lab("naive", env=env, log_dir=tmp_path, orders_env=NAIVE_POOL) as lab:
        await run_sale(lab.orders.url, sku)
        audit = await audit_when(
            settings_for(env), variant="naive", sku=sku, done=naive_settled, steady=True, interval_s=1.0
        )

    assert audit.oversold_units > 0
    assert audit.customers_with_multiple_orders > 0
    assert audit.customers_charged_more_than_once > 0


async def test_naive_with_a_row_lock_stops_the_oversell_but_not_the_double_charges(
    env: dict[str, str], tmp_path: Path
) -> None:
    sku = f"flash-{uuid.uuid4().hex[:8]}"
    row_lock = {**env, "LAB_ORDERS_NAIVE_LOCKING": "row-lock"}
    with run_orders_lab("naive", env=row_lock, log_dir=tmp_path, orders_env=NAIVE_POOL) as lab:
        await run_sale(lab.orders.url, sku)
        audit = await audit_when(
            settings_for(env), variant="naive", sku=sku, done=naive_settled, steady=True, interval_s=1.0
        )

    assert audit.oversold_units == 0
    assert audit.units_sold == STOCK
    assert audit.customers_with_multiple_orders > 0
    assert audit.customers_charged_more_than_once > 0


def hardened_settled(audit: SaleAudit) -> bool:
    return audit.orders_not_paid == 0 and audit.events_lost == 0


async def test_hardened_sells_exactly_the_stock_and_charges_each_order_once(
    env: dict[str, str], tmp_path: Path
) -> None:
    sku = f"flash-{uuid.uuid4().hex[:8]}"
    with ExitStack() as stack:
        lab = stack.enter_context(run_orders_lab("hardened", env=env, log_dir=tmp_path))
        for target in ("relay:run", "consumers:run_payments", "consumers:run_notifications"):
            stack.enter_context(run_worker(f"services.orders.{target}", env=lab.env, log_dir=tmp_path))
        await run_sale(lab.orders.url, sku)
        audit = await audit_when(
            settings_for(env), variant="hardened", sku=sku, done=hardened_settled, steady=True, interval_s=1.0
        )

    assert audit.units_sold == STOCK
    assert audit.oversold_units == 0
    assert audit.customers_with_multiple_orders == 0
    assert audit.customers_charged_more_than_once == 0
    assert audit.charges == audit.orders_committed == STOCK
    assert audit.orders_never_charged == 0
    assert audit.orders_not_paid == 0
    assert audit.events_published == STOCK
    assert audit.events_lost == 0
    assert audit.dlq_messages == 0
