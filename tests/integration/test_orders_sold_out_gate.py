"""The sold-out gate of the hardened checkout: once PostgreSQL has found a sale sold out, later buyers
are answered 409 by Redis alone; a retry of an order that succeeded still gets its 201; opening the
sale again clears the gate; an order larger than the stock left does not close the sale.

Redis failing or stalling is in ``test_orders_sold_out_gate_faults.py``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from loadtests.environment import counter
from services.core.cluster import RedisClient
from services.core.resources import read_resource
from services.lab.infra import InfraEndpoints
from services.orders.soldout import gate_key, sale_token
from tests.support.cluster import ON_EACH_REDIS_MODE
from tests.support.orders import OrdersLab, buy, open_sale, place_order, run_orders_lab

pytestmark = pytest.mark.integration

GATE_ANSWERS = "orders_sold_out_gate"
TURNED_AWAY = 20
# Every table an order touches before or in its checkout statement.
LOCK_CHECKOUT_TABLES = """
LOCK TABLE orders_hardened.idempotency_keys, orders_hardened.flash_sales, orders_hardened.inventory,
           orders_hardened.orders
IN ACCESS EXCLUSIVE MODE
"""


@pytest.fixture(scope="module")
def lab(infra: InfraEndpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrdersLab]:
    with run_orders_lab("hardened", env=infra.as_env(), log_dir=tmp_path_factory.mktemp("gate")) as running:
        yield running


@pytest.fixture
def sku() -> str:
    return f"gate-{uuid.uuid4().hex[:10]}"


def gate_answers(client: httpx.AsyncClient) -> float:
    return counter(str(client.base_url), GATE_ANSWERS)


async def sell_out(client: httpx.AsyncClient, sku: str, *, stock: int) -> list[httpx.Response]:
    """Open a sale, sell every unit to a buyer of its own (``w0``, ``w1`` …), then let one more buyer
    hear from PostgreSQL that it is sold out, which marks the gate."""
    await open_sale(client, sku=sku, stock=stock)
    winners = [await buy(client, sku, f"w{i}") for i in range(stock)]
    assert [response.status_code for response in winners] == [201] * stock
    assert (await buy(client, sku, "late")).status_code == 409
    return winners


async def stored_keys(pg: asyncpg.Connection, sku: str) -> int:
    return int(await pg.fetchval("SELECT count(*) FROM orders_hardened.idempotency_keys WHERE sku = $1", sku))


@ON_EACH_REDIS_MODE
async def test_after_the_sell_out_buyers_are_turned_away_without_postgresql(
    client: httpx.AsyncClient, sku: str, pg: asyncpg.Connection
) -> None:
    await sell_out(client, sku, stock=2)
    answered_before = gate_answers(client)
    keys_before = await stored_keys(pg, sku)

    async with pg.transaction():  # a buyer who reached PostgreSQL would wait here past its timeout
        await pg.execute(LOCK_CHECKOUT_TABLES)
        answers = await asyncio.gather(*(buy(client, sku, f"b{i}", timeout_s=5) for i in range(TURNED_AWAY)))

    assert [answer.status_code for answer in answers] == [409] * TURNED_AWAY
    assert {answer.json()["type"] for answer in answers} == {"/problems/out-of-stock"}
    assert {answer.headers["content-type"] for answer in answers} == {"application/problem+json"}
    assert gate_answers(client) == answered_before + TURNED_AWAY
    assert await stored_keys(pg, sku) == keys_before


@ON_EACH_REDIS_MODE
async def test_a_retry_of_an_order_that_succeeded_still_gets_its_201(
    client: httpx.AsyncClient, sku: str
) -> None:
    winners = await sell_out(client, sku, stock=2)
    answered_before = gate_answers(client)

    replays = [await buy(client, sku, f"w{i}") for i in range(2)]
    stranger = await place_order(
        client, sku=sku, customer_id="stranger", key="w0-key"
    )  # keys are per customer

    assert [replay.status_code for replay in replays] == [201, 201]
    assert [replay.json() for replay in replays] == [winner.json() for winner in winners]
    assert [replay.headers["idempotent-replayed"] for replay in replays] == ["true", "true"]
    assert stranger.status_code == 409
    assert gate_answers(client) == answered_before + 1  # the stranger only


@ON_EACH_REDIS_MODE
async def test_opening_the_sale_again_clears_the_gate(client: httpx.AsyncClient, sku: str) -> None:
    await sell_out(client, sku, stock=1)
    turned_away = await buy(client, sku, "x")
    answered_before = gate_answers(client)

    await open_sale(client, sku=sku, stock=2)
    restocked = [await buy(client, sku, buyer) for buyer in ("x", "y")]
    found_sold_out = await buy(client, sku, "z")
    gated_again = await buy(client, sku, "v")

    assert turned_away.status_code == 409
    assert [response.status_code for response in restocked] == [201, 201]
    assert (found_sold_out.status_code, gated_again.status_code) == (409, 409)
    assert gate_answers(client) == answered_before + 1  # the second sale's gate: "v"


@ON_EACH_REDIS_MODE
async def test_a_late_mark_from_an_earlier_sale_leaves_the_reopened_sale_open(
    client: httpx.AsyncClient, sku: str, pg: asyncpg.Connection, redis_client: RedisClient
) -> None:
    await open_sale(client, sku=sku, stock=1)
    earlier = sale_token(
        await pg.fetchval("SELECT opened_at FROM orders_hardened.flash_sales WHERE sku = $1", sku)
    )
    await open_sale(client, sku=sku, stock=1)
    reopened = sale_token(
        await pg.fetchval("SELECT opened_at FROM orders_hardened.flash_sales WHERE sku = $1", sku)
    )

    # What a slow request of the first sale would run after finding it sold out.
    mark = read_resource("services.orders", "sold_out.lua")
    marked = await redis_client.eval(mark, 1, gate_key(sku), earlier, 60_000)

    assert reopened != earlier
    assert await redis_client.hget(gate_key(sku), "sale") == reopened.encode()  # the gate names the new sale
    assert marked == 0
    assert (await buy(client, sku, "a")).status_code == 201


@ON_EACH_REDIS_MODE
async def test_an_order_larger_than_the_stock_left_does_not_close_the_sale(
    client: httpx.AsyncClient, sku: str
) -> None:
    await open_sale(client, sku=sku, stock=3)

    too_many = await buy(client, sku, "big", quantity=5)
    one = await buy(client, sku, "small")

    assert (too_many.status_code, one.status_code) == (409, 201)


async def test_with_the_gate_off_postgresql_answers_every_buyer(
    infra: InfraEndpoints, sku: str, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    env = {**infra.as_env(), "LAB_ORDERS_SOLD_OUT_GATE": "false"}
    with run_orders_lab("hardened", env=env, log_dir=tmp_path) as lab:
        async with httpx.AsyncClient(base_url=lab.orders.url, timeout=10) as client:
            await sell_out(client, sku, stock=1)
            keys_before = await stored_keys(pg, sku)
            answers = [await buy(client, sku, f"b{i}") for i in range(5)]
            answered = gate_answers(client)

    assert [answer.status_code for answer in answers] == [409] * 5
    assert await stored_keys(pg, sku) == keys_before + 5
    assert answered == 0
