"""The sold-out gate when its Redis dies or stalls: PostgreSQL answers every order as if there were no
gate, within the gate's short budget, and never a 500; a sale is not opened while its gate cannot be
reset, and opens once Redis is back.

Each test gets its own Valkey server, so killing it disturbs nobody else.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from loadtests.environment import counter
from services.lab.infra import InfraEndpoints
from tests.support.orders import OrdersLab, admin_headers, buy, open_sale, run_orders_lab
from tests.support.valkey import OwnRedis

pytestmark = pytest.mark.integration

GATE_ERRORS = "orders_sold_out_gate_errors"
BUDGET_MS = 50
# What an answer may take beyond the gate's budget on a busy 2-core machine (HTTP, PostgreSQL).
MARGIN_S = 0.5


@contextmanager
def gated_lab(own_redis: OwnRedis, infra: InfraEndpoints, log_dir: Path) -> Iterator[OrdersLab]:
    env = {
        **infra.as_env(),
        "LAB_REDIS_URL": own_redis.url,
        "LAB_ORDERS_SOLD_OUT_GATE_TIMEOUT_MS": str(BUDGET_MS),
    }
    with run_orders_lab("hardened", env=env, log_dir=log_dir) as lab:
        yield lab


def break_redis(own_redis: OwnRedis, fault: str) -> None:
    if fault == "killed":
        own_redis.kill()
    else:
        own_redis.signal(signal.SIGSTOP)


async def timed_order(client: httpx.AsyncClient, *, sku: str, customer: str) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = await buy(client, sku, customer)
    return response, time.perf_counter() - started


@pytest.mark.parametrize("fault", ["killed", "paused"])
async def test_without_redis_postgresql_answers_every_order(
    own_redis: OwnRedis, infra: InfraEndpoints, tmp_path: Path, fault: str
) -> None:
    sku = f"gate-{uuid.uuid4().hex[:8]}"
    with gated_lab(own_redis, infra, tmp_path) as lab:
        async with httpx.AsyncClient(base_url=lab.orders.url, timeout=10) as client:
            await open_sale(client, sku=sku, stock=2)
            first, _ = await timed_order(client, sku=sku, customer="a")
            break_redis(own_redis, fault)
            later = [await timed_order(client, sku=sku, customer=c) for c in ("b", "c", "d")]
            replay = await timed_order(client, sku=sku, customer="a")
            errors = counter(lab.orders.url, GATE_ERRORS)  # every operation: checks, marks, resets

    assert first.status_code == 201
    assert [response.status_code for response, _ in later] == [201, 409, 409]
    assert [response.json()["type"] for response, _ in later[1:]] == ["/problems/out-of-stock"] * 2
    assert (replay[0].status_code, replay[0].json()) == (201, first.json())
    # b, c, d and the replay each skipped the gate once; none waited on Redis a second time (c and
    # d, refused by PostgreSQL, do not try to mark a gate whose Redis just failed them).
    assert errors == 4
    slowest = max(took for _, took in [*later, replay])
    assert slowest < BUDGET_MS / 1000 + MARGIN_S, f"slowest answer took {slowest:.3f}s"
    if fault == "paused":  # the first check after the pause really waited out the budget
        assert later[0][1] >= BUDGET_MS / 1000


async def test_a_sale_is_not_opened_while_its_gate_cannot_be_reset(
    own_redis: OwnRedis, infra: InfraEndpoints, tmp_path: Path
) -> None:
    sku = f"gate-{uuid.uuid4().hex[:8]}"
    with gated_lab(own_redis, infra, tmp_path) as lab:
        async with httpx.AsyncClient(base_url=lab.orders.url, timeout=10) as client:
            await open_sale(client, sku=sku, stock=1)
            sold, _ = await timed_order(client, sku=sku, customer="a")
            assert sold.status_code == 201
            own_redis.kill()
            refused = await client.post(
                "/api/v1/admin/flash-sales",
                json={"sku": sku, "stock": 5, "price_cents": 100},
                headers=admin_headers(),
            )
            unchanged = (await client.get(f"/api/v1/inventory/{sku}")).json()
            own_redis.start()  # a new, empty server on the same port
            await open_sale(client, sku=sku, stock=5)
            reopened, _ = await timed_order(client, sku=sku, customer="b")

    assert refused.status_code == 503
    assert refused.json()["type"] == "/problems/sold-out-gate-unavailable"
    assert int(refused.headers["retry-after"]) >= 1
    assert unchanged == {"sku": sku, "stock": 1, "available": 0}
    assert reopened.status_code == 201
