"""core's one helper for a service's background work: stopped with its block, failures logged."""

from __future__ import annotations

import asyncio
import logging

import pytest

from services.core.background import background


async def test_the_work_runs_during_the_block_and_is_cancelled_and_awaited_after_it() -> None:
    started, stopped = asyncio.Event(), asyncio.Event()

    async def work() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    async with background(work()) as task:
        await asyncio.wait_for(started.wait(), timeout=5)
        assert not task.done()

    assert task.cancelled()
    assert stopped.is_set()


async def test_a_failure_is_logged_when_it_happens_and_does_not_break_the_shutdown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def failing_work() -> None:
        raise RuntimeError("the store went away")

    with caplog.at_level(logging.ERROR, logger="services.core.background"):
        async with background(failing_work()) as task:
            await asyncio.wait([task], timeout=5)
            assert task.done()
            failures = [r for r in caplog.records if r.message.startswith("background_task_failed")]
            assert len(failures) == 1
            assert "failing_work" in failures[0].message
            assert failures[0].exc_info is not None
            assert isinstance(failures[0].exc_info[1], RuntimeError)
