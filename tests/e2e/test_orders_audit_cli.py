"""The audit as a command, the way the lab (``lab audit orders``) and a user run it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from services.lab.infra import InfraEndpoints
from tests.support.orders import open_sale, place_order, run_orders_lab

pytestmark = pytest.mark.e2e


def run_audit(*, sku: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "services.orders.audit", "orders", "--sku", sku, "--variant", "hardened"]
    return subprocess.run(
        [*argv, "--json"], env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False
    )


async def test_the_audit_command_prints_one_json_object_of_invariants(
    infra: InfraEndpoints, tmp_path: Path
) -> None:
    unique = uuid.uuid4().hex[:8]
    env = {**infra.as_env(), "LAB_ORDERS_TOPIC": f"orders.events.{unique}"}
    sku = f"cli-{unique}"
    with run_orders_lab("hardened", env=env, log_dir=tmp_path) as lab:
        async with httpx.AsyncClient(base_url=lab.orders.url, timeout=10) as client:
            await open_sale(client, sku=sku, stock=5)
            for customer in ("a", "b"):
                assert (await place_order(client, sku=sku, customer_id=customer, key="k")).status_code == 201

    done = await asyncio.to_thread(run_audit, sku=sku, env=env)

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) == {"hardened"}
    audit = report["hardened"]
    assert audit["initial_stock"] == 5
    assert audit["units_sold"] == 2
    assert audit["oversold_units"] == 0
    assert audit["events_lost"] == 2  # no relay ran: committed, not yet published
    assert audit["orders_not_paid"] == 2
