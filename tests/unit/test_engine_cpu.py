"""The CPU meter against real short-lived processes, whose own CPU clocks are the reference.

Each worker process reports ``time.process_time()`` itself (the kernel's count of its CPU, read
inside it), so the meter is checked against what the process really spent however busy the shared
machine is. Every process a test starts is stopped by the test, and each test is bounded in time.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from loadtests.engine.cpu import (
    DEFAULT_INTERVAL_S,
    GENERATOR_BOUND_CORES,
    WINDOW_END,
    WINDOW_START,
    CpuMeter,
    CpuWindow,
    cpu_breakdown,
    cpu_per_request,
    is_generator_bound,
    pin_to_cores,
)

pytestmark = pytest.mark.timeout(30)

# Obeys one command per line of stdin: "busy S" spins until it has used S more CPU seconds, "idle S"
# sleeps S seconds, "spawn N S" starts N children that each spin for S CPU seconds; it answers each
# command on stdout with its own CPU seconds so far (a spawned child answers for itself). EOF ends it
# once its children have ended.
WORKER = r"""
import subprocess, sys, time
children = []
for line in sys.stdin:
    command, *args = line.split()
    if command == "busy":
        goal = time.process_time() + float(args[0])
        while time.process_time() < goal:
            pass
    elif command == "idle":
        time.sleep(float(args[0]))
    elif command == "spawn":
        spin = f"import time\nwhile time.process_time() < {args[1]}: pass\n"
        spin += "print(time.process_time(), flush=True)"
        children += [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(int(args[0]))]
        continue
    print(time.process_time(), flush=True)
for child in children:
    child.wait()
"""
BUSY_S = 0.4
TICK_S = 1 / os.sysconf("SC_CLK_TCK")  # /proc reports CPU in clock ticks, per field (user, system)
# What a worker spends outside what it reports: reading a command, printing, exiting. Generous: the
# machine is shared and a process can be descheduled mid-step.
SLACK_S = 0.1
FAST_INTERVAL_S = 0.05  # the exit test's loss bound is one interval of CPU: keep it small there
SPAWN_TIMEOUT_S = 10.0


class Worker:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def answer(self) -> float:
        assert self.process.stdout is not None
        return float(self.process.stdout.readline())

    def do(self, command: str) -> float:
        self.send(command)
        return self.answer()

    def finish(self) -> None:
        """Close stdin and wait for the worker (and its children) to exit."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)


@pytest.fixture
def worker() -> Iterator[Worker]:
    started = Worker()
    try:
        yield started
    finally:
        _stop_family(started.process)


def _stop_family(process: subprocess.Popen[str]) -> None:
    for pipe in (process.stdin, process.stdout):
        if pipe is not None:
            pipe.close()
    try:
        family = [*psutil.Process(process.pid).children(recursive=True), psutil.Process(process.pid)]
    except psutil.NoSuchProcess:
        family = []
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    process.wait(timeout=10)


def _children_of(pid: int, count: int) -> list[int]:
    """Poll until ``pid`` has ``count`` children (a spawn command is answered by the children)."""
    deadline = time.monotonic() + SPAWN_TIMEOUT_S
    while time.monotonic() < deadline:
        children = [child.pid for child in psutil.Process(pid).children()]
        if len(children) >= count:
            return children
        time.sleep(FAST_INTERVAL_S)
    raise AssertionError(f"pid {pid} did not start {count} children in {SPAWN_TIMEOUT_S} s")


def _near(measured: float, spent: float, *, lost_at_most: float = 0.0) -> bool:
    return spent - lost_at_most - 2 * TICK_S <= measured <= spent + SLACK_S


def _measure(meter: CpuMeter, worker: Worker, command: str) -> tuple[CpuWindow, float]:
    """Run ``command`` inside a window; return the window and the CPU the worker says it spent."""
    before = worker.do("idle 0")
    meter.mark(WINDOW_START)
    after = worker.do(command)
    meter.mark(WINDOW_END)
    return meter.window(), after - before


def test_a_busy_process_is_measured_near_its_own_cpu_time(worker: Worker) -> None:
    with CpuMeter({"busy": worker.pid}) as meter:  # the default interval
        window, spent = _measure(meter, worker, f"busy {BUSY_S}")
    busy = window.components["busy"]
    assert _near(busy.seconds, spent)
    assert busy.cores == pytest.approx(busy.seconds / window.duration_s)


