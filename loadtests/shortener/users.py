"""Locust users for the shortener: ``ShortenerArrivals`` (open loop, on the bench's schedule) and
``ShortenerUser`` (closed loop), making the same requests. Three profiles, chosen by
``LAB_SHORTENER_PROFILE``:

- ``zipf`` (default): redirects over the codes in ``LAB_SHORTENER_CODES_FILE`` (one per line), the
  i-th most popular drawn with probability proportional to 1 / i^s (``LAB_SHORTENER_ZIPF_S``, default 1.0).
- ``viral``: every request redirects the first code of the file.
- ``creates``: every request creates a link to a unique URL.

Without a codes file (as under ``lab bench``) the first user creates ``LAB_SHORTENER_SEED_LINKS``
links (default 1,000) before any redirect, and every user draws from those.

A ``302`` (redirects) or ``201`` (creates) is a success, anything else a failure. Redirects are
never followed: the benchmark measures the shortener, not example.com.
"""

from __future__ import annotations

import itertools
import os
import random
import time
import uuid
from pathlib import Path
from typing import ClassVar

from gevent.pool import Pool
from locust import FastHttpUser, constant, task

from loadtests.engine.openloop import OpenLoopUser
from loadtests.shapes import selected_shape

PROFILE = os.environ.get("LAB_SHORTENER_PROFILE", "zipf")
SEEDING_CONCURRENCY = 20


def _codes() -> list[str]:
    path = os.environ.get("LAB_SHORTENER_CODES_FILE")
    return Path(path).read_text().split() if path else []


def zipf_cum_weights(count: int, *, s: float) -> list[float]:
    return list(itertools.accumulate(1 / rank**s for rank in range(1, count + 1)))


class ShortenerRequests(FastHttpUser):
    """What one request of the profile is, and the links it needs first; the users below choose how
    often requests go out."""

    abstract = True
    codes = _codes()
    cum_weights = zipf_cum_weights(len(codes), s=float(os.environ.get("LAB_SHORTENER_ZIPF_S", "1.0")))
    # The bench names the run, so its auditor can find exactly the links this run created.
    prefix = os.environ.get("LAB_BENCH_RUN_ID") or uuid.uuid4().hex[:8]
    targets: ClassVar[dict[str, str]] = {}
    sequence = itertools.count()

    seeding = False

    def on_start(self) -> None:
        if PROFILE == "creates" or ShortenerRequests.codes or ShortenerRequests.seeding:
            return
        ShortenerRequests.seeding = True  # gevent: the other users wait below, they do not seed too
        wanted = int(os.environ.get("LAB_SHORTENER_SEED_LINKS", "1000"))
        # Many creates in flight at once: the set-up counts against the generator's run time, and one
        # create after another takes seconds on a busy machine.
        seeders = Pool(SEEDING_CONCURRENCY)
        codes = [code for code in seeders.imap_unordered(lambda _: self._create(), range(wanted)) if code]
        ShortenerRequests.cum_weights = zipf_cum_weights(
            len(codes), s=float(os.environ.get("LAB_SHORTENER_ZIPF_S", "1.0"))
        )
        ShortenerRequests.codes = codes

    def one_request(self) -> None:
        if not self.codes and PROFILE != "creates":
            time.sleep(0.05)  # the seeding user is still creating links (gevent makes this cooperative)
            return
        if PROFILE == "creates":
            self._create()
        elif PROFILE == "viral":
            self._redirect(self.codes[0])
        else:
            self._redirect(random.choices(self.codes, cum_weights=self.cum_weights)[0])

    def _redirect(self, code: str) -> None:
        with self.client.get(
            f"/{code}", name="/{code}", allow_redirects=False, catch_response=True
        ) as response:
            expected = self.targets.get(code)
            if response.status_code != 302:
                response.failure(f"unexpected status {response.status_code}")
            elif expected is not None and response.headers.get("location") != expected:
                response.failure(f"wrong Location for {code}: {response.headers.get('location')}")
            else:
                response.success()

    def _create(self) -> str | None:
        body = {"long_url": f"https://example.com/{self.prefix}/{next(self.sequence)}"}
        with self.client.post(
            "/api/v1/urls", json=body, name="/api/v1/urls", catch_response=True
        ) as response:
            if response.status_code != 201:
                response.failure(f"unexpected status {response.status_code}")
                return None
            response.success()
            code: str = response.json()["code"]
            ShortenerRequests.targets[code] = body["long_url"]
            return code


class ShortenerUser(ShortenerRequests):
    """Closed loop: each user sends its next request when the last one is answered."""

    wait_time = constant(0)

    @task
    def next_request(self) -> None:
        self.one_request()


class ShortenerArrivals(OpenLoopUser, ShortenerRequests):
    """Open loop: requests go out on the bench's schedule (its set-up seeds the links first)."""

    def send(self) -> None:
        self.one_request()


LoadShape = selected_shape()
