"""What can go wrong with a link, in the domain's words; :func:`problem_for` maps it to HTTP and
:data:`ERRORS` is that mapping as the app installs it."""

from __future__ import annotations

from services.core.problems import ErrorMapping, Problem


class ShortenerError(Exception):
    """Base of every domain error of the shortener."""


class LinkNotFound(ShortenerError):
    """No link was ever created under this code."""

    def __init__(self, code: str) -> None:
        super().__init__(f"no link has the code {code!r}")
        self.code = code


class LinkGone(ShortenerError):
    """The link existed but was deleted or has expired; its code is never reused."""

    def __init__(self, code: str, *, reason: str) -> None:
        super().__init__(f"the link {code!r} is {reason}")
        self.code = code
        self.reason = reason


class AliasTaken(ShortenerError):
    """The custom alias is already some link's code."""

    def __init__(self, alias: str) -> None:
        super().__init__(f"the alias {alias!r} is already taken")
        self.alias = alias


class CodeSpaceExhausted(ShortenerError):
    """No free code could be found in the allowed attempts (the key space is nearly full)."""


class TtlTooLong(ShortenerError):
    """``ttl_seconds`` is above the configured maximum."""

    def __init__(self, *, ttl_seconds: int, max_ttl_seconds: int) -> None:
        super().__init__(f"ttl_seconds must be at most {max_ttl_seconds}, got {ttl_seconds}")


def problem_for(error: ShortenerError) -> Problem:
    """The one place where domain errors become problem+json responses."""
    status, kind, title = _PROBLEMS[type(error)]
    headers = {"Retry-After": "1"} if status == 503 else None
    return Problem(status=status, kind=kind, title=title, detail=str(error), headers=headers)


_PROBLEMS: dict[type[ShortenerError], tuple[int, str, str]] = {
    LinkNotFound: (404, "link-not-found", "No such short link"),
    LinkGone: (410, "link-gone", "The short link is gone"),
    AliasTaken: (409, "alias-taken", "The custom alias is already taken"),
    CodeSpaceExhausted: (503, "code-space-exhausted", "No free short code is available"),
    TtlTooLong: (422, "validation-error", "The request is not valid"),
}

ERRORS = ErrorMapping(base=ShortenerError, to_problem=problem_for)
