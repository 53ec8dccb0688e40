"""``python -m services.lab.worker module:function`` runs a background worker until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from services.core.logs import configure_logging
from services.lab.serve import import_target

logger = logging.getLogger(__name__)


async def run_until_stopped(target: str) -> None:
    work = asyncio.ensure_future(import_target(target)())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, work.cancel)
    logger.info("worker_started target=%s", target)
    try:
        await work
    except asyncio.CancelledError:
        logger.info("worker_stopped target=%s", target)


def main() -> None:
    configure_logging()
    asyncio.run(run_until_stopped(sys.argv[1]))


if __name__ == "__main__":
    main()
