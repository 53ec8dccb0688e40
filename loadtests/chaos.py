"""Faults on a schedule: ``kafka:pause@10s,kafka:resume@20s`` applied during a bench run.

Actions: ``kill`` (SIGKILL to the component's process group), ``pause`` (SIGSTOP), ``resume``
(SIGCONT) and ``restart`` (stop, then start again through the supervisor).
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

ACTIONS = ("kill", "pause", "resume", "restart")
_STEP = re.compile(r"^(?P<component>[a-z0-9-]+):(?P<action>[a-z]+)@(?P<at>\d+(?:\.\d+)?)s?$")


class TimelineError(ValueError):
    """A malformed timeline or an unknown component or action."""


@dataclass(frozen=True)
class ChaosStep:
    component: str
    action: str
    at_s: float


@dataclass
class AppliedStep:
    component: str
    action: str
    at_s: float
    applied_at_s: float | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_timeline(text: str, *, components: Sequence[str]) -> list[ChaosStep]:
    """``component:action@seconds`` separated by commas, validated before anything starts."""
    steps = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = _STEP.match(part)
        if match is None:
            raise TimelineError(
                f"cannot read {part!r}; expected component:action@seconds, e.g. kafka:pause@10s"
            )
        step = ChaosStep(match["component"], match["action"], float(match["at"]))
        if step.action not in ACTIONS:
            raise TimelineError(f"unknown chaos action {step.action!r}; choose one of {', '.join(ACTIONS)}")
        if step.component not in components:
            raise TimelineError(f"unknown chaos target {step.component!r}; known: {', '.join(components)}")
        steps.append(step)
    return sorted(steps, key=lambda s: s.at_s)


class ChaosRunner:
    """Applies a timeline on a background thread, relative to :meth:`start`."""

    def __init__(self, steps: Sequence[ChaosStep], *, apply: Callable[[ChaosStep], None]) -> None:
        self.applied = [AppliedStep(s.component, s.action, s.at_s) for s in steps]
        self._steps = list(steps)
        self._apply = apply
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        self._started = 0.0

    def start(self) -> None:
        self._started = time.monotonic()
        if self._steps:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        for step, record in zip(self._steps, self.applied, strict=True):
            if self._stop.wait(max(0.0, self._started + step.at_s - time.monotonic())):
                return
            try:
                self._apply(step)
            except Exception as exc:  # a failed fault is recorded in the report, not fatal to the run
                record.error = f"{type(exc).__name__}: {exc}"
            record.applied_at_s = round(time.monotonic() - self._started, 3)


SIGNALS = {"kill": signal.SIGKILL, "pause": signal.SIGSTOP, "resume": signal.SIGCONT}
