"""Locust users for the order flow: buyers of one hot SKU, each order with a fresh customer and a
fresh ``Idempotency-Key``. ``201``, ``409`` (sold out) and ``429`` (shed) are the service doing its
job and count as successes; anything else is a failure. The SKU comes from ``LAB_LOAD_SKU``.
``HotSkuBuyer`` is closed loop (each buyer orders again when answered), ``HotSkuArrivals`` issues the
same orders on the bench's open-loop schedule."""

from __future__ import annotations

import os
import uuid

from locust import FastHttpUser, constant, task

from loadtests.engine.openloop import OpenLoopUser
from loadtests.shapes import selected_shape

ORDERS = "/api/v1/orders"
EXPECTED = (201, 409, 429)


class HotSkuOrders(FastHttpUser):
    abstract = True
    sku = os.environ.get("LAB_LOAD_SKU", "hot")

    def place_order(self) -> None:
        body = {"sku": self.sku, "quantity": 1, "customer_id": uuid.uuid4().hex}
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        with self.client.post(
            ORDERS, json=body, headers=headers, name=ORDERS, catch_response=True
        ) as response:
            if response.status_code in EXPECTED:
                response.success()
            else:
                response.failure(f"unexpected status {response.status_code}")


class HotSkuBuyer(HotSkuOrders):
    wait_time = constant(0)

    @task
    def buy(self) -> None:
        self.place_order()


class HotSkuArrivals(OpenLoopUser, HotSkuOrders):
    def send(self) -> None:
        self.place_order()


LoadShape = selected_shape()
