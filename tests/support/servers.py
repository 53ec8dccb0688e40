"""Run an app under uvicorn in its own process on a free port, the way the lab runs services."""

from __future__ import annotations

from services.lab.standalone import ServedApp as RunningApp
from services.lab.standalone import http_ok
from services.lab.standalone import serve_app as run_app

__all__ = ["RunningApp", "http_ok", "run_app"]
