"""Locust users for the flash sale: each user is one buyer who tries to buy one unit once.

A buyer waits for an answer until the run's one deadline per request (``LAB_LOAD_DEADLINE_S``, set
by the bench; for connect, send and answer together), and after a timeout retries once with the same
``Idempotency-Key``, the way a frontend does; then it is done and idles until the run ends. ``201``,
``409`` and ``429`` count as successes; a timeout or anything else is a failure. The SKU comes from
``LAB_LOAD_SKU``; the spike comes from spawning every user within a second.
"""

from __future__ import annotations

import os
import uuid

from locust import FastHttpUser, constant, task

from loadtests.engine.openloop import DEFAULT_DEADLINE_S, within_deadline
from loadtests.shapes import selected_shape

ORDERS = "/api/v1/orders"
EXPECTED = (201, 409, 429)


class FlashSaleBuyer(FastHttpUser):
    wait_time = constant(3600)  # one purchase per buyer: after it, idle until the run ends
    # The deadline bounds the whole request; the socket timeouts only stop a connection from
    # outliving it.
    network_timeout = float(os.environ.get("LAB_LOAD_DEADLINE_S", DEFAULT_DEADLINE_S)) + 1
    connection_timeout = network_timeout
    sku = os.environ.get("LAB_LOAD_SKU", "flash")

    @task
    def buy_once(self) -> None:
        body = {"sku": self.sku, "quantity": 1, "customer_id": uuid.uuid4().hex}
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        for _attempt in range(2):
            answered = False
            with within_deadline():  # past it: a timeout, counted once, and the retry
                answered = self._attempt(body, headers)
            if answered:
                return

    def _attempt(self, body: dict[str, object], headers: dict[str, str]) -> bool:
        """True when the service answered (whatever it said), False after a timeout or error."""
        with self.client.post(
            ORDERS, json=body, headers=headers, name=ORDERS, catch_response=True
        ) as response:
            if response.status_code in EXPECTED:
                response.success()
                return True
            response.failure(f"no answer or unexpected status {response.status_code}")
            return False


LoadShape = selected_shape()
