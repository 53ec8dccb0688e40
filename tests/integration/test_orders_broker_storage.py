"""The embedded broker keeps messages in memory: killed while relayed events wait for their consumers,
it loses them. The audit counts that loss apart from the design's: the hardened outbox relayed every
event and the broker acknowledged each, so none is the design's loss."""

from __future__ import annotations

import signal
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from services.lab import processes
from services.lab.components import Component
from services.lab.infra import InfraEndpoints
from services.lab.infra.embedded import EmbeddedInfra
from services.lab.processes import ProcessRecord
from services.lab.settings import LabSettings
from tests.support.orders import (
    audit_when,
    buy,
    fresh_topics,
    open_sale,
    run_orders_lab,
    run_worker,
    settings_for,
    wait_until,
)

pytestmark = pytest.mark.integration

ORDERS = 5


@dataclass
class OwnBroker:
    """The embedded provider's broker on a port of its own, to kill and start again."""

    component: Component
    log_dir: Path
    record: ProcessRecord | None = field(default=None)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.component.port}"

    async def start(self) -> None:
        log = self.log_dir / "kafka.log"
        self.record = processes.spawn(
            "kafka", self.component.argv, log_path=log, env={}, port=self.component.port
        )
        probe = self.component.probe
        assert probe is not None
        assert await wait_until(probe, timeout_s=30), processes.tail(log, lines=20)

    def kill(self) -> None:
        if self.record is not None:
            processes.signal_group(self.record, signal.SIGKILL)
            processes.stop(self.record, timeout_s=10)
            self.record = None


@pytest.fixture
async def own_broker(lab_settings: LabSettings, tmp_path: Path) -> AsyncIterator[OwnBroker]:
    settings = lab_settings.model_copy(
        update={"state_dir": tmp_path / "broker", "kafka_port": processes.free_port()}
    )
    infra = EmbeddedInfra(settings, recorded_ports={})
    kafka = next(c for c in infra.components() if c.name == "kafka")
    broker = OwnBroker(component=kafka, log_dir=tmp_path)
    await broker.start()
    try:
        yield broker
    finally:
        broker.kill()


async def test_a_killed_embedded_broker_loses_relayed_events_and_the_audit_blames_its_storage(
    infra: InfraEndpoints, own_broker: OwnBroker, tmp_path: Path
) -> None:
    env = {
        **infra.as_env(),
        **fresh_topics(),
        "LAB_KAFKA_BOOTSTRAP": own_broker.bootstrap,
        "LAB_INVENTORY_DELAY_MS": "0",
    }
    settings = settings_for(env)
    sku = f"storage-{uuid.uuid4().hex[:8]}"
    # No consumer runs: the relayed events wait on the broker, as they do while consumers lag.
    with (
        run_orders_lab("hardened", env=env, log_dir=tmp_path) as lab,
        run_worker("services.orders.relay:run", env=lab.env, log_dir=tmp_path),
    ):
        async with httpx.AsyncClient(base_url=lab.orders.url, timeout=10) as client:
            await open_sale(client, sku=sku, stock=ORDERS)
            statuses = [(await buy(client, sku, f"b{n}")).status_code for n in range(ORDERS)]
        relayed = await audit_when(
            settings, variant="hardened", sku=sku, done=lambda a: a.events_published == ORDERS
        )

        own_broker.kill()
        await own_broker.start()
        after = await audit_when(settings, variant="hardened", sku=sku, done=lambda a: True)

    assert statuses == [201] * ORDERS
    assert (relayed.events_lost, relayed.events_lost_by_broker_storage) == (0, 0)
    assert after.orders_committed == ORDERS
    assert after.events_published == 0  # the restarted broker holds nothing
    assert after.events_lost_by_broker_storage == ORDERS
    assert after.events_lost == 0
