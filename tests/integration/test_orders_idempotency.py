"""Idempotency keys of the hardened checkout: replay, 422, 409 in flight, 400 missing, expiry."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from services.lab.infra import InfraEndpoints
from services.orders.idempotency import fingerprint
from services.orders.ports import PlaceOrder
from tests.support.orders import OrdersLab, open_sale, place_order, run_orders_lab, wait_until

pytestmark = pytest.mark.integration

TTL_S = 3.0


@pytest.fixture(scope="module")
def lab(infra: InfraEndpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrdersLab]:
    env = {
        **infra.as_env(),
        "LAB_ORDERS_IDEMPOTENCY_TTL_S": str(TTL_S),
        "LAB_ORDERS_IDEMPOTENCY_REAP_INTERVAL_S": "0.5",
    }
    with run_orders_lab("hardened", env=env, log_dir=tmp_path_factory.mktemp("orders-idem")) as running:
        yield running


@pytest.fixture
async def sku(client: httpx.AsyncClient) -> str:
    sku = f"idem-{uuid.uuid4().hex[:10]}"
    await open_sale(client, sku=sku, stock=5)
    return sku


async def available(client: httpx.AsyncClient, sku: str) -> int:
    return int((await client.get(f"/api/v1/inventory/{sku}")).json()["available"])


async def test_a_retry_replays_the_first_answer_and_takes_nothing_more(
    client: httpx.AsyncClient, sku: str
) -> None:
    first = await place_order(client, sku=sku, customer_id="alice", key="k-1")
    again = await place_order(client, sku=sku, customer_id="alice", key="k-1")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await available(client, sku) == 4


async def test_the_key_is_scoped_to_the_customer(client: httpx.AsyncClient, sku: str) -> None:
    alice = await place_order(client, sku=sku, customer_id="alice", key="shared")
    bob = await place_order(client, sku=sku, customer_id="bob", key="shared")

    assert alice.status_code == bob.status_code == 201
    assert alice.json()["order_id"] != bob.json()["order_id"]


async def test_the_same_key_with_another_body_is_422(client: httpx.AsyncClient, sku: str) -> None:
    await place_order(client, sku=sku, customer_id="carol", key="k-2")

    response = await place_order(client, sku=sku, customer_id="carol", key="k-2", quantity=2)

    assert response.status_code == 422
    assert response.json()["type"] == "/problems/idempotency-key-reused"
    assert await available(client, sku) == 4


async def test_a_missing_or_invalid_key_is_400(client: httpx.AsyncClient, sku: str) -> None:
    missing = await place_order(client, sku=sku, customer_id="dan")
    too_long = await place_order(client, sku=sku, customer_id="dan", key="k" * 300)

    assert missing.status_code == too_long.status_code == 400
    assert missing.json()["type"] == "/problems/idempotency-key-missing"
    assert await available(client, sku) == 5


async def test_an_out_of_stock_answer_is_stored_and_replayed(client: httpx.AsyncClient, sku: str) -> None:
    first = await place_order(client, sku=sku, customer_id="erin", key="k-3", quantity=6)
    again = await place_order(client, sku=sku, customer_id="erin", key="k-3", quantity=6)

    assert first.status_code == again.status_code == 409
    assert again.json() == first.json()
    assert again.json()["type"] == "/problems/out-of-stock"


async def test_a_request_still_in_flight_makes_the_retry_409(
    client: httpx.AsyncClient, sku: str, pg: asyncpg.Connection
) -> None:
    # Hold the product row so the first request waits inside its transaction, key claimed.
    async with pg.transaction():
        await pg.execute("SELECT 1 FROM orders_hardened.inventory WHERE sku = $1 FOR UPDATE", sku)
        first = asyncio.create_task(place_order(client, sku=sku, customer_id="fay", key="k-4"))
        assert await wait_until(lambda: _claimed(pg, "fay", "k-4"), timeout_s=10)

        retry = await place_order(client, sku=sku, customer_id="fay", key="k-4")

        assert retry.status_code == 409
        assert retry.json()["type"] == "/problems/idempotency-key-in-flight"
        assert "retry-after" in retry.headers
    assert (await first).status_code == 201
    replay = await place_order(client, sku=sku, customer_id="fay", key="k-4")
    assert replay.status_code == 201
    assert replay.json() == (await first).json()


async def _claimed(pg: asyncpg.Connection, customer: str, key: str) -> bool:
    query = "SELECT count(*) FROM orders_hardened.idempotency_keys WHERE customer_id = $1 AND key = $2"
    return bool(await pg.fetchval(query, customer, key))


async def test_a_crashed_requests_claim_expires(
    client: httpx.AsyncClient, sku: str, pg: asyncpg.Connection
) -> None:
    command = PlaceOrder(sku=sku, quantity=1, customer_id="gus")
    await pg.execute(
        """INSERT INTO orders_hardened.idempotency_keys (customer_id, key, sku, fingerprint, locked_until,
                                                        expires_at)
           VALUES ($1, 'k-5', $2, $3, now() + interval '1 second', now() + interval '1 day')""",
        "gus",
        sku,
        fingerprint(command),
    )
    assert (await place_order(client, sku=sku, customer_id="gus", key="k-5")).status_code == 409

    async def taken_over() -> bool:
        return (await place_order(client, sku=sku, customer_id="gus", key="k-5")).status_code == 201

    assert await wait_until(taken_over, timeout_s=10, interval_s=0.25)
    assert await available(client, sku) == 4


async def test_keys_expire_after_the_ttl_and_are_reaped(
    client: httpx.AsyncClient, sku: str, pg: asyncpg.Connection
) -> None:
    await place_order(client, sku=sku, customer_id="hal", key="k-6")
    assert (await place_order(client, sku=sku, customer_id="hal", key="k-6", quantity=2)).status_code == 422

    assert await wait_until(lambda: _gone(pg, "hal", "k-6"), timeout_s=TTL_S + 10, interval_s=0.25)
    reused = await place_order(client, sku=sku, customer_id="hal", key="k-6", quantity=2)
    assert reused.status_code == 201
    assert await available(client, sku) == 2


async def _gone(pg: asyncpg.Connection, customer: str, key: str) -> bool:
    return not await _claimed(pg, customer, key)
