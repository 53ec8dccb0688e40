"""The one way a service runs background work: a task tied to a block of its lifespan.

The task starts when the block is entered and is cancelled and awaited when it is left, so shutdown
never leaves it running against closed resources. A task that fails on its own is logged at once:
nobody awaits a background task until shutdown, and an exception kept inside it until then is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

logger = logging.getLogger(__name__)


@asynccontextmanager
async def background(work: Coroutine[Any, Any, None]) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``work`` for as long as the block lasts, then cancel it and wait until it has stopped."""
    # Named after the coroutine function, so a logged failure says which work failed.
    task = asyncio.create_task(work, name=getattr(work, "__qualname__", None))
    task.add_done_callback(_log_failure)
    try:
        yield task
    finally:
        task.cancel()
        # wait() rather than await: a failure was already logged and must not break the shutdown.
        await asyncio.wait([task])


def _log_failure(task: asyncio.Task[None]) -> None:
    if task.cancelled() or task.exception() is None:
        return
    logger.error("background_task_failed task=%s", task.get_name(), exc_info=task.exception())


__all__ = ["background"]
