"""The HTTP contract both variants serve: a small protected resource."""

from __future__ import annotations

import os
import time

from fastapi import APIRouter
from pydantic import BaseModel, Field

from services.ratelimit.limiter import RateLimitedDep

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