def test_a_process_that_exits_mid_window_keeps_its_cpu(worker: Worker) -> None:
    with CpuMeter({"leaver": worker.pid}, interval_s=FAST_INTERVAL_S) as meter:
        before = worker.do("idle 0")
        meter.mark(WINDOW_START)
        spent = worker.do(f"busy {BUSY_S}") - before
        worker.finish()
        assert not psutil.pid_exists(worker.pid)
        meter.mark(WINDOW_END)
    measured = meter.window().components["leaver"].seconds
    # What it spent after the meter's last reading of it, at most one interval of one core, is lost.
    assert _near(measured, spent, lost_at_most=FAST_INTERVAL_S)


def test_a_family_includes_grandchildren_born_inside_the_window(worker: Worker) -> None:
    with CpuMeter({"family": worker.pid}, interval_s=FAST_INTERVAL_S) as meter:
        worker.do("idle 0")
        meter.mark(WINDOW_START)
        worker.send(f"spawn 2 {BUSY_S}")
        grandchildren = [worker.answer(), worker.answer()]
        worker.finish()  # the worker waits for both, so both have exited by now
        meter.mark(WINDOW_END)
    measured = meter.window().components["family"].seconds
    assert _near(measured, sum(grandchildren), lost_at_most=2 * FAST_INTERVAL_S)


def test_marks_slice_the_window(worker: Worker) -> None:
    with CpuMeter({"busy": worker.pid}) as meter:
        meter.mark("first")
        start = worker.do("idle 0")
        middle = worker.do(f"busy {BUSY_S}")
        meter.mark("second")
        end = worker.do(f"busy {2 * BUSY_S}")
        meter.mark("third")
    first, second = meter.window("first", "second"), meter.window("second", "third")
    whole = meter.window("first", "third")
    assert _near(first.components["busy"].seconds, middle - start)
    assert _near(second.components["busy"].seconds, end - middle)
    assert whole.components["busy"].seconds == pytest.approx(
        first.components["busy"].seconds + second.components["busy"].seconds
    )


def test_a_mark_taken_elsewhere_is_placed_between_readings(worker: Worker) -> None:
    with CpuMeter({"busy": worker.pid}) as meter:
        opened = meter.mark(WINDOW_START)
        worker.do(f"busy {BUSY_S}")
        closed = meter.mark(WINDOW_END)
        meter.mark("halfway", at=(opened + closed) / 2)
    halves = [meter.window(WINDOW_START, "halfway"), meter.window("halfway", WINDOW_END)]
    assert sum(half.components["busy"].seconds for half in halves) == pytest.approx(
        meter.window().components["busy"].seconds
    )
    assert all(half.duration_s == pytest.approx((closed - opened) / 2) for half in halves)


# Its busy phase must fit in a few steps of the window: on a machine busy with other tests it spreads
# over more of them than the idle phase outweighs.
@pytest.mark.alone
def test_the_steady_state_ignores_a_start_up_spike(worker: Worker) -> None:
    step_s = 0.25
    idle_s = 8 * step_s  # most steps of the window are idle, so the median is an idle one
    meter = CpuMeter({"locust": worker.pid}, generators={"locust"}, interval_s=FAST_INTERVAL_S, step_s=step_s)
    with meter:
        meter.mark(WINDOW_START)
        worker.do(f"busy {BUSY_S}")
        worker.do(f"idle {idle_s}")
        meter.mark(WINDOW_END)
    window = meter.window()
    generator = window.components["locust"]
    assert max(generator.series) > generator.steady_cores
    assert generator.steady_cores <= TICK_S / step_s  # at most one tick of CPU in the median step
    assert window.generator_processes["locust"][worker.pid] == generator.steady_cores
    assert not window.generator_bound


def test_a_root_inside_another_family_counts_for_its_own_component_only(worker: Worker) -> None:
    worker.send(f"spawn 1 {3 * BUSY_S}")
    (inner,) = _children_of(worker.pid, 1)
    with CpuMeter({"outer": worker.pid, "inner": inner}) as meter:
        meter.mark(WINDOW_START)
        worker.answer()  # the child has spun its CPU seconds
        meter.mark(WINDOW_END)
    components = meter.window().components
    assert components["outer"].seconds <= SLACK_S < components["inner"].seconds


