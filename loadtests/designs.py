"""Every design the bench knows, by name: each one's scenarios live in its own package
(``loadtests/<design>/scenarios.py``)."""

from __future__ import annotations

from loadtests.engine.scenario import BenchDesign
from loadtests.orders.scenarios import ORDERS
from loadtests.ratelimit.scenarios import RATELIMIT
from loadtests.shortener.scenarios import SHORTENER

DESIGNS: dict[str, BenchDesign] = {design.name: design for design in (SHORTENER, RATELIMIT, ORDERS)}

__all__ = ["DESIGNS", "ORDERS", "RATELIMIT", "SHORTENER"]
