"""Running the variant under check the way the lab runs services, and telling a broken one apart."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from services.lab import processes
from services.lab.exercises.stages import CheckContext
from services.lab.standalone import ServedApp, serve_app

# How the learner's loading error appears in a service's log (uvicorn prints the traceback's last line).
_LOAD_ERROR = re.compile(r"VariantLoadError: (?P<message>.+)$", re.MULTILINE)


class VariantBroken(RuntimeError):
    """The variant under check did not start: it failed to load, crashed or hung. One line."""


@contextmanager
def serve_variant(
    ctx: CheckContext, factory: str, *, workers: int = 1, env: Mapping[str, str] | None = None
) -> Iterator[ServedApp]:
    """``factory(ctx.variant)`` under uvicorn on a free port with the check's environment; one that
    does not start raises :class:`~services.lab.standalone.AppDidNotStart` (see :func:`startup_failure`)."""
    with serve_app(
        factory,
        ctx.variant,
        env=ctx.env(**(env or {})),
        log_dir=ctx.log_dir,
        workers=workers,
        startup_timeout_s=ctx.startup_timeout_s,
    ) as app:
        yield app


def startup_failure(ctx: CheckContext, failure: str) -> str:
    """The loading error the variant's log names (file and line), else what the lab saw."""
    found = _LOAD_ERROR.search(failure) or _LOAD_ERROR.search(_newest_log(ctx.log_dir))
    if found:
        return found["message"].strip()
    last = failure.strip().splitlines()[-1]
    return f"{failure.splitlines()[0]} hung or crashed at start-up; last log line: {last[:200]!r}"


def _newest_log(log_dir: Path) -> str:
    logs = sorted(log_dir.glob("*.log"), key=lambda p: p.stat().st_mtime)
    return processes.tail(logs[-1], lines=40) if logs else ""