def test_a_window_reports_every_component_and_its_cost_per_request(worker: Worker) -> None:
    requests = 1_000
    # The test process is the worker's parent: the worker still counts for "busy" alone.
    with CpuMeter({"busy": worker.pid, "runner": os.getpid()}) as meter:
        window, _ = _measure(meter, worker, f"busy {BUSY_S}")
    breakdown = window.per_request(requests)
    assert set(breakdown) == {"busy", "runner"}
    assert breakdown["busy"] == pytest.approx(window.components["busy"].seconds / requests * 1e6)
    printed = window.to_json()
    assert printed["components"]["busy"]["seconds"] == window.components["busy"].seconds
    assert printed["generator_bound_cores"] == GENERATOR_BOUND_CORES


# -- what the meter refuses -----------------------------------------------------------------------


def test_a_meter_needs_living_roots_and_known_generators() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=10)
    with pytest.raises(ValueError, match="no process runs"):
        CpuMeter({"gone": gone.pid})
    with pytest.raises(ValueError, match="not among the components"):
        CpuMeter({"me": os.getpid()}, generators={"locust"})
    with pytest.raises(ValueError, match="at least one component"):
        CpuMeter({})
    with pytest.raises(ValueError, match="a root of its own"):
        CpuMeter({"me": os.getpid(), "me again": os.getpid()})


def test_marks_must_exist_be_unique_and_lie_inside_the_readings() -> None:
    meter = CpuMeter({"me": os.getpid()}, interval_s=FAST_INTERVAL_S)
    with pytest.raises(RuntimeError, match="start the meter"):
        meter.mark(WINDOW_START)
    with meter:
        opened = meter.mark(WINDOW_START)
        with pytest.raises(ValueError, match="already set"):
            meter.mark(WINDOW_START)
        closed = meter.mark(WINDOW_END)
        meter.mark("before", at=opened - DEFAULT_INTERVAL_S * 100)
    with pytest.raises(RuntimeError, match="has stopped"):
        meter.mark("late")
    with pytest.raises(ValueError, match="no mark named 'missing'"):
        meter.window(WINDOW_START, "missing")
    with pytest.raises(ValueError, match="before it starts"):
        meter.window(WINDOW_END, WINDOW_START)
    with pytest.raises(ValueError, match="outside the readings"):
        meter.window("before", WINDOW_END)
    assert meter.window().duration_s == pytest.approx(closed - opened)


# -- pure arithmetic ------------------------------------------------------------------------------


def test_generator_bound_at_the_threshold() -> None:
    assert is_generator_bound([0.1, GENERATOR_BOUND_CORES])
    assert not is_generator_bound([0.1, GENERATOR_BOUND_CORES - TICK_S])
    assert not is_generator_bound([])


def test_cpu_per_request_in_microseconds() -> None:
    assert cpu_per_request(1.5, 3_000) == pytest.approx(500.0)
    assert cpu_breakdown({"app": 2.0, "postgres": 0.5}, 1_000) == pytest.approx(
        {"app": 2_000.0, "postgres": 500.0}
    )


@pytest.mark.parametrize(
    ("seconds", "requests", "complaint"), [(1.0, 0, "at least one request"), (-1.0, 1, "at least 0")]
)
def test_cpu_per_request_refuses_nonsense(seconds: float, requests: int, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        cpu_per_request(seconds, requests)


# -- pinning --------------------------------------------------------------------------------------


def test_pinning_reaches_every_thread_of_the_family(worker: Worker) -> None:
    ours = os.sched_getaffinity(0)
    worker.send(f"spawn 1 {SPAWN_TIMEOUT_S}")  # a grandchild that spins until the fixture kills it
    _children_of(worker.pid, 1)
    core = max(ours)
    result = pin_to_cores(worker.pid, [core])
    family = [psutil.Process(worker.pid), *psutil.Process(worker.pid).children(recursive=True)]
    threads = [thread.id for member in family for thread in member.threads()]
    assert result.pinned, result.reason
    assert result.threads == len(threads)
    assert all(os.sched_getaffinity(thread) == {core} for thread in threads)
    assert os.sched_getaffinity(0) == ours


def test_pinning_to_cores_that_are_not_there_changes_nothing(worker: Worker) -> None:
    available = os.sched_getaffinity(0)
    result = pin_to_cores(worker.pid, [max(available) + 1])
    assert not result.pinned
    assert "available" in result.reason
    assert os.sched_getaffinity(worker.pid) == available
    assert not pin_to_cores(worker.pid, []).pinned
