"""A service whose answers take a known time, for testing the measurement engine against it.

``GET /answer`` waits ``LAB_TEST_DELAY_MS`` (asynchronously: answers overlap) or, with
``LAB_TEST_BLOCKING=1``, holds the event loop that long (answers queue: a server with a fixed
capacity of 1000 / delay requests per second). ``GET /fail`` answers 500, ``GET /slow`` never answers
within any sane deadline.
"""

from __future__ import annotations

import asyncio
import os
import time

from fastapi import FastAPI, Response


def create_app(_: str) -> FastAPI:
    delay_s = float(os.environ.get("LAB_TEST_DELAY_MS", "20")) / 1000
    blocking = os.environ.get("LAB_TEST_BLOCKING") == "1"
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/answer")
    async def answer() -> Response:
        if blocking:
            time.sleep(delay_s)  # noqa: ASYNC251 - the point: one answer at a time
        else:
            await asyncio.sleep(delay_s)
        return Response(status_code=200)

    @app.get("/fail")
    async def fail() -> Response:
        return Response(status_code=500)

    @app.get("/slow")
    async def slow() -> Response:
        await asyncio.sleep(30)
        return Response(status_code=200)

    return app
