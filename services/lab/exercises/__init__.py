"""Learner mode: a design's exercise (its stages), the scaffold of ``mine.py``, and ``lab check``.

The stage checks start real servers and services, so they sit with the lab's control plane, on top
of the designs and the load tests, and the integration tests prove ``hardened`` with the same ones.
"""

from __future__ import annotations

from services.lab.exercises.stages import Exercise


def exercises() -> dict[str, Exercise]:
    """Every design's exercise, by design name (imported on use: each pulls its design in)."""
    from services.lab.exercises import orders, ratelimit, shortener

    return {e.design: e for e in (ratelimit.EXERCISE, shortener.EXERCISE, orders.EXERCISE)}
