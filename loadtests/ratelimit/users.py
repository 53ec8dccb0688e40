"""Locust users for the rate limiter: many keys at a modest rate, and a few hot keys hammering;
``RateLimitedArrivals`` issues the same mix on the bench's open-loop schedule.

A ``429`` is the limiter doing its job, so it counts as a success; anything else that is not a
``200`` is a failure. Keys come from the environment so the bench can size the key space:
``LAB_LOAD_KEYS`` (default 10,000) and ``LAB_LOAD_HOT_KEYS`` (default 5).

With ``LAB_BENCH_RECORD_DIR`` set, every admitted request of a hot key is recorded with the server's
own time (``served_at``), one ``admitted-*.json`` per Locust process, wherever it ran (the engine hands
it to the runner), for the auditor to count over-admissions, and the quota the service announced for
it (``announced-*.json``: its ``RateLimit-Policy`` field).
"""

from __future__ import annotations

import os
import random
from collections import defaultdict

from locust import FastHttpUser, constant, task

from loadtests.engine.openloop import OpenLoopUser, add_record_source
from loadtests.shapes import selected_shape

RESOURCE = "/api/v1/resource"


def _key_space() -> tuple[int, int]:
    return int(os.environ.get("LAB_LOAD_KEYS", "10000")), int(os.environ.get("LAB_LOAD_HOT_KEYS", "5"))


class RateLimitedClient(FastHttpUser):
    """Each task is one request under one API key; a tenth of the traffic goes to the hot keys."""

    wait_time = constant(0)
    keys, hot_keys = _key_space()

    def _request(self, key: str, *, fresh_connection: bool = False) -> None:
        headers = {"X-API-Key": key, **({"Connection": "close"} if fresh_connection else {})}
        with self.client.get(RESOURCE, headers=headers, name=RESOURCE, catch_response=True) as response:
            if response.status_code in (200, 429):
                response.success()
            else:
                response.failure(f"unexpected status {response.status_code}")
            if response.status_code == 200 and key.startswith("hot-"):
                ADMITTED[key].append(float(response.json()["served_at"]))
                ANNOUNCED[key] = response.headers.get("RateLimit-Policy", "")

    @task(9)
    def spread_key(self) -> None:
        self._request(f"user-{random.randrange(self.keys)}")

    @task(1)
    def hot_key(self) -> None:
        # A hot key stands for many clients sharing it (a customer's fleet, a NAT): each request on
        # its own connection, so requests spread over the service's processes as a load balancer
        # spreads them over replicas. On one kept-alive connection they would all meet one process.
        self._request(f"hot-{random.randrange(self.hot_keys)}", fresh_connection=True)


class RateLimitedArrivals(OpenLoopUser, RateLimitedClient):
    """Open loop: the same mix of requests, on the bench's schedule."""

    abstract = False
    tasks = []  # noqa: RUF012 - the schedule drives this user, not Locust's task picker

    def send(self) -> None:
        if random.random() < 0.1:
            self.hot_key()
        else:
            self.spread_key()


ADMITTED: defaultdict[str, list[float]] = defaultdict(list)
# The quota each hot key was admitted under, as the service announced it (its RateLimit-Policy):
# the auditor holds the service to its own limit, whatever settings the bench itself runs with.
ANNOUNCED: dict[str, str] = {}


add_record_source("admitted", lambda: dict(ADMITTED) or None)
add_record_source("announced", lambda: dict(ANNOUNCED) or None)


LoadShape = selected_shape()
