"""The live console's web app: one page per design, its JSON API and the run's event stream.

Everything the page needs ships in this package (``static/``): no CDN, so a classroom without a
network still works. Reads are open; what changes something (a run, a fault, a setting) needs the
lab's admin token when the console listens beyond this machine (``require_token``), as the
services' admin endpoints do.

The event stream (``GET /api/runs/{id}/events``) is server-sent events: every event of the run from
the first (or from ``Last-Event-ID``), then each as it happens, until the run's ``end``. Closing the
page closes the stream and nothing else.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from services.core.problems import Problem, install_error_mapping, install_problem_handlers
from services.lab.console.errors import CONSOLE_ERRORS, CatalogueError
from services.lab.console.presets import describe, design_of
from services.lab.console.runs import POLL_S, ConsoleRuns, LiveRun

STATIC = Path(str(files("services.lab.console") / "static"))
HEARTBEAT_S = 15.0  # a comment line that keeps proxies from closing a quiet stream


class RunStart(BaseModel):
    design: str = Field(max_length=32)
    preset: str = Field(max_length=64)
    targets: list[Annotated[str, Field(max_length=32)]] = Field(default_factory=list, max_length=8)


class FaultPress(BaseModel):
    component: str = Field(max_length=64)
    action: str = Field(max_length=16)


class SettingChange(BaseModel):
    name: str = Field(max_length=64)
    value: str = Field(max_length=64)


def create_console_app(runs: ConsoleRuns, *, admin_token: str, require_token: bool) -> FastAPI:
    app = FastAPI(title="System Design Lab console", docs_url=None, redoc_url=None)
    install_problem_handlers(app)
    install_error_mapping(app, CONSOLE_ERRORS)
    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")

    def authorized(
        request: Request,
        authorization: Annotated[str | None, Header()] = None,
        origin: Annotated[str | None, Header()] = None,
    ) -> None:
        # A page of another site may post to this one (a form, a no-cors fetch): a browser says
        # whose page it is, and only the console's own pages change anything. Clients that are not
        # browsers send no Origin.
        if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host"):
            raise Problem(
                status=403,
                kind="cross-origin",
                title="Forbidden",
                detail=f"changes come from the console's own page, not from {origin}",
            )
        if not require_token:
            return
        offered = (authorization or "").removeprefix("Bearer ").strip()
        if not secrets.compare_digest(offered.encode(), admin_token.encode()):
            raise Problem(
                status=401,
                kind="unauthorized",
                title="Unauthorized",
                detail="the console listens beyond this machine: send the lab's admin token (Bearer)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    changes = [Depends(authorized)]

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse(f"/designs/{next(iter(runs.designs))}")

    @app.get("/designs/{design}", include_in_schema=False)
    def page(design: str) -> FileResponse:
        _design_or_404(runs, design)
        return FileResponse(STATIC / "console.html", media_type="text/html")

    @app.get("/api/designs")
    def designs() -> dict[str, Any]:
        return {"designs": [describe(d, runs.environ()) for d in runs.designs.values()]}

    @app.post("/api/runs", status_code=202, dependencies=changes)
    def start_run(body: RunStart) -> dict[str, Any]:
        return runs.start(body.design, body.preset, body.targets).summary()

    @app.get("/api/runs")
    def list_runs() -> dict[str, Any]:
        return {"runs": runs.past()}

    @app.get("/api/runs/{run_id}")
    def show_run(run_id: str) -> dict[str, Any]:
        found = _run_or_404(runs, run_id)
        return found.summary() if isinstance(found, LiveRun) else found

    @app.post("/api/runs/{run_id}/stop", status_code=202, dependencies=changes)
    def stop_run(run_id: str) -> dict[str, Any]:
        found = _run_or_404(runs, run_id)
        if not isinstance(found, LiveRun) or found.finished:
            raise Problem(status=409, kind="run-over", title="The run is over", detail=f"{run_id} has ended")
        found.stop()
        return found.summary()

    @app.get("/api/runs/{run_id}/events")
    def run_events(
        run_id: str, request: Request, last_event_id: Annotated[str | None, Header()] = None
    ) -> StreamingResponse:
        found = _run_or_404(runs, run_id)
        if not isinstance(found, LiveRun):
            raise Problem(
                status=410, kind="run-over", title="Gone", detail=f"{run_id} has ended: its report has it all"
            )
        first = int(last_event_id) + 1 if last_event_id and last_event_id.isdigit() else 0
        return StreamingResponse(
            _stream(found, first, request),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.post("/api/faults", dependencies=changes)
    def press_fault(body: FaultPress) -> dict[str, Any]:
        return runs.press(body.component, body.action)

    @app.post("/api/settings", dependencies=changes)
    def change_setting(body: SettingChange) -> dict[str, Any]:
        return runs.tune(body.name, body.value)

    @app.get("/reports/{run_id}/{name}", include_in_schema=False)
    def report_file(run_id: str, name: str) -> FileResponse:
        folder = runs.folder_of(run_id)
        if folder is None or name not in REPORT_FILES or not (folder / name).is_file():
            raise Problem(status=404, kind="not-found", title="Not Found", detail=f"no {name} for {run_id}")
        return FileResponse(folder / name)

    return app


REPORT_FILES = frozenset({"report.html", "report.md", "report.json"})


def _design_or_404(runs: ConsoleRuns, name: str) -> None:
    try:
        design_of(runs.designs, name)
    except CatalogueError as exc:
        raise Problem(status=404, kind="not-found", title="Not Found", detail=str(exc)) from exc


def _run_or_404(runs: ConsoleRuns, run_id: str) -> LiveRun | dict[str, Any]:
    found = runs.run(run_id)
    if found is None:
        raise Problem(status=404, kind="not-found", title="Not Found", detail=f"no run {run_id!r}")
    return found


async def _stream(run: LiveRun, first: int, request: Request) -> AsyncIterator[str]:
    """The run's events from ``first``, then live, until its ``end`` event (or the page leaves)."""
    sent, quiet_s = first, 0.0
    while not await request.is_disconnected():
        events = run.events_from(sent)
        for event in events:
            yield f"id: {event.seq}\nevent: {event.kind}\ndata: {json.dumps(event.data)}\n\n"
            if event.kind == "end":
                return
        sent += len(events)
        quiet_s = 0.0 if events else quiet_s + POLL_S
        if quiet_s >= HEARTBEAT_S:
            quiet_s = 0.0
            yield ": still here\n\n"
        await asyncio.sleep(POLL_S)
