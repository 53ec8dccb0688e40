"""CPU per component over a measurement window, and whether the load generator was the bottleneck.

What is measured
    For every named component (a root pid: a service, a worker, PostgreSQL, Valkey, the broker, the
    load generator), the cumulative user + system CPU seconds of the root **and every descendant**
    (uvicorn workers, PostgreSQL backends, Locust workers), read with ``psutil`` from
    ``/proc/<pid>/stat``. A background thread samples every ``interval_s`` (0.5 s by default); every
    ``mark`` takes a sample of its own, so a window between two marks starts and ends on a reading.
    A component's family stops where another component's root begins: a root started under another
    (a worker the service's supervisor forked) counts for its own component only, so the components
    add up. Each process is keyed by pid *and* start time (a reused pid is another process), and the last
    reading of every process ever seen is kept: a process that exits during the window counts up to
    its last reading, and one born during the window counts from zero.

    From a window between two marks (``CpuMeter.window``): per component the CPU seconds, the cores
    used (seconds / window length), a series of cores per ``step_s`` (1 s) step, and a steady-state
    figure, the median of that series. For the load generator, the steady state of **each of its
    processes** (one Locust process runs on one core at most) and ``generator_bound``: whether any of
    them was at ``GENERATOR_BOUND_CORES`` or above. ``cpu_per_request`` turns seconds into µs per
    request; ``CpuWindow.per_request`` gives that breakdown for every component.

What is not measured
    * CPU a process spends after its last reading before it exits (at most one ``interval_s`` of its
      time), and processes that start and exit between two readings. ``children_user`` and
      ``children_system`` are deliberately not added: they hold the CPU of reaped children that this
      meter has already counted from their own readings, so adding them would count it twice.
    * Work done for a component by the kernel outside its processes (softirq time of its network
      traffic), and anything outside the named families (the runner itself, other users' jobs).
      The meter's own reads (one pass over the process table per reading, about 5 ms of CPU with
      ~140 processes on the development machine, so ~1% of a core at 0.5 s) land in the process
      that runs it, which is not a component unless it is named as one.
    * Readings are in clock ticks (``os.sysconf("SC_CLK_TCK")``, usually 10 ms per tick and field),
      and the series interpolates linearly between readings: a step shorter than ``interval_s``
      smears a burst over its neighbours.

Clock
    Marks and samples use ``time.monotonic()`` (CLOCK_MONOTONIC on Linux, one clock for every process
    on the machine), so a mark may carry a time taken in the load generator's own process
    (``mark(name, at=...)``); it is placed by interpolation between the readings around it.

Cores
    ``pin_to_cores`` sets the CPU affinity of a process family (what ``taskset -a -c`` does) so the
    generator and the services can be kept on separate cores when asked. It needs no cgroup: cgroup
    v2 is not mounted on every machine this runs on (it is not on the development machines), so the
    accounting here is per process throughout.
"""

from __future__ import annotations

import bisect
import contextlib
import math
import os
import threading
import time
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from statistics import median
from typing import Any

import psutil

# A Locust process is one OS thread (gevent): near a full core it can no longer issue requests on
# schedule, so what it reports includes its own queueing. Below a full core, so that a saturated
# process still counts when sampling error and other jobs on a shared machine take a share.
GENERATOR_BOUND_CORES = 0.85
DEFAULT_INTERVAL_S = 0.5
SERIES_STEP_S = 1.0
WINDOW_START, WINDOW_END = "window-start", "window-end"
JOIN_TIMEOUT_S = 5.0

ProcessKey = tuple[int, float]  # pid and start time: a pid the kernel reuses is another process
Readings = dict[ProcessKey, float]  # CPU seconds so far of each process of a family


# -- one family ----------------------------------------------------------------------------------


class ProcessFamily:
    """A root process and all its descendants, with the last CPU reading of each process seen."""

    def __init__(self, name: str, root_pid: int) -> None:
        self.name = name
        self.root_pid = root_pid
        self._last: Readings = {}

    def observe(
        self, children_of: Mapping[int, Sequence[int]], *, other_roots: Collection[int] = ()
    ) -> Readings:
        """Read every living member now; return the last reading of every member ever seen.

        The subtree under any of ``other_roots`` is left out: it is another component's family.
        """
        for pid in _family_pids(self.root_pid, children_of, other_roots=other_roots):
            reading = _read_cpu(pid)
            if reading is not None:
                key, seconds = reading
                self._last[key] = seconds
        return dict(self._last)


