"""The HTTP contract both variants serve: a small protected resource, and the errors' one mapping."""

from __future__ import annotations

import os
import time

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.core.problems import Problem, problem_response
from services.ratelimit.errors import (
    InvalidApiKey,
    LimiterOverloaded,
    LimiterUnavailable,
    QuotaExceeded,
    RateLimitError,
)
from services.ratelimit.limiter import RateLimitedDep, ratelimit_fields

router = APIRouter(prefix="/api/v1", tags=["resource"])


class ResourceWrite(BaseModel):
    message: str = Field(min_length=1, max_length=1000)


class ResourcePublic(BaseModel):
    client: str = Field(description="the bucket the request was counted in: key:<api key> or ip:<address>")
    served_at: float = Field(description="server time of the answer, seconds since the epoch")
    worker_pid: int


class ResourceWritten(ResourcePublic):
    message: str


def _served(client: str) -> dict[str, object]:
    return {"client": client, "served_at": time.time(), "worker_pid": os.getpid()}


@router.get("/resource", response_model=ResourcePublic)
async def read_resource(client: RateLimitedDep) -> dict[str, object]:
    return _served(client)


@router.post("/resource", response_model=ResourceWritten, status_code=201)
async def write_resource(body: ResourceWrite, client: RateLimitedDep) -> dict[str, object]:
    return {**_served(client), "message": body.message}


def to_problem(error: RateLimitError) -> Problem:
    """The one place a rate-limiter error becomes HTTP."""
    if isinstance(error, QuotaExceeded):
        retry_after = max(1, error.decision.reset_s)  # never earlier than the field's t
        return Problem(
            status=429,
            kind="quota-exceeded",
            title="Too Many Requests",
            detail=f"quota '{error.policy.name}' of {error.policy.limit} requests per "
            f"{error.policy.window_s} s is used up; retry in {retry_after} s",
            headers={**ratelimit_fields(error.policy, error.decision), "Retry-After": str(retry_after)},
        )
    if isinstance(error, InvalidApiKey):
        return Problem(status=400, kind="invalid-api-key", title="Invalid API key", detail=str(error))
    if isinstance(error, LimiterUnavailable):
        return Problem(
            status=503,
            kind="rate-limiter-unavailable",
            title="Service Unavailable",
            detail="the rate limiter cannot check requests right now and fails closed",
            headers={"Retry-After": "1"},
        )
    if isinstance(error, LimiterOverloaded):
        return Problem(
            status=503,
            kind="rate-limiter-overloaded",
            title="Service Unavailable",
            detail=f"this server is shedding load: {error}; retry in 1 s",
            headers={"Retry-After": "1"},
        )
    raise TypeError(f"unmapped rate-limiter error {error!r}")


async def _on_rate_limit_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RateLimitError)
    return problem_response(to_problem(exc))


def install_error_mapping(app: FastAPI) -> None:
    app.add_exception_handler(RateLimitError, _on_rate_limit_error)
