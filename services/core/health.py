"""``GET /healthz``: 200 when every dependency the service registered answers, 503 otherwise."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from services.core.problems import Problem, problem_response
from services.core.resources import HealthCheck

logger = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])


def register_health_check(app: FastAPI, *, name: str, check: HealthCheck) -> None:
    """Add a dependency to ``/healthz``; called from the lifespan once the resource is open."""
    app.state.health_checks[name] = check


async def _run_check(check: HealthCheck, *, timeout_s: float) -> str:
    try:
        await asyncio.wait_for(check(), timeout=timeout_s)
    except Exception as exc:  # any failure of a dependency means "unhealthy", never a 500
        return f"failed: {type(exc).__name__}: {exc}"[:300]
    return "ok"


@router.get("/healthz", summary="Liveness and dependency health")
async def healthz(request: Request) -> JSONResponse:
    checks: dict[str, HealthCheck] = request.app.state.health_checks
    timeout_s: float = request.app.state.health_timeout_s
    names = list(checks)
    outcomes = await asyncio.gather(*(_run_check(checks[n], timeout_s=timeout_s) for n in names))
    results = dict(zip(names, outcomes, strict=True))
    if all(outcome == "ok" for outcome in outcomes):
        return JSONResponse({"status": "ok", "checks": results})
    logger.warning("health_degraded checks=%s", results)
    return problem_response(
        Problem(
            status=503,
            kind="unhealthy",
            title="A dependency is unavailable",
            detail=", ".join(f"{n}: {o}" for n, o in results.items() if o != "ok"),
            headers={"Retry-After": "1"},
            extensions={"checks": results},
        )
    )