def _family_pids(
    root: int, children_of: Mapping[int, Sequence[int]], *, other_roots: Collection[int]
) -> list[int]:
    family, pending = [], [root]
    while pending:
        pid = pending.pop()
        family.append(pid)
        pending.extend(child for child in children_of.get(pid, ()) if child not in other_roots)
    return family


def _read_cpu(pid: int) -> tuple[ProcessKey, float] | None:
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            times = process.cpu_times()
            return (pid, process.create_time()), times.user + times.system
    except psutil.Error:  # gone (or not ours to read) since the process table was read
        return None


def _children_map() -> dict[int, list[int]]:
    """Parent pid → child pids for the whole machine, from one pass over the process table."""
    children: dict[int, list[int]] = defaultdict(list)
    for process in psutil.process_iter(["ppid"]):
        parent = process.info.get("ppid")
        if parent is not None and parent != process.pid:
            children[parent].append(process.pid)
    return children


# -- the meter -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sample:
    at: float
    readings: dict[str, Readings]


class CpuMeter:
    """Samples the CPU of named process families in a background thread between ``start`` and ``stop``.

    ``components`` maps a name to a root pid; ``generators`` names the components that are load
    generators (their processes are judged one by one for ``generator_bound``).
    """

    def __init__(
        self,
        components: Mapping[str, int],
        *,
        generators: Collection[str] = (),
        interval_s: float = DEFAULT_INTERVAL_S,
        step_s: float = SERIES_STEP_S,
    ) -> None:
        _check_meter(components, generators=generators, interval_s=interval_s, step_s=step_s)
        self._families = [ProcessFamily(name, pid) for name, pid in components.items()]
        self._roots = frozenset(components.values())
        self._generators = frozenset(generators)
        self._interval_s, self._step_s = interval_s, step_s
        self._samples: list[_Sample] = []
        self._marks: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._stopped = False

    def __enter__(self) -> CpuMeter:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("this meter has already been started")
        self._sample()
        self._thread = threading.Thread(target=self._run, name="cpu-meter", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Take a last reading and end the sampling thread; raise what broke it, if anything did."""
        if self._thread is None:
            raise RuntimeError("this meter was never started")
        self._stopping.set()
        self._thread.join(JOIN_TIMEOUT_S)
        self._stopped = True
        self._sample()
        if self._failure is not None:
            raise RuntimeError("the CPU meter's sampling thread failed") from self._failure

    def mark(self, name: str, at: float | None = None) -> float:
        """Name a moment: now (a reading is taken on the spot), or ``at`` on ``time.monotonic()``
        (also after ``stop``, for times the load generator reports once it is done)."""
        if self._thread is None:
            raise RuntimeError("start the meter before marking a window")
        if self._stopped and at is None:
            raise RuntimeError("the meter has stopped: mark a past moment with at=")
        if name in self._marks:
            raise ValueError(f"the mark {name!r} is already set")
        self._marks[name] = self._sample() if at is None else at
        return self._marks[name]

    def window(self, start: str = WINDOW_START, end: str = WINDOW_END) -> CpuWindow:
        """What every component spent between the marks ``start`` and ``end``."""
        with self._lock:
            samples = list(self._samples)
        opened, closed = self._mark_time(start), self._mark_time(end)
        _check_window(samples, start=(start, opened), end=(end, closed))
        timeline = _Timeline(samples, opened=opened, closed=closed, step_s=self._step_s)
        components = {family.name: timeline.component(family.name) for family in self._families}
        processes = {name: timeline.steady_by_process(name) for name in sorted(self._generators)}
        return CpuWindow(
            start=start,
            end=end,
            duration_s=closed - opened,
            components=components,
            generator_processes=processes,
            generator_bound=is_generator_bound(v for steady in processes.values() for v in steady.values()),
        )

    def _mark_time(self, name: str) -> float:
        if name not in self._marks:
            raise ValueError(f"no mark named {name!r}; marks so far: {sorted(self._marks)}")
        return self._marks[name]

    def _run(self) -> None:
        try:
            while not self._stopping.wait(self._interval_s):
                self._sample()
        except BaseException as failure:  # kept for stop(): a silent gap would read as idle CPU
            self._failure = failure

    def _sample(self) -> float:
        with self._lock:  # one reading at a time, so readings stay in time order
            children_of = _children_map()
            at = time.monotonic()  # the CPU reads that follow take a few milliseconds at most
            readings = {
                family.name: family.observe(children_of, other_roots=self._roots - {family.root_pid})
                for family in self._families
            }
            self._samples.append(_Sample(at, readings))
            return at


def _check_meter(
    components: Mapping[str, int], *, generators: Collection[str], interval_s: float, step_s: float
) -> None:
    if not components:
        raise ValueError("a CPU meter needs at least one component")
    unknown = set(generators) - set(components)
    if unknown:
        raise ValueError(f"generators {sorted(unknown)} are not among the components {sorted(components)}")
    if not (interval_s > 0 and step_s > 0):
        raise ValueError(f"the interval and the step must be positive, got {interval_s} and {step_s}")
    if len(set(components.values())) != len(components):
        raise ValueError(f"each component needs a root of its own: {dict(components)}")
    missing = {name: pid for name, pid in components.items() if not psutil.pid_exists(pid)}
    if missing:
        raise ValueError(f"no process runs with these pids: {missing}")


def _check_window(samples: Sequence[_Sample], *, start: tuple[str, float], end: tuple[str, float]) -> None:
    if end[1] <= start[1]:
        raise ValueError(f"the window ends ({end[0]!r}) before it starts ({start[0]!r})")
    first, last = samples[0].at, samples[-1].at
    for name, at in (start, end):
        if not first <= at <= last:
            raise ValueError(f"the mark {name!r} lies outside the readings, {first:.3f} to {last:.3f}")


class _Timeline:
    """Cumulative CPU as piecewise-linear functions of time, read inside one window."""

    def __init__(self, samples: Sequence[_Sample], *, opened: float, closed: float, step_s: float) -> None:
        self._samples = samples
        self._times = [sample.at for sample in samples]
        self._opened, self._closed = opened, closed
        steps = math.floor((closed - opened) / step_s + 1e-9)  # whole steps only: each point alike
        self._edges = [opened + i * step_s for i in range(steps + 1)] if steps else []
        self._step_s = step_s

    def component(self, name: str) -> ComponentCpu:
        totals = [sum(sample.readings[name].values()) for sample in self._samples]
        return self._usage(totals)

    def steady_by_process(self, name: str) -> dict[int, float]:
        """Steady-state cores of each process of ``name`` that used any CPU inside the window."""
        keys = {key for sample in self._samples for key in sample.readings[name]}
        usage = {key: self._usage([s.readings[name].get(key, 0.0) for s in self._samples]) for key in keys}
        return {key[0]: cpu.steady_cores for key, cpu in sorted(usage.items()) if cpu.seconds > 0}

    def _usage(self, cumulative: Sequence[float]) -> ComponentCpu:
        def at(moment: float) -> float:
            return _interpolate(self._times, cumulative, moment)

        seconds = at(self._closed) - at(self._opened)
        cores = seconds / (self._closed - self._opened)
        series = tuple((at(b) - at(a)) / self._step_s for a, b in pairwise(self._edges))
        return ComponentCpu(
            seconds=seconds, cores=cores, series=series, steady_cores=median(series) if series else cores
        )


def _interpolate(times: Sequence[float], values: Sequence[float], moment: float) -> float:
    right = bisect.bisect_left(times, moment)
    if right < len(times) and times[right] == moment:
        return values[right]
    left = right - 1
    share = (moment - times[left]) / (times[right] - times[left])
    return values[left] + (values[right] - values[left]) * share


# -- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ComponentCpu:
    """One component's CPU over a window; ``steady_cores`` is the median of ``series``, or ``cores``
    when the window is shorter than one step."""

    seconds: float
    cores: float
    series: tuple[float, ...]
    steady_cores: float


@dataclass(frozen=True)
class CpuWindow:
    """Every component's CPU between two marks, and whether the load generator was the bottleneck.

    ``generator_processes``: per generator component, the steady-state cores of each of its processes
    (by pid) that used CPU in the window.
    """

    start: str
    end: str
    duration_s: float
    components: dict[str, ComponentCpu]
    generator_processes: dict[str, dict[int, float]] = field(default_factory=dict)
    generator_bound: bool = False

    def per_request(self, requests: int) -> dict[str, float]:
        """CPU µs per request of every component, for ``requests`` served inside the window."""
        return cpu_breakdown({name: cpu.seconds for name, cpu in self.components.items()}, requests)

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "duration_s": self.duration_s,
            "components": {
                name: {**asdict(cpu), "series": list(cpu.series)} for name, cpu in self.components.items()
            },
            "generator_processes": {
                name: {str(pid): cores for pid, cores in steady.items()}
                for name, steady in self.generator_processes.items()
            },
            "generator_bound_cores": GENERATOR_BOUND_CORES,
            "generator_bound": self.generator_bound,
        }


def is_generator_bound(steady_cores_per_process: Iterable[float]) -> bool:
    """Whether any generator process ran at ``GENERATOR_BOUND_CORES`` or more in its steady state."""
    return any(cores >= GENERATOR_BOUND_CORES for cores in steady_cores_per_process)


def cpu_per_request(cpu_seconds: float, requests: int) -> float:
    """Microseconds of CPU per request."""
    if requests <= 0:
        raise ValueError(f"CPU per request needs at least one request, not {requests}")
    if not (math.isfinite(cpu_seconds) and cpu_seconds >= 0):
        raise ValueError(f"CPU seconds are a finite amount of at least 0, not {cpu_seconds}")
    return cpu_seconds / requests * 1e6


def cpu_breakdown(seconds_by_component: Mapping[str, float], requests: int) -> dict[str, float]:
    """CPU µs per request of each component."""
    return {name: cpu_per_request(seconds, requests) for name, seconds in seconds_by_component.items()}


# -- pinning -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PinResult:
    """What ``pin_to_cores`` did: ``pinned`` with how many threads, or ``reason`` why not."""

    pinned: bool
    cores: tuple[int, ...]
    threads: int
    reason: str


def pin_to_cores(pid: int, cores: Collection[int]) -> PinResult:
    """Restrict ``pid``, its descendants and all their threads to ``cores`` (like ``taskset -a -c``).

    Processes they start later inherit the mask. Nothing is changed when a core asked for is not one
    this process may use (fewer cores than asked) or when the family cannot be read; when the kernel
    refuses a thread (another user's process) the result says so, and threads pinned before it stay.
    """
    asked = tuple(sorted(set(cores)))
    available = os.sched_getaffinity(0)
    if not asked or not set(asked) <= available:
        reason = f"asked for cores {list(asked)}; the cores available are {sorted(available)}"
        return PinResult(pinned=False, cores=asked, threads=0, reason=reason)
    try:
        threads = _thread_ids(pid)
        for thread in threads:
            _set_affinity(thread, asked)
    except (psutil.Error, PermissionError) as error:
        return PinResult(pinned=False, cores=asked, threads=0, reason=f"cannot pin pid {pid}: {error}")
    reason = f"pinned pid {pid} and its family ({len(threads)} threads) to cores {list(asked)}"
    return PinResult(pinned=True, cores=asked, threads=len(threads), reason=reason)


def _thread_ids(pid: int) -> list[int]:
    root = psutil.Process(pid)
    family = [root, *root.children(recursive=True)]
    return [thread.id for process in family for thread in _threads_of(process)]


def _threads_of(process: psutil.Process) -> list[Any]:
    try:
        return list(process.threads())
    except psutil.NoSuchProcess:  # a descendant that exited meanwhile has nothing left to pin
        return []


def _set_affinity(thread: int, cores: Sequence[int]) -> None:
    with contextlib.suppress(ProcessLookupError):  # the thread ended between listing and pinning
        os.sched_setaffinity(thread, cores)


def pin_apart(*, generator: int, services: Iterable[int]) -> dict[str, Any]:
    """The load generator's family on the last core this process may use, every other family (the
    services, their workers, PostgreSQL, Valkey, the broker) on the rest: they no longer compete for
    a core. On a machine with fewer than two cores there is nothing to spare: nothing is pinned and
    the result says so."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        reason = f"{len(cores)} core available, none to spare: ran unpinned"
        return {"asked": True, "pinned": False, "reason": reason}
    generator_cores, service_cores = cores[-1:], cores[:-1]
    results = [
        pin_to_cores(generator, generator_cores),
        *(pin_to_cores(pid, service_cores) for pid in services),
    ]
    refused = [result.reason for result in results if not result.pinned]
    return {
        "asked": True,
        "pinned": not refused,
        "generator_cores": generator_cores,
        "service_cores": service_cores,
        "reason": "; ".join(refused)
        or f"load generator on core(s) {generator_cores}, services and infrastructure on {service_cores}",
    }


def unpin(pids: Iterable[int]) -> None:
    """Every core back to these families (best effort: a process may be gone)."""
    cores = os.sched_getaffinity(0)
    for pid in pids:
        pin_to_cores(pid, cores)
