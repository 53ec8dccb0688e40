"""The broker stopped for 10 s under load: the hardened service keeps answering 201 and every event
arrives once the broker is back; the naive service also answers 201, and the events it tried to
publish during the outage are lost for good (its producer gives a message up after 1 s here)."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import psutil
import pytest

from services.lab.exercises.orders import order_steadily
from services.lab.infra import InfraEndpoints
from tests.support.orders import (
    audit_when,
    fresh_topics,
    open_sale,
    run_orders_lab,
    run_worker,
    settings_for,
)

pytestmark = pytest.mark.integration

OUTAGE_S = 10.0


def broker_pid(bootstrap: str) -> int:
    port = int(bootstrap.rsplit(":", 1)[1])
    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            return int(conn.pid)
    raise LookupError(f"nothing listens on {bootstrap}")


@contextmanager
def broker_stopped(bootstrap: str) -> Iterator[None]:
    """Freeze the broker process (its in-memory data survives, as a restarted Kafka's would)."""
    pid = broker_pid(bootstrap)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_an_outage_of_the_broker_loses_naive_events_and_delays_hardened_ones(
    infra: InfraEndpoints, tmp_path: Path
) -> None:
    unique = uuid.uuid4().hex[:8]
    env = {
        **infra.as_env(),
        **fresh_topics(),
        "LAB_KAFKA_REQUEST_TIMEOUT_MS": "1000",
        "LAB_INVENTORY_DELAY_MS": "0",
    }
    settings = settings_for(env)
    sku = f"outage-{unique}"
    with ExitStack() as stack:
        naive = stack.enter_context(run_orders_lab("naive", env=env, log_dir=tmp_path / "naive"))
        hardened = stack.enter_context(run_orders_lab("hardened", env=env, log_dir=tmp_path / "hardened"))
        stack.enter_context(run_worker("services.orders.relay:run", env=hardened.env, log_dir=tmp_path))
        for lab in (naive, hardened):
            async with httpx.AsyncClient(base_url=lab.orders.url, timeout=10) as admin:
                await open_sale(admin, sku=sku, stock=100_000)

        before = await asyncio.gather(
            order_steadily(naive.orders.url, sku, seconds=1),
            order_steadily(hardened.orders.url, sku, seconds=1),
        )
        await audit_when(
            settings, variant="hardened", sku=sku, done=lambda a: a.events_lost == 0
        )  # the relay is up

        with broker_stopped(infra.kafka_bootstrap):
            during = await asyncio.gather(
                order_steadily(naive.orders.url, sku, seconds=OUTAGE_S),
                order_steadily(hardened.orders.url, sku, seconds=OUTAGE_S),
            )
        after = await asyncio.gather(
            order_steadily(naive.orders.url, sku, seconds=1),
            order_steadily(hardened.orders.url, sku, seconds=1),
        )

        hardened_audit = await audit_when(
            settings, variant="hardened", sku=sku, done=lambda a: a.events_lost == 0
        )
        naive_audit = await audit_when(settings, variant="naive", sku=sku, done=lambda a: True)

    assert set(before[0]) == set(before[1]) == {201}
    assert set(during[0]) == set(during[1]) == {201}
    assert set(after[0]) == set(after[1]) == {201}
    assert hardened_audit.events_lost == 0
    assert hardened_audit.events_published == hardened_audit.orders_committed > 0
    assert naive_audit.events_lost > 0
    assert naive_audit.events_published > 0  # the orders placed outside the outage got through
