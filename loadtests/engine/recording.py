"""What happened to every request, recorded exactly: HdrHistograms and per-second counts.

One :class:`Recording` per load-generator process. Every request the schedule (or a closed-loop user)
issues is counted once as *offered*, at its intended start, and ends as exactly one of:

- **ok**: answered as the profile expects (a ``2xx``, or the ``409``/``410``/``429`` a profile names);
  its latency, from the intended start, goes into the ``ok`` histogram;
- **failed**: answered otherwise, or the connection broke; latency into the ``failed`` histogram;
- **timeout**: no complete answer within the client's one overall deadline; never a latency sample;
- **unfinished**: still in flight when the run ended and the bounded wait for it was over;
- **not sent**: the generator's bound on requests in flight was reached, so it could not go out.

Sends that left later than :data:`LATE_S` after their intended start are counted as late: the
generator fell behind its schedule, and a run with more than :data:`MAX_LATE_FRACTION` of them is not
a measurement of the system (``valid`` is false).

The run is cut into windows, one per phase of the schedule, each without its first ``warmup_s``
seconds; a window's summary counts only requests intended inside it. The per-second series covers the
whole run: offered by intended second, answers by the second they came. Latencies are integers of
microseconds from 1 µs to 60 s at three significant digits (HdrHistogram), so a percentile is within
0.1% of the recorded value and never above the maximum.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US, HIGHEST_US, DIGITS = 1, 60_000_000, 3
LATE_S = 0.010
MAX_LATE_FRACTION = 0.01
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
OUTCOMES = ("ok", "failed", "timeouts", "unfinished", "not_sent")


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def record_seconds(histogram: HdrHistogram, seconds: float) -> None:
    histogram.record_value(min(HIGHEST_US, max(LOWEST_US, round(seconds * 1_000_000))))


@dataclass
class Tally:
    """Counts and histograms of one window, or of one second of the series."""

    offered: int = 0
    ok: int = 0
    failed: int = 0
    timeouts: int = 0
    unfinished: int = 0
    not_sent: int = 0
    late: int = 0
    ok_latency: HdrHistogram = field(default_factory=new_histogram)
    failed_latency: HdrHistogram = field(default_factory=new_histogram)
    lateness: HdrHistogram = field(default_factory=new_histogram)

    def add(self, other: Tally) -> None:
        for name in ("offered", *OUTCOMES, "late"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.ok_latency.add(other.ok_latency)
        self.failed_latency.add(other.failed_latency)
        self.lateness.add(other.lateness)

    def to_json(self) -> dict[str, Any]:
        counts = {name: getattr(self, name) for name in ("offered", *OUTCOMES, "late")}
        return {
            **counts,
            "ok_latency": self.ok_latency.encode().decode(),
            "failed_latency": self.failed_latency.encode().decode(),
            "lateness": self.lateness.encode().decode(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tally:
        tally = cls(**{name: int(data[name]) for name in ("offered", *OUTCOMES, "late")})
        for name in ("ok_latency", "failed_latency", "lateness"):
            getattr(tally, name).decode_and_add(data[name])
        return tally


@dataclass(frozen=True)
class Window:
    """Requests intended in ``[start_s, end_s)`` seconds from the start of the run."""

    start_s: float
    end_s: float
    rate: float | None = None  # what the schedule offered, None for closed-loop users

    @property
    def length_s(self) -> float:
        return self.end_s - self.start_s

    def holds(self, moment_s: float) -> bool:
        return self.start_s <= moment_s < self.end_s


def windows_of(phases: Sequence[tuple[float, float, float | None]], *, warmup_s: float) -> list[Window]:
    """One window per ``(start, end, rate)`` phase, its first ``warmup_s`` trimmed (at most half)."""
    return [Window(start + min(warmup_s, (end - start) / 2), end, rate) for start, end, rate in phases]


class Recording:
    """The outcomes of one process's requests, by window and by second. ``*_s`` arguments are seconds
    from the start of the run on the generator's monotonic clock."""

    def __init__(self, windows: Sequence[Window]) -> None:
        self.windows = list(windows)
        self.in_window = [Tally() for _ in self.windows]
        self.seconds: dict[int, Tally] = {}

    def offered(self, *, intended_s: float, sent_s: float) -> None:
        lateness = max(0.0, sent_s - intended_s)
        for tally in self._tallies(intended_s, second_of=intended_s):
            tally.offered += 1
            record_seconds(tally.lateness, lateness)
            tally.late += lateness > LATE_S

    def answered(self, *, intended_s: float, answered_s: float, ok: bool) -> None:
        latency = answered_s - intended_s
        for tally in self._tallies(intended_s, second_of=answered_s):
            if ok:
                tally.ok += 1
                record_seconds(tally.ok_latency, latency)
            else:
                tally.failed += 1
                record_seconds(tally.failed_latency, latency)

    def ended(self, outcome: str, *, intended_s: float, at_s: float) -> None:
        """A request that got no answer: ``timeouts``, ``unfinished`` or ``not_sent``."""
        if outcome not in ("timeouts", "unfinished", "not_sent"):
            raise ValueError(f"not an outcome without an answer: {outcome!r}")
        for tally in self._tallies(intended_s, second_of=at_s):
            setattr(tally, outcome, getattr(tally, outcome) + 1)

    def _tallies(self, intended_s: float, *, second_of: float) -> Iterable[Tally]:
        second = math.floor(second_of)
        if second not in self.seconds:  # not setdefault: a Tally holds three histograms to allocate
            self.seconds[second] = Tally()
        yield self.seconds[second]
        for window, tally in zip(self.windows, self.in_window, strict=True):
            if window.holds(intended_s):
                yield tally

    def ok_between(self, start_s: float, end_s: float) -> int:
        """Good answers given from ``start_s`` to ``end_s``, by the second they came: what a span's
        CPU was spent on, the warm-ups between a sweep's windows included (whole seconds)."""
        return sum(tally.ok for second, tally in self.seconds.items() if start_s <= second < end_s)

    def whole_run(self) -> Tally:
        """Every second of the run together, warm-up and all (what an auditor compares with the
        stores: every answer the system gave, not only those inside a window)."""
        total = Tally()
        for tally in self.seconds.values():
            total.add(tally)
        return total

    def add(self, other: Recording) -> None:
        if [(w.start_s, w.end_s) for w in other.windows] != [(w.start_s, w.end_s) for w in self.windows]:
            raise ValueError("recordings of different schedules cannot be merged")
        for mine, theirs in zip(self.in_window, other.in_window, strict=True):
            mine.add(theirs)
        for second, tally in other.seconds.items():
            self.seconds.setdefault(second, Tally()).add(tally)

    def to_json(self) -> dict[str, Any]:
        return {
            "windows": [{"start_s": w.start_s, "end_s": w.end_s, "rate": w.rate} for w in self.windows],
            "in_window": [tally.to_json() for tally in self.in_window],
            "seconds": {str(second): tally.to_json() for second, tally in sorted(self.seconds.items())},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Recording:
        recording = cls([Window(w["start_s"], w["end_s"], w["rate"]) for w in data["windows"]])
        recording.in_window = [Tally.from_json(t) for t in data["in_window"]]
        recording.seconds = {int(s): Tally.from_json(t) for s, t in data["seconds"].items()}
        return recording


def merged(recordings: Iterable[Recording]) -> Recording:
    """Several processes' recordings of one run (a distributed run, or rounds of one variant)."""
    items = list(recordings)
    if not items:
        raise ValueError("nothing to merge")
    total = Recording(items[0].windows)
    for recording in items:
        total.add(recording)
    return total


def merged_tally(recording: Recording) -> Tally:
    """Every window of a recording together (a sweep's steps, for the run's whole histogram)."""
    total = Tally()
    for tally in recording.in_window:
        total.add(tally)
    return total


def latency_ms(histogram: HdrHistogram) -> dict[str, float | None]:
    """p50/p90/p99/p99.9 and max in milliseconds, every percentile at most the max; None when empty."""
    if histogram.get_total_count() == 0:
        return {**{_label(p): None for p in PERCENTILES}, "max": None}
    highest = histogram.get_max_value()
    values = {_label(p): min(histogram.get_value_at_percentile(p), highest) / 1000 for p in PERCENTILES}
    return {**values, "max": highest / 1000}


def _label(percentile: float) -> str:
    return f"p{percentile:g}".replace(".", "_")
