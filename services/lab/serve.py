"""Entry points for the processes the lab starts.

``uvicorn services.lab.serve:app_from_env --factory`` builds the app named by ``LAB_SERVE_FACTORY``
(``module:function``) for ``LAB_SERVE_VARIANT``; every uvicorn worker process calls it, so the
factory must be importable, not a closure.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from fastapi import FastAPI


def import_target(target: str) -> Any:
    """``package.module:attribute`` → the attribute."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"expected 'module:attribute', got {target!r}")
    return getattr(importlib.import_module(module_name), attribute)


def app_from_env() -> FastAPI:
    factory = import_target(os.environ["LAB_SERVE_FACTORY"])
    app: FastAPI = factory(os.environ["LAB_SERVE_VARIANT"])
    return app
