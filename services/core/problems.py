"""RFC 9457 ``application/problem+json`` errors, mapped to HTTP in one place.

A design raises its own domain errors and maps them to :class:`Problem` once, in its ``errors.py``,
as an :class:`ErrorMapping` that :func:`services.core.app.build_app` installs; validation errors,
unknown routes and anything unexpected are turned into the same shape here, so a client never sees
an HTML page or a bare 500 without a body.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Generic, TypeVar

import asyncpg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "/problems/"

logger = logging.getLogger(__name__)

DomainError = TypeVar("DomainError", bound=Exception)


class Problem(Exception):
    """An error the client should see as a problem+json body.

    ``kind`` becomes the ``type`` member (``/problems/<kind>``), a stable identifier clients can
    branch on; ``headers`` carries e.g. ``Retry-After`` for 429 and 503.
    """

    def __init__(
        self,
        *,
        status: int,
        kind: str,
        title: str,
        detail: str,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.title = title
        self.detail = detail
        self.headers = dict(headers or {})
        self.extensions = dict(extensions or {})


def problem_body(problem: Problem) -> dict[str, Any]:
    """The JSON members of a problem, extensions last so they never shadow the standard ones.

    The standard members are plain strings and an int; only extensions may hold values JSON does
    not know (dates, UUIDs, models), so only they go through FastAPI's encoder. A 429 is an answer
    a rate-limited service gives thousands of times a second: it should cost no more than a 200.
    """
    body = jsonable_encoder(problem.extensions) if problem.extensions else {}
    body.update(
        type=PROBLEM_TYPE_BASE + problem.kind,
        title=problem.title,
        status=problem.status,
        detail=problem.detail,
    )
    return body


def problem_response(problem: Problem) -> JSONResponse:
    return JSONResponse(
        problem_body(problem),
        status_code=problem.status,
        headers=problem.headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


@dataclass(frozen=True)
class ErrorMapping(Generic[DomainError]):
    """A design's domain errors (``base`` and every subclass) and the one function that shows each
    as a problem; installed once per app, so no route wraps its calls to translate errors."""

    base: type[DomainError]
    to_problem: Callable[[DomainError], Problem]


def install_error_mapping(app: FastAPI, mapping: ErrorMapping[Any]) -> None:
    async def on_domain_error(_: Request, exc: Exception) -> JSONResponse:
        return problem_response(mapping.to_problem(exc))

    app.add_exception_handler(mapping.base, on_domain_error)


async def _on_problem(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(exc)


async def _on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_describe_validation_error(error) for error in exc.errors()]
    problem = Problem(
        status=422,
        kind="validation-error",
        title="The request is not valid",
        detail="; ".join(errors) or "the request did not match the schema",
        extensions={"errors": errors},
    )
    return problem_response(problem)


def _describe_validation_error(error: Mapping[str, Any]) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()))
    return f"{location}: {error.get('msg', 'invalid')}"


async def _on_http_exception(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    problem = Problem(
        status=exc.status_code,
        kind=_kind_for_status(exc.status_code),
        title=_title_for_status(exc.status_code),
        detail=str(exc.detail),
        headers=exc.headers,
    )
    return problem_response(problem)


async def _on_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled_error method=%s path=%s", request.method, request.url.path)
    problem = Problem(
        status=500,
        kind="internal-error",
        title="Internal Server Error",
        detail="the server failed to handle the request; the error is logged",
    )
    return problem_response(problem)


# A store the request needs is down, restarting or unreachable: an outage the client should wait
# out and retry, not a bug. OSError covers refused and reset connections and timeouts.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # "shutting down", "starting up"
    # A connection left half way through a protocol exchange by a server that died under it (asyncpg:
    # "cannot switch to state …; another operation is in progress"): the same outage, seen later.
    asyncpg.InternalClientError,
)
UNAVAILABLE_RETRY_AFTER_S = 1


async def _on_dependency_unavailable(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("dependency_unavailable method=%s path=%s error=%r", request.method, request.url.path, exc)
    problem = Problem(
        status=503,
        kind="dependency-unavailable",
        title="Service Unavailable",
        detail="a store this request needs did not answer; try again shortly",
        headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)},
    )
    return problem_response(problem)


def _kind_for_status(status: int) -> str:
    return {
        400: "bad-request",
        404: "not-found",
        405: "method-not-allowed",
        413: "payload-too-large",
        415: "unsupported-media-type",
        431: "headers-too-large",
    }.get(status, f"http-{status}")


def _title_for_status(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class HeaderSizeLimitMiddleware:
    """Refuse oversized request headers with a 431 problem before routing.

    The HTTP parser accepts header blocks far larger than any real client sends; without this
    bound an app would happily parse, log and key on a 70 KB ``X-Forwarded-For``.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _header_bytes(scope) > self.max_bytes:
            problem = Problem(
                status=431,
                kind="headers-too-large",
                title="Request Header Fields Too Large",
                detail=f"the request headers exceed {self.max_bytes} bytes",
            )
            await problem_response(problem)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _header_bytes(scope: Scope) -> int:
    return sum(len(name) + len(value) for name, value in scope["headers"])


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error the app can produce a problem+json response."""
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_exception)
    for unavailable in UNAVAILABLE_ERRORS:
        app.add_exception_handler(unavailable, _on_dependency_unavailable)
    app.add_exception_handler(Exception, _on_unexpected_error)
