"""Locust users for the order flow: buyers of one hot SKU, each order with a fresh customer and a
fresh ``Idempotency-Key``. ``201``, ``409`` (sold out) and ``429`` (shed) are the service doing its
job and count as successes; anything else is a failure. The SKU comes from ``LAB_LOAD_SKU``."""

from __future__ import annotations

import os
import uuid

from locust import FastHttpUser, constant, task

from loadtests.shapes import selected_shape

ORDERS = "/api/v1/orders"
EXPECTED = (201, 409, 429)


class HotSkuBuyer(FastHttpUser):
    wait_time = constant(0)
    sku = os.environ.get("LAB_LOAD_SKU", "hot")

    @task
    def buy(self) -> None:
        body = {"sku": self.sku, "quantity": 1, "customer_id": uuid.uuid4().hex}
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        with self.client.post(
            ORDERS, json=body, headers=headers, name=ORDERS, catch_response=True
        ) as response:
            if response.status_code in EXPECTED:
                response.success()
            else:
                response.failure(f"unexpected status {response.status_code}")


LoadShape = selected_shape()
