"""The one HTTP contract both variants serve: create, redirect, inspect, delete."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from services.shortener.codes import ALIAS_PATTERN, is_reserved, looks_like_code
from services.shortener.errors import LinkNotFound
from services.shortener.links import Link
from services.shortener.service import LinkService

MAX_URL_LENGTH = 2048
ALLOWED_SCHEMES = frozenset({"http", "https"})
# Every click is counted, so neither browsers nor proxies may answer a redirect from their cache.
REDIRECT_CACHE_CONTROL = "private, max-age=0"
STATS_PATH = "/api/v1/urls/{code}"

router = APIRouter()


class LinkCreate(BaseModel):
    """A link to shorten."""

    model_config = ConfigDict(extra="forbid")

    long_url: str = Field(min_length=1, max_length=MAX_URL_LENGTH)
    custom_alias: str | None = None
    ttl_seconds: StrictInt | None = Field(default=None, gt=0)

    @field_validator("long_url")
    @classmethod
    def _absolute_http_url(cls, value: str) -> str:
        return check_long_url(value)

    @field_validator("custom_alias")
    @classmethod
    def _usable_alias(cls, value: str | None) -> str | None:
        return None if value is None else check_alias(value)


class LinkPublic(BaseModel):
    code: str
    short_url: str
    long_url: str
    expires_at: datetime | None


class LinkStats(BaseModel):
    code: str
    long_url: str
    created_at: datetime
    expires_at: datetime | None
    clicks: int


def check_long_url(value: str) -> str:
    """An absolute http(s) URL with a host, printable ASCII only (RFC 3986: clients percent-encode)."""
    if not value.isascii() or not value.isprintable() or " " in value:
        raise ValueError("must be printable ASCII without spaces or control characters")
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises on a port that is not a number in range
    except ValueError as exc:
        raise ValueError(f"is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise ValueError("must be an absolute http or https URL")
    if not parts.hostname:
        raise ValueError("must have a host")
    return value


def check_alias(value: str) -> str:
    if ALIAS_PATTERN.fullmatch(value) is None:
        raise ValueError("must be 4 to 32 characters of A-Z, a-z, 0-9, '_' and '-'")
    if is_reserved(value):
        raise ValueError(f"{value!r} is a reserved path")
    return value


async def get_service(request: Request) -> LinkService:
    # async on purpose: FastAPI runs a plain ``def`` dependency in a worker thread, a thread
    # hand-off on every redirect for what is an attribute read.
    service: LinkService = request.app.state.shortener
    return service


ServiceDep = Annotated[LinkService, Depends(get_service)]


def stats_url_of(request: Request, code: str) -> str:
    # Built here rather than with ``request.url_for("link_stats", ...)``: Starlette's reverse lookup
    # tries every route in turn, and measured at a third of the app's CPU for a create.
    return str(request.base_url).rstrip("/") + STATS_PATH.format(code=code)


def short_url_of(request: Request, code: str) -> str:
    base = request.app.state.settings.shortener_public_base_url or str(request.base_url)
    return f"{base.rstrip('/')}/{code}"


# The hot path, matched first; a code has no "/", so it cannot shadow the API routes.
@router.get(
    "/{code}", status_code=302, tags=["redirect"], responses={302: {"description": "To the long URL"}}
)
async def follow_link(code: str, request: Request) -> Response:
    # The service is read off the app directly rather than through ``ServiceDep``: every dependency
    # is another pass through FastAPI's resolver, a measurable share of a redirect served from cache.
    service: LinkService = request.app.state.shortener
    long_url = await service.resolve(_known_shape(code))
    return Response(status_code=302, headers={"Location": long_url, "Cache-Control": REDIRECT_CACHE_CONTROL})


@router.post("/api/v1/urls", status_code=201, response_model=LinkPublic, tags=["links"])
async def create_link(
    body: LinkCreate, request: Request, response: Response, service: ServiceDep
) -> LinkPublic:
    link = await service.create(
        long_url=body.long_url, custom_alias=body.custom_alias, ttl_seconds=body.ttl_seconds
    )
    response.headers["Location"] = stats_url_of(request, link.code)
    return LinkPublic(
        code=link.code,
        short_url=short_url_of(request, link.code),
        long_url=link.long_url,
        expires_at=link.expires_at,
    )


@router.get(STATS_PATH, response_model=LinkStats, name="link_stats", tags=["links"])
async def link_stats(code: str, service: ServiceDep) -> LinkStats:
    link = await service.stats(_known_shape(code))
    return _stats(link)


@router.delete(STATS_PATH, status_code=204, tags=["links"])
async def delete_link(code: str, service: ServiceDep) -> Response:
    await service.delete(_known_shape(code))
    return Response(status_code=204)


def _known_shape(code: str) -> str:
    """A path no code can have is answered without touching a cache or the database."""
    if not looks_like_code(code):
        raise LinkNotFound(code[:64])
    return code


def _stats(link: Link) -> LinkStats:
    return LinkStats(
        code=link.code,
        long_url=link.long_url,
        created_at=link.created_at,
        expires_at=link.expires_at,
        clicks=link.clicks,
    )
