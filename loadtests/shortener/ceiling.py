"""The ceiling: a bare FastAPI endpoint that answers the same ``302`` as the shortener with no I/O,
built by the same ``build_app`` and served by the same uvicorn settings."""

from __future__ import annotations

from fastapi import FastAPI, Response

from services.core.app import build_app
from services.core.settings import CoreSettings

TARGET = "https://example.com/"


def create_app(_: str) -> FastAPI:
    """uvicorn factory (the variant name is unused: there is one ceiling)."""
    app = build_app(title="Redirect ceiling", settings=CoreSettings())

    @app.get("/{code}", status_code=302)
    async def follow_link(code: str) -> Response:
        return Response(status_code=302, headers={"Location": TARGET, "Cache-Control": "private, max-age=0"})

    return app
