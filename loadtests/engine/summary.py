"""What a recording says, as numbers a report prints: per window, per second, against an SLO.

- **goodput**: answers that did what was asked (``ok``), per second of the window; never a failure.
- **attempts**: everything offered in the window, per second; for an open loop, the offered rate.
- **errors**: failed, timed out, unfinished and not sent, as a fraction of what was offered.
- **overloaded**: the system answered well under what it was offered (goodput below
  :data:`OVERLOAD_GOODPUT` of the offered rate): what it showed is its limit, not its latency at
  that rate.
- **valid**: the generator kept its schedule (at most ``MAX_LATE_FRACTION`` of sends late by more
  than ``LATE_S``); an invalid window measured the generator, and no verdict may use it.
- **SLO**: p99 of ``ok`` answers at most ``p99_ms`` and errors at most ``max_errors``; a window
  meets it only if it is also valid and not overloaded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from loadtests.engine.recording import (
    LATE_S,
    MAX_LATE_FRACTION,
    Recording,
    Tally,
    Window,
    latency_ms,
)

OVERLOAD_GOODPUT = 0.95


@dataclass(frozen=True)
class Slo:
    p99_ms: float = 100.0
    max_errors: float = 0.01

    def __post_init__(self) -> None:
        if self.p99_ms <= 0 or not 0 <= self.max_errors < 1:
            raise ValueError("an SLO needs a positive p99 and an error fraction in [0, 1)")


@dataclass(frozen=True)
class WindowSummary:
    start_s: float
    end_s: float
    offered_rate: float | None  # what the schedule asked for; None for closed-loop users
    offered: int
    ok: int
    failed: int
    timeouts: int
    unfinished: int
    not_sent: int
    goodput_rps: float
    attempts_rps: float
    error_fraction: float
    latency_ms: dict[str, float | None]  # of ok answers, from each request's intended start
    failed_latency_ms: dict[str, float | None]
    lateness_p99_ms: float | None
    late_fraction: float
    valid: bool
    overloaded: bool
    meets_slo: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def summarize(window: Window, tally: Tally, *, slo: Slo) -> WindowSummary:
    length = max(window.length_s, 1e-9)
    offered = max(tally.offered, 1)
    errors = (tally.failed + tally.timeouts + tally.unfinished + tally.not_sent) / offered
    late_fraction = tally.late / offered
    latency = latency_ms(tally.ok_latency)
    goodput = tally.ok / length
    overloaded = window.rate is not None and goodput < OVERLOAD_GOODPUT * window.rate
    valid = late_fraction <= MAX_LATE_FRACTION
    p99 = latency["p99"]
    return WindowSummary(
        start_s=window.start_s,
        end_s=window.end_s,
        offered_rate=window.rate,
        offered=tally.offered,
        ok=tally.ok,
        failed=tally.failed,
        timeouts=tally.timeouts,
        unfinished=tally.unfinished,
        not_sent=tally.not_sent,
        goodput_rps=round(goodput, 2),
        attempts_rps=round(tally.offered / length, 2),
        error_fraction=round(errors, 5),
        latency_ms=latency,
        failed_latency_ms=latency_ms(tally.failed_latency),
        lateness_p99_ms=latency_ms(tally.lateness)["p99"],
        late_fraction=round(late_fraction, 5),
        valid=valid,
        overloaded=overloaded,
        meets_slo=valid
        and not overloaded
        and errors <= slo.max_errors
        and p99 is not None
        and p99 <= slo.p99_ms,
    )


def windows(recording: Recording, *, slo: Slo) -> list[WindowSummary]:
    return [summarize(w, t, slo=slo) for w, t in zip(recording.windows, recording.in_window, strict=True)]


def series(recording: Recording) -> list[dict[str, float | int | None]]:
    """One row per second of the run, from exact counts: offered (by intended second), answers by
    the second they came, and the p50 and p99 of that second's ok answers."""
    return [series_row(second, tally) for second, tally in sorted(recording.seconds.items())]


def series_row(second: int, tally: Tally) -> dict[str, float | int | None]:
    latency = latency_ms(tally.ok_latency)
    return {
        "t": second,
        "offered": tally.offered,
        "ok": tally.ok,
        "failed": tally.failed,
        "timeouts": tally.timeouts,
        "unfinished": tally.unfinished,
        "not_sent": tally.not_sent,
        "p50_ms": latency["p50"],
        "p99_ms": latency["p99"],
    }


__all__ = ["LATE_S", "Slo", "WindowSummary", "series", "series_row", "summarize", "windows"]
