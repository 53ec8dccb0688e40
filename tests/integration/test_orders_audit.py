"""The audit reads a sale's events from where its topics ended when the sale was opened, so an earlier
sale's events on the same topic are neither read nor counted, however many the lab has kept."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.lab.infra import InfraEndpoints
from services.orders import audit as audit_module
from services.orders.audit import audit_sale, read_topic, sale_start_offsets
from services.orders.settings import OrdersSettings
from tests.support.orders import fresh_topics, open_sale, place_order, run_orders_lab, settings_for

pytestmark = pytest.mark.integration


def order_ids(responses: list[httpx.Response]) -> set[str]:
    assert [response.status_code for response in responses] == [201] * len(responses)
    return {response.json()["order_id"] for response in responses}


async def test_the_audit_of_a_sale_reads_none_of_an_earlier_sales_events(
    infra: InfraEndpoints, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**infra.as_env(), **fresh_topics(), "LAB_INVENTORY_DELAY_MS": "0"}
    topic = env["LAB_ORDERS_NAIVE_TOPIC"]
    settings = settings_for(env)
    sku = f"audit-{uuid.uuid4().hex[:8]}"
    # The naive service publishes before it answers, so every event is on the topic once answered.
    with run_orders_lab("naive", env=env, log_dir=tmp_path) as lab:
        async with httpx.AsyncClient(base_url=lab.orders.url, timeout=10) as client:
            await open_sale(client, sku=sku, stock=10)
            earlier = order_ids([await place_order(client, sku=sku, customer_id=f"e{i}") for i in range(3)])
            await open_sale(client, sku=sku, stock=10)
            later = order_ids([await place_order(client, sku=sku, customer_id=f"l{i}") for i in range(2)])

    start = await sale_start_offsets(settings, variant="naive", sku=sku)
    on_the_topic = {m["order_id"] for m in await read_topic(settings, topic)}
    read_by_the_audit: list[str] = []

    async def recording_read_topic(
        settings: OrdersSettings, name: str, **options: Any
    ) -> list[dict[str, Any]]:
        messages = await read_topic(settings, name, **options)
        if name == topic:
            read_by_the_audit.extend(m["order_id"] for m in messages)
        return messages

    # What audit_sale itself reads: its count of published events would hide extra events, since it
    # only counts those of orders still in the database, and opening the sale again deleted the
    # earlier ones.
    monkeypatch.setattr(audit_module, "read_topic", recording_read_topic)
    audit = await audit_sale(settings, variant="naive", sku=sku)

    assert on_the_topic == earlier | later
    assert sorted(read_by_the_audit) == sorted(later)
    assert sum(start[topic].values()) == len(earlier)
    assert (audit.orders_committed, audit.events_published, audit.events_lost) == (2, 2, 0)
