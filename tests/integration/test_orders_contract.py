"""The orders HTTP contract, identical for both variants."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from services.lab.infra import InfraEndpoints
from services.orders.settings import OrdersSettings
from tests.support.orders import OrdersLab, admin_headers, open_sale, place_order, run_orders_lab

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["naive", "hardened"])
def lab(
    request: pytest.FixtureRequest, infra: InfraEndpoints, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OrdersLab]:
    env = {**infra.as_env(), "LAB_INVENTORY_DELAY_MS": "0"}
    with run_orders_lab(request.param, env=env, log_dir=tmp_path_factory.mktemp("orders")) as running:
        yield running


@pytest.fixture
async def sku(client: httpx.AsyncClient) -> str:
    sku = f"sku-{uuid.uuid4().hex[:10]}"
    await open_sale(client, sku=sku, stock=3, price_cents=500)
    return sku


def key() -> str:
    return uuid.uuid4().hex


async def test_an_order_is_created_read_back_and_takes_stock(client: httpx.AsyncClient, sku: str) -> None:
    response = await place_order(client, sku=sku, customer_id="alice", key=key(), quantity=2)

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"order_id", "status"}
    order = (await client.get(f"/api/v1/orders/{body['order_id']}")).json()
    assert order["sku"] == sku
    assert order["customer_id"] == "alice"
    assert order["quantity"] == 2
    assert order["amount_cents"] == 1000
    inventory = (await client.get(f"/api/v1/inventory/{sku}")).json()
    assert inventory == {"sku": sku, "stock": 3, "available": 1}


async def test_not_enough_stock_is_409_out_of_stock(client: httpx.AsyncClient, sku: str) -> None:
    response = await place_order(client, sku=sku, customer_id="bob", key=key(), quantity=4)

    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == "/problems/out-of-stock"


@pytest.mark.parametrize(
    "body",
    [
        {"sku": "no-such-sku", "quantity": 1, "customer_id": "c"},
        {"quantity": 1, "customer_id": "c"},
        {"sku": "{sku}", "quantity": 0, "customer_id": "c"},
        {"sku": "{sku}", "quantity": 11, "customer_id": "c"},
        {"sku": "{sku}", "quantity": "1", "customer_id": "c"},
        {"sku": "{sku}", "quantity": 1.5, "customer_id": "c"},
        {"sku": "{sku}", "quantity": 1, "customer_id": 7},
        {"sku": "{sku}", "quantity": 1},
    ],
    ids=[
        "unknown-sku",
        "no-sku",
        "zero",
        "above-limit",
        "string-qty",
        "float-qty",
        "int-customer",
        "no-customer",
    ],
)
async def test_bad_bodies_are_422_and_take_nothing(
    client: httpx.AsyncClient, sku: str, body: dict[str, object]
) -> None:
    concrete = {name: (sku if value == "{sku}" else value) for name, value in body.items()}

    response = await client.post("/api/v1/orders", json=concrete, headers={"Idempotency-Key": key()})

    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert (await client.get(f"/api/v1/inventory/{sku}")).json()["available"] == 3


async def test_an_order_breaking_both_rules_gets_the_same_answer_from_both_variants(
    client: httpx.AsyncClient,
) -> None:
    """Unknown SKU and too many units at once: the per-order limit, checked before either variant."""
    limit = OrdersSettings.model_fields["orders_max_quantity"].default  # the lab runs at its defaults
    body = {"sku": f"no-sale-{uuid.uuid4().hex[:8]}", "quantity": limit + 1, "customer_id": "c"}

    response = await client.post("/api/v1/orders", json=body, headers={"Idempotency-Key": key()})

    assert response.status_code == 422, response.text
    assert response.json()["type"] == "/problems/quantity-too-large"


async def test_not_json_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/orders",
        content=b"{not json",
        headers={"Idempotency-Key": key(), "content-type": "application/json"},
    )
    assert response.status_code == 422


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic x"])
async def test_opening_a_sale_needs_the_admin_token(
    client: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    body = {"sku": "any", "stock": 1, "price_cents": 1}

    response = await client.post("/api/v1/admin/flash-sales", json=body, headers=headers)

    assert response.status_code == 401
    assert response.json()["type"] == "/problems/unauthorized"


async def test_reopening_a_sale_resets_it(client: httpx.AsyncClient, sku: str) -> None:
    first = await place_order(client, sku=sku, customer_id="carol", key=key())
    await open_sale(client, sku=sku, stock=5, price_cents=100)

    assert (await client.get(f"/api/v1/inventory/{sku}")).json() == {"sku": sku, "stock": 5, "available": 5}
    assert (await client.get(f"/api/v1/orders/{first.json()['order_id']}")).status_code == 404


async def test_unknown_order_and_sku_are_404(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"/api/v1/orders/{uuid.uuid4()}")).status_code == 404
    assert (await client.get("/api/v1/orders/not-a-uuid")).status_code == 422
    assert (await client.get("/api/v1/inventory/no-such-sku")).status_code == 404


async def test_admin_body_is_validated(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/admin/flash-sales", json={"sku": "x", "stock": -1, "price_cents": 1}, headers=admin_headers()
    )
    assert response.status_code == 422
