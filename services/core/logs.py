"""Logging configured once per process, as ``key=value`` lines that grep and log shippers both read."""

from __future__ import annotations

import logging

_FORMAT = "ts=%(asctime)s level=%(levelname)s logger=%(name)s pid=%(process)d msg=%(message)s"


def configure_logging(*, level: str = "INFO") -> None:
    """Install the lab's log format on the root logger; a second call only changes the level."""
    root = logging.getLogger()
    if not any(getattr(handler, "_lab_handler", False) for handler in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler._lab_handler = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())
