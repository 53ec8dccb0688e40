"""The console's refusals, and their one mapping to problem+json (installed once by the app, so no
route translates errors itself)."""

from __future__ import annotations

from services.core.problems import ErrorMapping, Problem


class ConsoleError(Exception):
    """Something the console will not do, and why (the ``detail`` the page shows)."""


class CatalogueError(ConsoleError, ValueError):
    """A design, preset, target, setting or fault the console does not offer, or a value it refuses."""


class ConsoleBusy(ConsoleError):
    """A run is going; the console runs one at a time (its targets share the machine)."""


class NoRunGoing(ConsoleError):
    """A fault pressed with no run to record it in."""


class RestartFailed(ConsoleError):
    """A component did not come back with a new setting; the old one is back in force."""


STATUS: dict[type[ConsoleError], tuple[int, str, str]] = {
    CatalogueError: (422, "unknown-choice", "Unprocessable Content"),
    ConsoleBusy: (409, "run-going", "A run is going"),
    NoRunGoing: (409, "no-run", "No run is going"),
    RestartFailed: (503, "restart-failed", "Service Unavailable"),
}


def console_problem(error: ConsoleError) -> Problem:
    status, kind, title = next(v for cls, v in STATUS.items() if isinstance(error, cls))
    return Problem(status=status, kind=kind, title=title, detail=str(error))


CONSOLE_ERRORS = ErrorMapping(ConsoleError, console_problem)
