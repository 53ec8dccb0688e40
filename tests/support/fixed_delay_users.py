"""Locust users for the engine's tests: the same request, open loop and closed loop.

``LAB_TEST_PATH`` picks the route of :mod:`tests.support.fixed_delay` (default ``/answer``).
"""

from __future__ import annotations

import os

from locust import FastHttpUser, constant, task

from loadtests.engine.openloop import OpenLoopUser

PATH = os.environ.get("LAB_TEST_PATH", "/answer")


def ask(user: FastHttpUser) -> None:
    with user.client.get(PATH, name=PATH, catch_response=True) as response:
        if response.status_code == 200:
            response.success()
        else:
            response.failure(f"status {response.status_code}")


class Arrivals(OpenLoopUser):
    def send(self) -> None:
        ask(self)


class ClosedLoop(FastHttpUser):
    wait_time = constant(0)

    @task
    def one_request(self) -> None:
        ask(self)
