"""When requests are issued: the open loop's schedule, independent of how fast answers come.

A schedule is a list of phases, each a rate held for a duration. ``constant`` is one phase, ``stepped``
several (the capacity sweep), and ``poisson`` draws exponential gaps around each phase's rate instead
of even ones. The schedule is split across the load generator's worker processes: worker ``i`` of
``n`` issues every ``n``-th arrival of an even schedule (so the merged stream stays even), or an
independent Poisson stream at ``rate / n`` (the sum of Poisson streams is a Poisson stream).

No Locust import here: the bench process builds and validates schedules too.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

Spacing = Literal["even", "poisson"]
SPACINGS: tuple[Spacing, ...] = ("even", "poisson")


@dataclass(frozen=True)
class Phase:
    """``rate`` requests per second for ``duration_s`` seconds."""

    rate: float
    duration_s: float

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f"a rate must be a positive number of requests per second, not {self.rate!r}")
        if not (self.duration_s > 0 and math.isfinite(self.duration_s)):
            raise ValueError(f"a phase must last a positive number of seconds, not {self.duration_s!r}")


@dataclass(frozen=True)
class Schedule:
    phases: tuple[Phase, ...]
    spacing: Spacing = "even"
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.phases:
            raise ValueError("a schedule needs at least one phase")
        if self.spacing not in SPACINGS:
            raise ValueError(f"unknown spacing {self.spacing!r}; choose one of {', '.join(SPACINGS)}")

    @classmethod
    def constant(
        cls, rate: float, duration_s: float, *, spacing: Spacing = "even", seed: int = 0
    ) -> Schedule:
        return cls((Phase(rate, duration_s),), spacing=spacing, seed=seed)

    @classmethod
    def stepped(
        cls, rates: Sequence[float], step_s: float, *, spacing: Spacing = "even", seed: int = 0
    ) -> Schedule:
        return cls(tuple(Phase(rate, step_s) for rate in rates), spacing=spacing, seed=seed)

    @property
    def duration_s(self) -> float:
        return sum(phase.duration_s for phase in self.phases)

    def phase_bounds(self) -> list[tuple[float, float]]:
        """Each phase's (start, end) in seconds from the start of the run."""
        bounds, start = [], 0.0
        for phase in self.phases:
            bounds.append((start, start + phase.duration_s))
            start += phase.duration_s
        return bounds

    def arrivals(self, *, worker: int = 0, workers: int = 1) -> Iterator[float]:
        """This worker's intended send times, in seconds from the start of the run, in order."""
        if not 0 <= worker < workers:
            raise ValueError(f"worker {worker} is not one of {workers}")
        for (start, end), phase in zip(self.phase_bounds(), self.phases, strict=True):
            if self.spacing == "even":
                yield from _even(start, end, phase.rate, worker=worker, workers=workers)
            else:
                rng = random.Random(f"{self.seed}:{worker}:{start}")
                yield from _poisson(start, end, phase.rate / workers, rng)

    def to_json(self) -> str:
        return json.dumps(
            {"phases": [asdict(p) for p in self.phases], "spacing": self.spacing, "seed": self.seed}
        )

    @classmethod
    def from_json(cls, text: str) -> Schedule:
        data = json.loads(text)
        phases = tuple(Phase(float(p["rate"]), float(p["duration_s"])) for p in data["phases"])
        return cls(phases, spacing=data.get("spacing", "even"), seed=int(data.get("seed", 0)))


def _even(start: float, end: float, rate: float, *, worker: int, workers: int) -> Iterator[float]:
    gap = 1.0 / rate
    index = worker
    while (moment := start + index * gap) < end:
        yield moment
        index += workers


def _poisson(start: float, end: float, rate: float, rng: random.Random) -> Iterator[float]:
    moment = start + rng.expovariate(rate)
    while moment < end:
        yield moment
        moment += rng.expovariate(rate)
