"""Load shapes shared by every design's Locust users.

A locustfile calls :func:`selected_shape` once at module level; Locust finds the one
``LoadTestShape`` subclass in the module and follows it. Locust is imported only inside that call:
importing it monkey-patches the interpreter, which the bench process (which only validates shape
names) must not suffer. The bench picks the shape and its knobs through the environment, so one
locustfile serves every shape:

- ``LAB_SHAPE``: ``steady`` (default), ``ramp`` or ``spike``.
- ``LAB_SHAPE_USERS``: the steady or peak number of users (default 20).
- ``LAB_SHAPE_DURATION_S``: the whole run (default 30).
- ``LAB_SHAPE_SPIKE_FACTOR``: for ``spike``, the surge as a multiple of the baseline (default 10):
  the baseline is ``users / factor``, the surge ``users``, from 40% to 70% of the run — a flash sale.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from locust import LoadTestShape

SHAPES = ("steady", "ramp", "spike")


@dataclass(frozen=True)
class ShapeKnobs:
    users: int
    duration_s: int
    spike_factor: int = 10

    @classmethod
    def from_env(cls) -> ShapeKnobs:
        return cls(
            users=int(os.environ.get("LAB_SHAPE_USERS", "20")),
            duration_s=int(os.environ.get("LAB_SHAPE_DURATION_S", "30")),
            spike_factor=int(os.environ.get("LAB_SHAPE_SPIKE_FACTOR", "10")),
        )


def users_at(shape: str, knobs: ShapeKnobs, elapsed_s: float) -> int | None:
    """How many users should run ``elapsed_s`` into the run; None ends it."""
    if elapsed_s >= knobs.duration_s:
        return None
    if shape == "steady":
        return knobs.users
    if shape == "ramp":
        return max(1, round(knobs.users * elapsed_s / knobs.duration_s))
    baseline = max(1, knobs.users // knobs.spike_factor)
    in_surge = 0.4 * knobs.duration_s <= elapsed_s < 0.7 * knobs.duration_s
    return knobs.users if in_surge else baseline


def selected_shape() -> type[LoadTestShape] | None:
    """The shape class named by ``LAB_SHAPE``, for a locustfile to bind at module level; ``None`` for
    ``LAB_SHAPE=none`` (an open-loop run follows its schedule, and a shape would start users of its own)."""
    from locust import LoadTestShape  # here, not at the top: importing Locust monkey-patches

    shape = os.environ.get("LAB_SHAPE", "steady")
    if shape == "none":
        return None
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}")
    knobs = ShapeKnobs.from_env()

    class SelectedShape(LoadTestShape):
        def tick(self) -> tuple[int, float] | None:
            users = users_at(shape, knobs, self.get_run_time())  # type: ignore[no-untyped-call]
            # Spawn the surge within a second: a flash sale does not ramp politely.
            return None if users is None else (users, float(max(users, 1)))

    SelectedShape.__name__ = f"{shape.capitalize()}Shape"
    return SelectedShape
