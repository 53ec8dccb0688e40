"""Capacity at an SLO: step the offered rate up, open loop, and find the knee.

The sweep is one run with a stepped schedule; each step is a window of its own (its first seconds
trimmed, so the backlog of the step before settles). The knee is the highest offered rate whose
window met the SLO while every lower step met it too: a system that broke at 400 req/s and recovered
at 500 did not hold 500.
"""

from __future__ import annotations

from collections.abc import Sequence

from loadtests.engine.schedule import Schedule, Spacing
from loadtests.engine.summary import WindowSummary


def sweep_rates(*, start: float, factor: float, steps: int) -> list[float]:
    """``start``, then each step ``factor`` times the one before: geometric, so a sweep covers a wide
    range in few steps and is finest where a system is slow."""
    if start <= 0 or factor <= 1 or steps < 2:
        raise ValueError("a sweep starts at a positive rate, grows by a factor above 1, and has ≥ 2 steps")
    return [round(start * factor**step, 1) for step in range(steps)]


def sweep_schedule(rates: Sequence[float], *, step_s: float, spacing: Spacing = "even") -> Schedule:
    return Schedule.stepped(rates, step_s, spacing=spacing)


def knee(steps: Sequence[WindowSummary]) -> float | None:
    """The highest offered rate held (``None``: not even the first step met the SLO)."""
    held: float | None = None
    for step in steps:
        if not step.meets_slo or step.offered_rate is None:
            break
        held = step.offered_rate
    return held


def broke_at(steps: Sequence[WindowSummary]) -> float | None:
    """The first offered rate that did not hold; ``None`` when every step held (the knee lies above)."""
    return next((step.offered_rate for step in steps if not step.meets_slo), None)


def knee_bound_by_generator(steps: Sequence[WindowSummary]) -> bool:
    """The sweep stopped at a step the generator did not offer on schedule (an invalid window), not
    at one the system failed: the system may hold more, so the knee is a lower bound, measured by the
    generator as much as by the system."""
    first_miss = next((step for step in steps if not step.meets_slo), None)
    return first_miss is not None and not first_miss.valid and not first_miss.overloaded
